"""The hot path of the gateway, free of any web framework.

Order of work for one request (each refusal is audited before it is raised):

1. verify the token (signature, header, registered claims) — 401 on any failure;
2. admit it: replay cache and rate limit in one step — 409 / 429;
3. parse the request claims and the subject's check character — 400;
4. ask the policy — 403 with a reason code; the record has not been touched yet, so a
   refusal cannot reveal whether the record exists;
5. fetch the record from the provider's source and keep only the granted fields;
6. make the audit entry durable (group commit) — 503 if it cannot be;
7. sign the answer, naming the entry's index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.audit import AuditEntry, AuditLog, Outcome, SubjectHasher
from gateway.cache import RequestGuard
from gateway.core.keyring import GatewaySigner
from gateway.core.lookup import LookupRequest, parse_lookup_claims
from gateway.core.policy import Decision, PolicySet
from gateway.core.sources import SourceAdapter
from gateway.core.tokens import LOOKUP_REQUEST_TYP, LOOKUP_RESULT_TYP, RequestTokenVerifier
from gateway.errors import (
    Error,
    InvalidInput,
    PolicyDenied,
    RateLimited,
    RecordNotFound,
    Replayed,
    StoreUnavailable,
    TokenRejected,
)

__all__ = ["LookupAnswer", "LookupService", "PolicyHolder"]

EVENT_RELEASED = "lookup:record:released"
EVENT_REFUSED = "lookup:record:refused"
EVENT_NOT_FOUND = "lookup:record:not-found"


class PolicyHolder:
    """Holds the policy set in force. Swapping ``current`` is atomic for readers."""

    def __init__(self, policy: PolicySet) -> None:
        self.current = policy


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    """The signed answer and the index of its audit entry."""

    token: str
    audit_index: int


def _reason_code(exc: Error) -> str:
    if isinstance(exc, TokenRejected):
        return f"token:{exc.reason}"
    if isinstance(exc, PolicyDenied):
        return exc.reason_code
    if isinstance(exc, InvalidInput):
        return "invalid-input"
    if isinstance(exc, Replayed):
        return "replay"
    if isinstance(exc, RateLimited):
        return "rate-limited"
    if isinstance(exc, StoreUnavailable):
        return "store-unavailable"
    return type(exc).__name__


class LookupService:
    """Runs signed lookups. Construct once per process; methods are safe to run concurrently."""

    def __init__(
        self,
        *,
        gateway_id: str,
        verifier: RequestTokenVerifier,
        policy: PolicyHolder,
        guard: RequestGuard,
        audit: AuditLog,
        adapters: Mapping[str, SourceAdapter],
        signer: GatewaySigner,
        subject_hasher: SubjectHasher,
        answer_lifetime: int = 300,
    ) -> None:
        self._gateway_id = gateway_id
        self._verifier = verifier
        self._policy = policy
        self._guard = guard
        self._audit = audit
        self._adapters = adapters
        self._signer = signer
        self._hash_subject = subject_hasher
        self._answer_lifetime = answer_lifetime

    async def lookup(self, body: bytes, *, now: float) -> LookupAnswer:
        """Run one lookup for the request token ``body`` received at ``now`` (epoch seconds).

        Returns the signed answer, or raises a :class:`~gateway.errors.Error` subclass after
        auditing the refusal. Each raised error carries ``audit_index`` when it was audited.
        """
        started = time.perf_counter()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        request_hash = hashlib.sha256(body.strip()).hexdigest()
        policy = self._policy.current  # one set for the whole request, even across a reload
        base: dict[str, Any] = {
            "at": at,
            "request_hash": request_hash,
            "policy_version": policy.version,
        }
        try:
            token = self._verifier.verify(body, typ=LOOKUP_REQUEST_TYP, now=now)
        except TokenRejected as exc:
            # Only the key's owner is recorded, never unverified claims.
            await self._refuse(exc, {**base, "department": exc.claimed_issuer}, started)
            raise
        base["department"] = token.department
        try:
            await self._guard.admit(
                department=token.department,
                jti=token.jti,
                replay_ttl=token.expires_at - now + 2 * self._verifier.leeway,
                now=now,
            )
            request = parse_lookup_claims(token.department, token.claims)
        except (Replayed, RateLimited, InvalidInput, StoreUnavailable) as exc:
            await self._refuse(exc, base, started)
            raise

        base.update(
            operator=request.operator,
            service_item=request.purpose.item,
            case_number=request.purpose.case,
            reason=request.purpose.reason,
            resource=request.resource,
            subject_hmac=self._hash_subject(request.subject.type, request.subject.value),
            fields=request.fields,
        )
        try:
            decision, adapter = self._decide(policy, request, at)
        except (InvalidInput, PolicyDenied) as exc:
            await self._refuse(exc, base, started)
            raise

        try:
            record = await adapter.fetch(request.subject.value, decision.fields)
        except StoreUnavailable as exc:
            await self._refuse(exc, {**base, "grant_id": decision.grant_id}, started)
            raise
        if record is None:
            index = await self._audit.append(
                AuditEntry(
                    **base,
                    event=EVENT_NOT_FOUND,
                    decision=Outcome.ALLOWED,
                    grant_id=decision.grant_id,
                    reason_code="not-found",
                    latency_ms=_ms(started),
                )
            )
            raise _attach(RecordNotFound("no record for this subject"), index)

        data = {name: record.values.get(name) for name in decision.fields}
        data_bytes = msgspec.json.encode(data, order="sorted")
        index = await self._audit.append(
            AuditEntry(
                **base,
                event=EVENT_RELEASED,
                decision=Outcome.ALLOWED,
                grant_id=decision.grant_id,
                response_hash=hashlib.sha256(data_bytes).hexdigest(),
                latency_ms=_ms(started),
            )
        )
        resource = policy.resources[request.resource]
        iat = int(now)
        claims = {
            "iss": self._gateway_id,
            "aud": request.consumer,
            "iat": iat,
            "exp": iat + self._answer_lifetime,
            "jti": uuid.uuid4().hex,
            "request": {"jti": token.jti, "sha256": token.sha256},
            "purpose": msgspec.structs.asdict(request.purpose),
            "query": {
                "resource": request.resource,
                "subject": {"type": str(request.subject.type), "id": request.subject.value},
                "fields": list(decision.fields),
            },
            "data": data,
            "provenance": {
                "provider": resource.provider,
                "source": record.source,
                "as_of": record.as_of,
            },
            "grant": decision.grant_id,
            "policy_version": decision.policy_version,
            "audit": {"index": index},
        }
        return LookupAnswer(self._signer.sign(claims, typ=LOOKUP_RESULT_TYP), index)

    def _decide(
        self, policy: PolicySet, request: LookupRequest, at: dt.datetime
    ) -> tuple[Decision, SourceAdapter]:
        resource = policy.resource(request.resource)
        item = policy.service_item(request.purpose.item)
        if resource.subject != request.subject.type:
            raise InvalidInput(
                "query.subject.type", f"this resource is keyed by {resource.subject}"
            )
        unknown = [f for f in request.fields if f not in resource.field_names]
        if unknown:
            raise InvalidInput("query.fields", f"not fields of this resource: {', '.join(unknown)}")
        decision = policy.decide(
            consumer=request.consumer, resource=resource, fields=request.fields, item=item, now=at
        )
        adapter = self._adapters.get(resource.id)
        if adapter is None:
            raise StoreUnavailable(f"source of {resource.id}")
        return decision, adapter

    async def _refuse(self, exc: Error, fields: dict[str, Any], started: float) -> None:
        detail = exc.reason if isinstance(exc, TokenRejected) else str(exc)
        index = await self._audit.append(
            AuditEntry(
                **fields,
                event=EVENT_REFUSED,
                decision=Outcome.REFUSED,
                reason_code=_reason_code(exc),
                detail=detail[:500],
                latency_ms=_ms(started),
            )
        )
        _attach(exc, index)


def _attach(exc: Error, index: int) -> Error:
    exc.audit_index = index
    return exc


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
