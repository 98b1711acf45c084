"""The signed requests: lookups (single and batch), manifests, case closures and cache
invalidations."""

from gateway.lookups.cases import CaseService
from gateway.lookups.manifests import ManifestService
from gateway.lookups.resources import ResourceService
from gateway.lookups.service import LookupService

__all__ = ["CaseService", "LookupService", "ManifestService", "ResourceService"]
