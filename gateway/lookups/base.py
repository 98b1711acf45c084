"""The steps every signed request shares: verify, admit, audit each refusal, sign the answer."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Generic, TypeVar

from gateway.audit import AuditEntry, AuditLog, Outcome, SubjectHasher
from gateway.audit.promises import CURRENT_CLAIM, TokenClaim
from gateway.cache import Admission, CacheProbe, QuotaClaim, RequestGuard
from gateway.core.keyring import GatewaySigner
from gateway.core.tokens import RequestTokenVerifier, VerifiedToken
from gateway.errors import (
    Error,
    InvalidInput,
    PolicyDenied,
    RateLimited,
    Replayed,
    StoreUnavailable,
    TokenRejected,
)

__all__ = ["AuditBase", "Received", "SignedRequests", "reason_code"]

#: Fields every audit entry of one request shares (time, department, purpose, hashes …).
AuditBase = dict[str, Any]


def reason_code(exc: Error) -> str:
    """The stable code an audit entry records for a refusal (on the error's class)."""
    return exc.audit_code


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Received(Generic[_T]):
    """A request whose token verified and whose claims parsed."""

    token: VerifiedToken
    request: _T
    base: AuditBase  # audit fields of this request so far (extend it as more is known)
    started: float  # perf_counter reading at arrival, for the entries' latency


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``perf_counter`` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


class SignedRequests:
    """Shared machinery of the signed endpoints. Construct once per process."""

    def __init__(
        self,
        *,
        gateway_id: str,
        verifier: RequestTokenVerifier,
        guard: RequestGuard,
        audit: AuditLog,
        signer: GatewaySigner,
        subject_hasher: SubjectHasher,
        answer_lifetime: int = 300,
    ) -> None:
        self.gateway_id = gateway_id
        self.verifier = verifier
        self.guard = guard
        self.audit = audit
        self.signer = signer
        self.hash_subject = subject_hasher
        self.answer_lifetime = answer_lifetime

    def start(self, body: bytes, *, now: float, policy_version: str) -> AuditBase:
        """The audit fields known before anything is checked (and no promise made yet)."""
        CURRENT_CLAIM.set(None)
        return {
            "at": dt.datetime.fromtimestamp(now, dt.UTC),
            "request_hash": sha256(body.strip()).hexdigest(),
            "policy_version": policy_version,
        }

    async def receive(
        self,
        body: bytes,
        *,
        typ: str,
        now: float,
        policy_version: str,
        event: str,
        parse: Callable[[str, dict[str, Any]], _T],
        max_bytes: int | None = None,
    ) -> Received[_T]:
        """Verify the token, then parse its claims with ``parse``; audit either refusal."""
        started = time.perf_counter()
        base = self.start(body, now=now, policy_version=policy_version)
        token = await self.verify(
            body, typ=typ, now=now, base=base, event=event, started=started, max_bytes=max_bytes
        )
        try:
            request = parse(token.department, token.claims)
        except InvalidInput as exc:
            await self.refuse(exc, base, event, started)
            raise
        return Received(token, request, base, started)

    async def verify(
        self,
        body: bytes,
        *,
        typ: str,
        now: float,
        base: AuditBase,
        event: str,
        started: float,
        max_bytes: int | None = None,
    ) -> VerifiedToken:
        """Verify the token or audit the refusal and raise."""
        try:
            token = self.verifier.verify(body, typ=typ, now=now, max_bytes=max_bytes)
        except TokenRejected as exc:
            # Only the key's owner is recorded, never unverified claims.
            await self.refuse(exc, {**base, "department": exc.claimed_issuer}, event, started)
            raise
        base["department"] = token.department
        return token

    async def admit(
        self,
        token: VerifiedToken,
        *,
        now: float,
        base: AuditBase,
        event: str,
        started: float,
        cost: int = 1,
        case: str | None = None,
        quotas: Sequence[QuotaClaim] = (),
        probes: Sequence[CacheProbe] = (),
    ) -> Admission:
        """Closed case, rate limit, replay, quotas and cache reads in one guard call;
        refusals audited.

        Once admitted, the request's promises (its token used once, its case open) follow it:
        every entry it appends from here on is checked against the durable store in the
        audit writer's transaction (:mod:`gateway.audit.promises`), whatever the guard knew.
        """
        nonce = uuid.uuid4().hex
        try:
            admission = await self.guard.admit(
                department=token.department,
                jti=token.jti,
                replay_ttl=token.expires_at - now + 2 * self.verifier.leeway,
                now=now,
                cost=cost,
                case=case,
                quotas=quotas,
                probes=probes,
                nonce=nonce,
            )
        except (Replayed, RateLimited, PolicyDenied, StoreUnavailable) as exc:
            await self.refuse(exc, base, event, started)
            raise
        CURRENT_CLAIM.set(
            TokenClaim(
                department=token.department,
                jti=token.jti,
                nonce=nonce,
                expires_at=token.expires_at + 2 * self.verifier.leeway,
                case=case,
                refused_event=event,
            )
        )
        return admission

    async def release_unanswered(self, failure: StoreUnavailable) -> bool | None:
        """After ``failure`` answered nothing: forget the request's ``jti`` in the guard, so
        that resending the same token works. ``None`` if it was never admitted, ``True`` if a
        resend will be admitted, ``False`` if the token is (or may be) used: an entry of it is
        durable, its last commit's outcome is unknown, or the guard could not be told."""
        claim = CURRENT_CLAIM.get()
        if claim is None:
            return None
        if claim.durable or failure.in_doubt:
            return False
        return await self.guard.release(
            department=claim.department, jti=claim.jti, nonce=claim.nonce
        )

    async def refuse(
        self, exc: Error, fields: Mapping[str, Any], event: str, started: float
    ) -> int:
        """Audit a refusal (durably) and attach the entry's index to ``exc``."""
        detail = exc.reason if isinstance(exc, TokenRejected) else str(exc)
        index = await self.audit.append(
            AuditEntry(
                **fields,
                event=event,
                decision=Outcome.REFUSED,
                reason_code=reason_code(exc),
                detail=detail[:500],
                latency_ms=elapsed_ms(started),
            )
        )
        exc.audit_index = index
        return index

    def sign_answer(
        self, claims: Mapping[str, Any], *, token: VerifiedToken, typ: str, now: float
    ) -> str:
        """Sign an answer to ``token``: for its department, bound to the request's hash."""
        iat = int(now)
        return self.signer.sign(
            {
                "iss": self.gateway_id,
                "aud": token.department,
                "iat": iat,
                "exp": iat + self.answer_lifetime,
                "jti": uuid.uuid4().hex,
                "request": {"jti": token.jti, "sha256": token.sha256},
                **claims,
            },
            typ=typ,
        )
