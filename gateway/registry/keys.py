"""Administrators' acts on the registry of department keys, each one an audit entry; and
the watch that keeps each process's keys current.

A revoked key stops verifying requests in every gateway process within a second: each process
watches the registry's fingerprint (one small query a second) and swaps in a freshly parsed
key ring when it changes; the process that revoked swaps at once. The gateway's own key set
(:mod:`gateway.registry.gateway_keys`) is watched the same way: a rotation made by
``gateway keys rotate`` on any host reaches every process's signer and JWKS within a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import AuditEntry, AuditLog, Outcome
from gateway.core.keyring import DepartmentKey, GatewayKey, GatewaySigner
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.tokens import RequestTokenVerifier
from gateway.errors import InvalidInput, StoreUnavailable
from gateway.exchange.draft import elapsed_ms
from gateway.exchange.spec import Admit, Done, Exchange, Received, SignedAnswer
from gateway.registry.claims import (
    KeyRegistration,
    KeyRetirement,
    check_new_key,
    parse_key_registration_claims,
    parse_key_retirement_claims,
)
from gateway.registry.gateway_keys import (
    adopt_first_key,
    gateway_keys_revision,
    load_gateway_keys,
    load_private_keys,
)
from gateway.registry.store import (
    keyring_revision,
    list_registry,
    load_keyring,
    register_key,
    retire_key,
    revoke_key,
)

if TYPE_CHECKING:
    from gateway.cache import Admission
    from gateway.exchange import SignedExchanges

__all__ = [
    "EVENT_KEY_REFUSED",
    "EVENT_KEY_REVOKED",
    "REGISTER_KEY",
    "RETIRE_KEY",
    "KeyAdministration",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

EVENT_KEY_REVOKED = AuditEvent.KEY_REVOKED
EVENT_KEY_REFUSED = AuditEvent.KEY_REFUSED

# A department's own key changes: signed with one of its active keys (any department; no
# role: every department signs its requests).
REGISTER_KEY = Exchange(
    request=TokenType.KEY_REGISTER,
    answer=TokenType.KEY_REGISTERED,
    parse=parse_key_registration_claims,
    refused=AuditEvent.KEY_CHANGE_REFUSED,
    done=AuditEvent.KEY_REGISTERED,
)
RETIRE_KEY = Exchange(
    request=TokenType.KEY_RETIRE,
    answer=TokenType.KEY_RETIRED,
    parse=parse_key_retirement_claims,
    refused=AuditEvent.KEY_CHANGE_REFUSED,
    done=AuditEvent.KEY_RETIRED,
)


def _utc(epoch: int | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


class KeyAdministration:
    """Revokes department keys and keeps this process's key ring current."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        verifier: RequestTokenVerifier,
        audit: AuditLog,
        signer: GatewaySigner,
        keys_dir: Path,
        exchanges: SignedExchanges | None = None,
        gateway_id: str = "",
        jwks_max_age: int = 300,
        key_lifetime: dt.timedelta = dt.timedelta(days=365),
        interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._key_lifetime = key_lifetime
        self._exchanges = exchanges
        self._gateway_id = gateway_id
        self._verifier = verifier
        self._audit = audit
        self._signer = signer
        self._keys_dir = keys_dir
        self._interval = interval
        self._revision: tuple[int, str] | None = None
        self._gateway_revision: tuple[int, str] | None = None
        # One reload at a time: the watcher's reload, begun before a change, must not finish
        # after the reload that change forced and put the older key ring back (a revoked key
        # verifying again, a new one refused) until the next tick.
        self._reloading = asyncio.Lock()
        self._reloading_gateway = asyncio.Lock()
        #: Seconds verifiers may cache the JWKS (its ``Cache-Control: max-age``).
        self.jwks_max_age = jwks_max_age

    # --- the gateway's own keys -----------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The gateway's JWKS as this process publishes it now."""
        return self._signer.jwks()

    def use_gateway_keys(self, keys: list[GatewayKey]) -> None:
        """Sign with the active key of ``keys`` and publish them. An empty set (a database
        `gateway init` has not seen since key sets exist) first adopts the key file, as
        init would: the set is then the one truth every process reads."""
        if not keys:
            adopt_first_key(
                self._engine,
                self._keys_dir,
                now=dt.datetime.now(dt.UTC),
                lifetime=self._key_lifetime,
            )
            keys = load_gateway_keys(self._engine)
        private = load_private_keys(self._keys_dir)
        self._signer.use(keys, private)
        if not self._signer.can_sign:
            log.error(
                "the active gateway key %s has no private half in %s on this host: nothing "
                "is signed (503) until it is copied here",
                [k.kid for k in keys if k.status == "active"],
                self._keys_dir / "gateway",
            )

    def load_gateway_keys_now(self) -> None:
        """Read the key set at start (synchronously, before the event loop runs)."""
        self.use_gateway_keys(load_gateway_keys(self._engine))
        self._gateway_revision = gateway_keys_revision(self._engine)

    async def refresh_gateway_keys(self, *, force: bool = False) -> bool:
        """Reload the gateway's key set if it changed (or ``force``); whether it did."""
        async with self._reloading_gateway:
            revision = await asyncio.to_thread(gateway_keys_revision, self._engine)
            if not force and revision == self._gateway_revision:
                return False
            keys = await asyncio.to_thread(load_gateway_keys, self._engine)
            await asyncio.to_thread(self.use_gateway_keys, keys)
            self._gateway_revision = revision
            return True

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

    # --- a department's keys, by its own signed requests -----------------------------------

    async def register_own_key(self, body: bytes, *, now: float) -> SignedAnswer:
        """A department registers its next key (signed with a current one, with a proof of
        possession of the new one). Active at once, in every process within a second."""

        async def work(received: Received[KeyRegistration], _a: Admit, _b: Admission) -> Done:
            request = received.request
            key = check_new_key(
                request.jwk,
                department=request.department,
                proof=request.proof,
                audience=self._gateway_id,
                jti=request.jti,
                expires_at=request.expires_at,
                now=received.now,
            )
            await self._store(
                register_key,
                key=key,
                expires_at=_utc(request.expires_at),
                now=received.audit.at,
            )
            return Done(
                self._registered(key, request.expires_at),
                audit={"detail": f"{key.kid} ({key.alg}) registered"},
            )

        return await self._signed().run(REGISTER_KEY, body, now=now, work=work)

    async def retire_own_key(self, body: bytes, *, now: float) -> SignedAnswer:
        """A department retires one of its active keys (never its last one)."""

        async def work(received: Received[KeyRetirement], _a: Admit, _b: Admission) -> Done:
            request = received.request
            previous = await self._store(
                retire_key, department=request.department, kid=request.kid, now=received.audit.at
            )
            return Done(
                {
                    "department": request.department,
                    "kid": request.kid,
                    "status": "retired",
                    "previous": str(previous),
                },
                audit={"detail": f"{request.kid} ({previous} -> retired)"},
            )

        return await self._signed().run(RETIRE_KEY, body, now=now, work=work)

    def _signed(self) -> SignedExchanges:
        assert self._exchanges is not None, "built without the signed exchanges"
        return self._exchanges

    async def _store(self, act: Callable[..., T], **kwargs: Any) -> T:
        """Run a registry change in a thread; the new ring in use here before answering."""
        try:
            result = await asyncio.to_thread(act, self._engine, **kwargs)
        except SQLAlchemyError:
            raise StoreUnavailable("database") from None
        await self.refresh(force=True)
        return result

    @staticmethod
    def _registered(key: DepartmentKey, expires_at: int | None) -> dict[str, Any]:
        return {
            "department": key.department,
            "kid": key.kid,
            "status": "active",
            "expires_at": expires_at,
        }

    # --- a department's keys, by an administrator -------------------------------------------

    async def register_for(
        self,
        *,
        department: str,
        jwk: Any,
        proof: str,
        expires_at: int | None,
        reason: str,
        by: str,
        now: float,
    ) -> dict[str, Any]:
        """An administrator registers a key for ``department`` (the proof of possession is
        the department's, made with the new key: see :mod:`gateway.registry.claims`)."""

        async def act(at: dt.datetime) -> tuple[dict[str, Any], str]:
            key = check_new_key(
                jwk,
                department=department,
                proof=proof,
                audience=self._gateway_id,
                jti=None,
                expires_at=expires_at,
                now=now,
            )
            try:
                await self._store(register_key, key=key, expires_at=_utc(expires_at), now=at)
            except LookupError:
                raise InvalidInput("department", f"no department {department}") from None
            return self._registered(key, expires_at), f"{key.kid} ({key.alg}) registered"

        return await self._administer(
            department=department,
            reason=reason,
            by=by,
            now=now,
            event=AuditEvent.KEY_REGISTERED,
            act=act,
        )

    async def retire_for(
        self, *, department: str, kid: str, reason: str, by: str, now: float
    ) -> dict[str, Any]:
        """An administrator retires an active key of ``department`` (never its last one)."""

        async def act(at: dt.datetime) -> tuple[dict[str, Any], str]:
            previous = await self._store(retire_key, department=department, kid=kid, now=at)
            answer = {
                "department": department,
                "kid": kid,
                "status": "retired",
                "previous": str(previous),
            }
            return answer, f"{kid} ({previous} -> retired)"

        return await self._administer(
            department=department,
            reason=reason,
            by=by,
            now=now,
            event=AuditEvent.KEY_RETIRED,
            act=act,
        )

    async def _administer(
        self,
        *,
        department: str,
        reason: str,
        by: str,
        now: float,
        event: AuditEvent,
        act: Callable[[dt.datetime], Any],
    ) -> dict[str, Any]:
        """An administrator's act, audited either way (a refusal changes nothing)."""
        started = time.perf_counter()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        base: dict[str, Any] = {
            "at": at,
            "department": department,
            "operator": by,
            "reason": reason[:256],
        }
        try:
            answer, detail = await act(at)
        except InvalidInput as exc:
            exc.audit_index = await self._audit.append(
                AuditEntry(
                    **base,
                    event=EVENT_KEY_REFUSED,
                    decision=Outcome.REFUSED,
                    reason_code="invalid-input",
                    detail=str(exc)[:500],
                    latency_ms=elapsed_ms(started),
                )
            )
            raise
        await self._audit.append(
            AuditEntry(
                **base,
                event=event,
                decision=Outcome.ALLOWED,
                detail=detail,
                latency_ms=elapsed_ms(started),
            )
        )
        result: dict[str, Any] = answer
        return result

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the key ring if the registry changed (or ``force``); whether it did."""
        async with self._reloading:
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
                if await self.refresh_gateway_keys():
                    log.info("gateway keys reloaded: signing with %s", self._signer.kid)
            except (SQLAlchemyError, StoreUnavailable) as exc:
                log.warning("key registry not readable now: %s", exc)
            except Exception:
                # A watch that ended on one unexpected error would leave this process on
                # old keys for its life: log it and look again at the next tick.
                log.exception("keys not reloaded this time (unexpected); trying again")
            await asyncio.sleep(self._interval)
