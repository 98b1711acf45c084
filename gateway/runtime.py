"""The running gateway's parts, built once at start and closed at stop.

:meth:`GatewayRuntime.open` parses keys and policies once, opens the database and the cache,
starts the audit writer and builds one adapter per resource. Nothing on the request path
parses a key or a policy file again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adapters import create_adapter
from gateway import keystore
from gateway.audit import GroupCommitAuditLog, SubjectHasher
from gateway.cache import RequestGuard
from gateway.cache.memory import InProcessGuard
from gateway.cache.redis import RedisGuard
from gateway.core.keyring import GatewaySigner, KeyRing
from gateway.core.policy import load_policy_set
from gateway.core.sources import SourceAdapter
from gateway.core.tokens import RequestTokenVerifier
from gateway.lookups import LookupService, PolicyHolder
from gateway.settings import Settings
from gateway.storage.database import create_database_engine
from gateway.storage.registry import load_keyring

__all__ = ["GatewayRuntime"]

log = logging.getLogger(__name__)


@dataclass
class GatewayRuntime:
    """Everything a gateway process holds while it serves."""

    settings: Settings
    engine: sa.Engine
    audit: GroupCommitAuditLog
    guard: RequestGuard
    keyring: KeyRing
    signer: GatewaySigner
    policy: PolicyHolder
    adapters: dict[str, SourceAdapter]
    lookups: LookupService

    @classmethod
    def open(cls, settings: Settings) -> GatewayRuntime:
        """Build the runtime from validated settings. The database must be initialised."""
        keys_dir = Path(settings.keys_dir)
        policy = PolicyHolder(load_policy_set(Path(settings.policies_dir)))
        engine = create_database_engine(
            settings.effective_database_url, busy_timeout_ms=settings.db_busy_timeout_ms
        )
        keyring = load_keyring(engine)
        signer = GatewaySigner(
            private_key=keystore.ensure_gateway_key(keys_dir), issuer=settings.gateway_id
        )
        hmac_key = (
            bytes.fromhex(settings.audit_hmac_key)
            if settings.audit_hmac_key
            else keystore.ensure_audit_hmac_key(keys_dir)
        )
        guard: RequestGuard
        if settings.redis_url:
            guard = RedisGuard.from_url(
                settings.redis_url,
                rate_limit=settings.rate_limit,
                window_seconds=settings.rate_window_seconds,
                prefix=settings.redis_key_prefix,
            )
        else:
            guard = InProcessGuard(
                rate_limit=settings.rate_limit, window_seconds=settings.rate_window_seconds
            )
        audit = GroupCommitAuditLog(
            engine=engine,
            max_batch=settings.audit_batch_max,
            timeout=settings.audit_timeout_seconds,
        )
        data_dir = Path(settings.data_dir)
        adapters = {
            rid: create_adapter(resource, data_dir=data_dir)
            for rid, resource in policy.current.resources.items()
        }
        verifier = RequestTokenVerifier(
            keyring=keyring,
            audience=settings.gateway_id,
            max_lifetime=settings.token_max_lifetime,
            leeway=settings.token_leeway,
            max_bytes=settings.token_max_bytes,
        )
        lookups = LookupService(
            gateway_id=settings.gateway_id,
            verifier=verifier,
            policy=policy,
            guard=guard,
            audit=audit,
            adapters=adapters,
            signer=signer,
            subject_hasher=SubjectHasher(hmac_key),
            answer_lifetime=settings.answer_lifetime,
        )
        audit.start()
        log.info(
            "gateway ready: %d keys, policy %s, %s",
            len(keyring),
            policy.current.version,
            "in-process caches" if settings.embedded else "redis",
        )
        return cls(settings, engine, audit, guard, keyring, signer, policy, adapters, lookups)

    async def close(self) -> None:
        """Flush the audit log and release connections."""
        self.audit.stop()
        for adapter in self.adapters.values():
            await adapter.close()
        await self.guard.close()
        self.engine.dispose()
