"""The manifest of a service item for one applicant: what the gateway can supply, what the
applicant must still bring — in one signed answer (the one-time notice, 一次性告知).

A manifest releases no record data, only availability: for each material the item's service
guide requires, one of ``available`` (the consumer may read it from this resource, and the
provider holds a record for this applicant), ``bring`` (no shared source, a source keyed by
another kind of subject, or no record) or ``not-granted`` (a source exists but no grant lets
this consumer use it for this item — with the reason code).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from gateway.audit import Outcome
from gateway.cache import Admission
from gateway.core.lookup import ManifestRequest, parse_manifest_claims
from gateway.core.policy import Material, PolicySet, ServiceItem
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.sources import SourceAdapter
from gateway.errors import Error, PolicyDenied, SourceFailed
from gateway.exchange import (
    Admit,
    AuditDraft,
    Done,
    Exchange,
    Received,
    SignedAnswer,
    SignedExchanges,
)
from gateway.lookups.service import fetch_within

__all__ = ["MANIFEST", "ManifestService"]


MANIFEST = Exchange(
    request=TokenType.MANIFEST,
    answer=TokenType.MANIFEST_RESULT,
    parse=parse_manifest_claims,
    refused=AuditEvent.MANIFEST_REFUSED,
    done=AuditEvent.MANIFEST_LISTED,
)


class ManifestService:
    """Answers signed manifest requests."""

    def __init__(
        self,
        *,
        exchanges: SignedExchanges,
        adapters: Callable[[PolicySet], Mapping[str, SourceAdapter]],
        source_deadline: float = 10.0,
    ) -> None:
        self._exchanges = exchanges
        self._adapters = adapters
        self._source_deadline = source_deadline

    async def manifest(self, body: bytes, *, now: float) -> SignedAnswer:
        """Build the signed manifest for the request token ``body``."""

        def check(received: Received[ManifestRequest]) -> Admit:
            self._describe(received.audit, received.request)
            received.policy.service_item(received.request.purpose.item)
            return Admit(case=received.request.purpose.case)

        async def work(
            received: Received[ManifestRequest], _admit: Admit, _admission: Admission
        ) -> Done:
            request, policy = received.request, received.policy
            claims, counts = await self._listed(
                policy, request, policy.service_item(request.purpose.item), received.audit.at
            )
            return Done(claims, audit={"detail": msgspec.json.encode(counts).decode()})

        return await self._exchanges.run(MANIFEST, body, now=now, check=check, work=work)

    def _describe(self, draft: AuditDraft, request: ManifestRequest) -> None:
        draft.service_item = request.purpose.item
        draft.case_number = request.purpose.case
        draft.reason = request.purpose.reason
        draft.subject_hmac = self._exchanges.hash_subject(
            request.applicant.type, request.applicant.value
        )

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
        ex = self._exchanges
        policy = ex.policy.current
        claims_in = {
            "operator": operator,
            "purpose": {"item": purpose_item, "case": purpose_case, "reason": reason},
            "applicant": {"type": applicant_type, "id": applicant_id},
        }
        request = parse_manifest_claims(department, claims_in)
        draft = AuditDraft(
            at=dt.datetime.fromtimestamp(now, dt.UTC),
            started=time.perf_counter(),
            request_hash=hashlib.sha256(msgspec.json.encode(claims_in)).hexdigest(),
            policy_version=policy.version,
            department=department,
            operator=request.operator,
        )
        self._describe(draft, request)
        try:
            item = policy.service_item(request.purpose.item)
            await ex.guard.admit(
                department=department,
                jti=uuid.uuid4().hex,  # no token to replay: a fresh id per page request
                replay_ttl=1,
                now=now,
                case=request.purpose.case,
            )
            claims, counts = await self._listed(policy, request, item, draft.at)
        except Error as exc:
            await ex.refuse(exc, draft, AuditEvent.MANIFEST_REFUSED)
            raise
        index = await ex.audit.append(
            draft.entry(
                AuditEvent.MANIFEST_LISTED,
                Outcome.ALLOWED,
                detail=msgspec.json.encode(counts).decode(),
            )
        )
        return {**claims, "audit": {"index": index}}

    async def _listed(
        self, policy: PolicySet, request: ManifestRequest, item: ServiceItem, at: dt.datetime
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """Decide every material; the answer's claims and the counts of each status."""
        materials = [await self._material(policy, request, item, m, at) for m in item.materials]
        counts = {
            s: sum(1 for m in materials if m["status"] == s)
            for s in ("available", "bring", "not-granted")
        }
        return {
            "purpose": msgspec.structs.asdict(request.purpose),
            "item": {"code": item.code, "name": item.name},
            "applicant": {"type": str(request.applicant.type), "id": request.applicant.value},
            "materials": materials,
            "summary": counts,
            "policy_version": policy.version,
        }, counts

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
