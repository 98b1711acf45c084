"""The signed requests: lookups (single and batch), manifests and case closures."""

from gateway.lookups.base import SignedRequests
from gateway.lookups.cases import CaseService
from gateway.lookups.manifests import ManifestService
from gateway.lookups.resources import ResourceService
from gateway.lookups.service import LookupAnswer, LookupService, PolicyHolder

__all__ = [
    "CaseService",
    "LookupAnswer",
    "LookupService",
    "ManifestService",
    "PolicyHolder",
    "ResourceService",
    "SignedRequests",
]
