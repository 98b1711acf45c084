"""The manifest of a service item for one applicant: what the gateway can supply, what the
applicant must still bring — in one signed answer (the one-time notice, 一次性告知).

A manifest releases no record data, only availability: for each material the item's service
guide requires, one of ``available`` (the consumer may read it from this resource, and the
provider holds a record for this applicant), ``bring`` (no shared source, a source keyed by
another kind of subject, or no record) or ``not-granted`` (a source exists but no grant lets
this consumer use it for this item — with the reason code).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from gateway.audit import AuditEntry, Outcome
from gateway.core.lookup import ManifestRequest, parse_manifest_claims
from gateway.core.policy import Material, PolicySet, ServiceItem
from gateway.core.sources import SourceAdapter
from gateway.core.tokens import MANIFEST_REQUEST_TYP, MANIFEST_RESULT_TYP
from gateway.errors import (
    InvalidInput,
    PolicyDenied,
    RateLimited,
    Replayed,
    SourceFailed,
    StoreUnavailable,
)
from gateway.lookups.base import AuditBase, SignedRequests, elapsed_ms
from gateway.lookups.service import LookupAnswer, PolicyHolder, fetch_within

__all__ = ["ManifestService"]

EVENT_LISTED = "manifest:materials:listed"
EVENT_REFUSED = "manifest:materials:refused"


class ManifestService:
    """Answers signed manifest requests."""

    def __init__(
        self,
        *,
        requests: SignedRequests,
        policy: PolicyHolder,
        adapters: Callable[[PolicySet], Mapping[str, SourceAdapter]],
        source_deadline: float = 10.0,
    ) -> None:
        self._requests = requests
        self._policy = policy
        self._adapters = adapters
        self._source_deadline = source_deadline

    async def manifest(self, body: bytes, *, now: float) -> LookupAnswer:
        """Build the signed manifest for the request token ``body``."""
        rq = self._requests
        policy = self._policy.current
        received = await rq.receive(
            body,
            typ=MANIFEST_REQUEST_TYP,
            now=now,
            policy_version=policy.version,
            event=EVENT_REFUSED,
            parse=parse_manifest_claims,
        )
        token, request, base, started = (
            received.token,
            received.request,
            received.base,
            received.started,
        )
        try:
            base.update(
                operator=request.operator,
                service_item=request.purpose.item,
                case_number=request.purpose.case,
                reason=request.purpose.reason,
                subject_hmac=rq.hash_subject(request.applicant.type, request.applicant.value),
            )
            item = policy.service_item(request.purpose.item)
        except InvalidInput as exc:
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        await rq.admit(
            token,
            now=now,
            base=base,
            event=EVENT_REFUSED,
            started=started,
            case=request.purpose.case,
        )
        claims = await self._listed(policy, request, item, base, started)
        answer = rq.sign_answer(claims, token=token, typ=MANIFEST_RESULT_TYP, now=now)
        return LookupAnswer(answer, claims["audit"]["index"])

    async def manifest_for_console(
        self,
        *,
        department: str,
        operator: str,
        purpose_item: str,
        purpose_case: str,
        reason: str,
        applicant_type: str,
        applicant_id: str,
        now: float,
    ) -> dict[str, Any]:
        """The manifest for a clerk logged in to the web console (the session stands in for
        the department's signed token): the same decisions and ``manifest:…`` audit entries
        as :meth:`manifest`, with the console user as operator. The answer's claims
        (unsigned: the page shows them); InvalidInput (not audited) names an unusable value,
        other refusals are audited and raised as :meth:`manifest` raises them."""
        rq = self._requests
        policy = self._policy.current
        claims_in = {
            "operator": operator,
            "purpose": {"item": purpose_item, "case": purpose_case, "reason": reason},
            "applicant": {"type": applicant_type, "id": applicant_id},
        }
        request = parse_manifest_claims(department, claims_in)
        started = time.perf_counter()
        base = rq.start(msgspec.json.encode(claims_in), now=now, policy_version=policy.version)
        base.update(
            department=department,
            operator=request.operator,
            service_item=request.purpose.item,
            case_number=request.purpose.case,
            reason=request.purpose.reason,
            subject_hmac=rq.hash_subject(request.applicant.type, request.applicant.value),
        )
        try:
            item = policy.service_item(request.purpose.item)
            await rq.guard.admit(
                department=department,
                jti=uuid.uuid4().hex,  # no token to replay: a fresh id per page request
                replay_ttl=1,
                now=now,
                case=request.purpose.case,
            )
        except (InvalidInput, PolicyDenied, RateLimited, Replayed, StoreUnavailable) as exc:
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        return await self._listed(policy, request, item, base, started)

    async def _listed(
        self,
        policy: PolicySet,
        request: ManifestRequest,
        item: ServiceItem,
        base: AuditBase,
        started: float,
    ) -> dict[str, Any]:
        """Decide every material, audit the listing; the answer's claims."""
        rq = self._requests
        try:
            materials = [
                await self._material(policy, request, item, m, base["at"]) for m in item.materials
            ]
        except SourceFailed as exc:
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        counts = {
            s: sum(1 for m in materials if m["status"] == s)
            for s in ("available", "bring", "not-granted")
        }
        index = await rq.audit.append(
            AuditEntry(
                **base,
                event=EVENT_LISTED,
                decision=Outcome.ALLOWED,
                detail=msgspec.json.encode(counts).decode(),
                latency_ms=elapsed_ms(started),
            )
        )
        return {
            "purpose": msgspec.structs.asdict(request.purpose),
            "item": {"code": item.code, "name": item.name},
            "applicant": {"type": str(request.applicant.type), "id": request.applicant.value},
            "materials": materials,
            "summary": counts,
            "policy_version": policy.version,
            "audit": {"index": index},
        }

    async def _material(
        self,
        policy: PolicySet,
        request: ManifestRequest,
        item: ServiceItem,
        material: Material,
        at: Any,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"name": material.name}
        if material.resource is None:
            return {**out, "status": "bring", "reason": "no-shared-source"}
        resource = policy.resources[material.resource]
        out.update(resource=resource.id, provider=resource.provider)
        if resource.subject != request.applicant.type:
            # e.g. a legal representative's ID for a company applicant: another subject.
            return {**out, "status": "bring", "reason": "not-keyed-by-applicant"}
        try:
            decision = policy.decide(
                consumer=request.consumer, resource=resource, fields=None, item=item, now=at
            )
        except PolicyDenied as exc:
            return {**out, "status": "not-granted", "reason": exc.reason_code}
        adapter = self._adapters(policy).get(resource.id)
        if adapter is None:
            raise SourceFailed(resource.id, "no adapter")
        record = await fetch_within(
            adapter, resource.id, request.applicant.value, self._source_deadline
        )
        if record is None:
            return {**out, "status": "bring", "reason": "no-record"}
        return {**out, "status": "available", "grant": decision.grant_id}
