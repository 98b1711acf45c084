"""``gateway init``: everything a first run needs, created only when missing.

Keys (gateway signing key, the first of its key set; audit HMAC secret, demo department
keys), the database schema (Alembic), the registry of departments and keys, and the demo
providers' source databases; in demo mode also the demo district's e-seals (their keys
under ``keys/seals/``) and e-licences (:mod:`gateway.demo.licences`).
Running it again changes nothing that exists; it is safe to run before every start.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core import sm2
from gateway.core.policy import load_policy_set
from gateway.demo.licences import ensure_demo_licences
from gateway.demo.sources import build_demo_sources
from gateway.registry import keystore
from gateway.registry.gateway_keys import adopt_first_key
from gateway.registry.store import sync_registry
from gateway.settings import Settings
from gateway.storage import migrations
from gateway.storage.database import create_database_engine

__all__ = ["DEMO_KEY_ALGORITHMS", "InitReport", "demo_algorithm", "initialise"]

log = logging.getLogger(__name__)

#: The demo departments sign with a mix of the allowed algorithms (ES256 for the others):
#: 区税务局's systems sign with SM2 (国密), as a department assessed under GM/T 0054 would.
DEMO_KEY_ALGORITHMS = {
    "police": "EdDSA",
    "hrss": "EdDSA",
    "civil-affairs": "EdDSA",
    "tax": "SM2",
}


def demo_algorithm(department: str) -> str:
    """The demo department's key algorithm; SM2 only where the system's libcrypto has it
    (Red Hat's builds leave it out): the demo then runs in ES256, and says so."""
    alg = DEMO_KEY_ALGORITHMS.get(department, "ES256")
    if alg == "SM2" and not sm2.available():
        log.warning("no SM2 in this system's libcrypto: demo department %s signs ES256", department)
        return "ES256"
    return alg


@dataclass
class InitReport:
    """What ``initialise`` found and did."""

    database_url: str
    policy_version: str
    keys_registered: int = 0
    sources_written: list[Path] = field(default_factory=list)
    seals_registered: int = 0
    licences_issued: int = 0
    licence_status_changes: int = 0  # demo licences suspended, revoked, cancelled; seals revoked
    licences_skipped: list[str] = field(default_factory=list)


def initialise(settings: Settings, *, demo: bool = True) -> InitReport:
    """Create what is missing: keys, schema, registry and (with ``demo``) demo sources,
    seals and licences."""
    keys_dir = Path(settings.keys_dir)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    policy = load_policy_set(Path(settings.policies_dir))
    keystore.ensure_gateway_key(keys_dir)
    keystore.ensure_operator_token(keys_dir, "admin")
    keystore.ensure_operator_token(keys_dir, "auditor")  # security officers
    keystore.ensure_operator_token(keys_dir, "metrics")  # Prometheus, for /metrics
    if not settings.audit_hmac_key:
        keystore.ensure_audit_hmac_key(keys_dir)
    if demo:
        for dep_id in policy.departments:
            keystore.ensure_department_key(keys_dir, dep_id, alg=demo_algorithm(dep_id))
    engine = create_database_engine(
        settings.effective_database_url, busy_timeout_ms=settings.db_busy_timeout_ms
    )
    now = dt.datetime.now(dt.UTC)
    try:
        migrations.upgrade(engine)
        # The key file made above becomes the first active key of the gateway's key set.
        adopt_first_key(
            engine,
            keys_dir,
            now=now,
            lifetime=dt.timedelta(days=settings.keys.signing_key_lifetime_days),
        )
        added = sync_registry(
            engine,
            department_list=policy.departments.values(),
            public_jwks=keystore.department_public_jwks(keys_dir),
            now=now,
        )
        report = InitReport(settings.effective_database_url, policy.version, keys_registered=added)
        if demo:
            licences = ensure_demo_licences(
                engine, keys_dir=keys_dir, departments=policy.departments, now=now
            )
            report.seals_registered = licences.seals_registered
            report.licences_issued = licences.licences_issued
            report.licence_status_changes = licences.status_changes + licences.seals_revoked
            report.licences_skipped = licences.skipped
    finally:
        engine.dispose()
    if demo:
        report.sources_written = build_demo_sources(data_dir / "sources")
    return report
