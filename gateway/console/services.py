"""What the web console's pages work with: the services of the features they show.

Built once by the composition root and given to every console handler by dependency
injection (``console``); the console itself holds no state and runs no queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.accounts.service import AccountService
from gateway.licensing.service import LicensingService
from gateway.lookups.manifests import ManifestService
from gateway.oversight.integrity import IntegrityService
from gateway.oversight.service import OfficerService
from gateway.policy.holder import PolicyHolder
from gateway.registry.keys import KeyAdministration
from gateway.reporting.service import ReportService

__all__ = ["ConsoleServices"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleServices:
    """The services behind the console's pages."""

    accounts: AccountService  # logins, sessions, CSRF tokens and their audit entries
    licensing: LicensingService  # clerks' verifications, administrators' seals
    manifests: ManifestService  # the clerks' manifest of materials
    keys: KeyAdministration  # the registry pages and key revocation
    policy: PolicyHolder  # the policy pages
    officers: OfficerService  # search, export and alerts for security officers
    integrity: IntegrityService  # checkpoints, proofs and verification
    reports: ReportService  # the quarterly once-only report (officers and administrators)
