"""Administrators' acts on the registry of department keys, each one an audit entry.

A revoked key stops verifying requests in every gateway process within a second: each process
watches the registry's fingerprint (one small query a second) and swaps in a freshly parsed
key ring when it changes; the process that revoked swaps at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import AuditEntry, AuditLog, Outcome
from gateway.core.protocol import AuditEvent
from gateway.core.tokens import RequestTokenVerifier
from gateway.errors import InvalidInput, StoreUnavailable
from gateway.exchange.draft import elapsed_ms
from gateway.registry.store import keyring_revision, list_registry, load_keyring, revoke_key

__all__ = ["EVENT_KEY_REFUSED", "EVENT_KEY_REVOKED", "KeyAdministration"]

log = logging.getLogger(__name__)

EVENT_KEY_REVOKED = AuditEvent.KEY_REVOKED
EVENT_KEY_REFUSED = AuditEvent.KEY_REFUSED


class KeyAdministration:
    """Revokes department keys and keeps this process's key ring current."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        verifier: RequestTokenVerifier,
        audit: AuditLog,
        interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._verifier = verifier
        self._audit = audit
        self._interval = interval
        self._revision: tuple[int, str] | None = None

    async def registry(self) -> list[dict[str, Any]]:
        """Every registered department with its keys (for the administrators' pages)."""
        return await asyncio.to_thread(list_registry, self._engine)

    async def revoke(self, *, department: str, kid: str, reason: str, by: str, now: float) -> str:
        """Revoke ``kid`` of ``department``; its previous status. Audited either way."""
        started = time.perf_counter()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        base: dict[str, Any] = {
            "at": at,
            "department": department,
            "operator": by,
            "reason": reason[:256],
        }
        try:
            previous = await asyncio.to_thread(
                revoke_key, self._engine, department=department, kid=kid, now=at
            )
        except LookupError:
            exc = InvalidInput("kid", f"no key {kid} registered for {department}")
            index = await self._audit.append(
                AuditEntry(
                    **base,
                    event=EVENT_KEY_REFUSED,
                    decision=Outcome.REFUSED,
                    reason_code="invalid-input",
                    detail=str(exc),
                    latency_ms=elapsed_ms(started),
                )
            )
            exc.audit_index = index
            raise exc from None
        except SQLAlchemyError:
            raise StoreUnavailable("database") from None
        await self.refresh(force=True)
        await self._audit.append(
            AuditEntry(
                **base,
                event=EVENT_KEY_REVOKED,
                decision=Outcome.ALLOWED,
                detail=f"{kid} ({previous} -> revoked)",
                latency_ms=elapsed_ms(started),
            )
        )
        return str(previous)

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the key ring if the registry changed (or ``force``); whether it did."""
        revision = await asyncio.to_thread(keyring_revision, self._engine)
        if not force and revision == self._revision:
            return False
        keyring = await asyncio.to_thread(load_keyring, self._engine)
        self._verifier.use_keyring(keyring)
        self._revision = revision
        return True

    async def run(self) -> None:
        """Follow the registry until cancelled."""
        while True:
            try:
                if await self.refresh():
                    log.info("key ring reloaded: %d keys", len(self._verifier.keyring))
            except (SQLAlchemyError, StoreUnavailable) as exc:
                log.warning("key registry not readable now: %s", exc)
            await asyncio.sleep(self._interval)
