"""The hot path of the gateway, free of any web framework: single and batch lookups.

Order of work for one request (each refusal is audited, durably, before it is raised):

1. verify the token (signature, header, registered claims) — 401 on any failure;
2. parse the request claims and the subject's check character — 400;
3. ask the policy — pure and fast; the record has not been touched, so a refusal cannot
   reveal whether the record exists;
4. admit the request: closed case, rate limit, replay, the grant's daily subject quota and
   the lookup-cache read, in one guard call (one Redis round trip) — 403 / 429 / 409;
5. on a cache miss, fetch the record from the provider's source (502 / 504 when it fails or
   is slow) and cache it; release only the granted fields, masked where the grant says so;
6. make the audit entry durable (group commit) — 503 if it cannot be;
7. sign the answer, naming the entry's index.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.audit import Outcome
from gateway.cache import Admission, CachedRecord, CacheProbe, QuotaClaim
from gateway.core.lookup import (
    BatchRequest,
    LookupRequest,
    Purpose,
    Query,
    parse_batch_claims,
    parse_lookup_claims,
)
from gateway.core.policy import DISTRICT_TZ, Decision, PolicySet, ReasonCode, ServiceItem
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.sources import SourceAdapter, SourceRecord
from gateway.errors import (
    Error,
    InvalidInput,
    PolicyDenied,
    RecordNotFound,
    SourceFailed,
    SourceTimeout,
)
from gateway.exchange import (
    Admit,
    AuditDraft,
    Done,
    Exchange,
    Received,
    SignedAnswer,
    SignedExchanges,
)
from gateway.telemetry.context import current_request

__all__ = ["LOOKUP", "LookupService", "fetch_within"]


@dataclass(slots=True)
class _Planned:
    """One query on its way: decided (or refused) before the guard is asked."""

    query: Query | None
    decision: Decision | None = None
    error: Error | None = None
    quota: QuotaClaim | None = None
    probe: CacheProbe | None = None  # set when the resource is cached
    ttl: float = 0.0
    cached: CachedRecord | None = None  # what the admit step found in the cache
    generation: str = "0"


class _CachedSourceRecord(msgspec.Struct, frozen=True):
    values: dict[str, Any]
    source: str
    as_of: str
    version: str | None = None


def _apply_admission(plans: list[_Planned], admission: Admission) -> None:
    """Hand each plan its quota verdict and cache read, in the order they were asked."""
    fits = iter(admission.quotas)
    reads = iter(zip(admission.cached, admission.generations, strict=True))
    for plan in plans:
        if plan.quota is not None and not next(fits):
            plan.error = PolicyDenied(
                ReasonCode.QUOTA_EXHAUSTED, "the grant's daily subject quota is used up"
            )
        if plan.probe is not None:
            plan.cached, plan.generation = next(reads)


#: The two signed exchanges of this module.
LOOKUP = Exchange(
    request=TokenType.LOOKUP,
    answer=TokenType.LOOKUP_RESULT,
    parse=parse_lookup_claims,
    refused=AuditEvent.LOOKUP_REFUSED,
    done=None,  # the work writes the release (or not-found) entry itself
)


class LookupService:
    """Runs signed lookups. Construct once per process; methods are safe to run concurrently."""

    def __init__(
        self,
        *,
        exchanges: SignedExchanges,
        adapters: Callable[[PolicySet], Mapping[str, SourceAdapter]],
        batch_limit: int = 100,
        batch_token_max_bytes: int = 256 * 1024,
        source_deadline: float = 10.0,
    ) -> None:
        self._exchanges = exchanges
        self._adapters = adapters
        self._source_deadline = source_deadline
        self._batch: Exchange[BatchRequest] = Exchange(
            request=TokenType.BATCH,
            answer=TokenType.BATCH_RESULT,
            parse=lambda dept, claims: parse_batch_claims(dept, claims, limit=batch_limit),
            refused=AuditEvent.LOOKUP_REFUSED,
            done=None,  # an entry per query, written by the work
            max_bytes=batch_token_max_bytes,
        )

    # --- single lookups -------------------------------------------------------------------

    async def lookup(self, body: bytes, *, now: float) -> SignedAnswer:
        """Run one lookup for the request token ``body`` received at ``now`` (epoch seconds).

        Returns the signed answer, or raises a :class:`~gateway.errors.Error` subclass after
        auditing the refusal; the error carries ``audit_index``.
        """
        return await self._exchanges.run(
            LOOKUP, body, now=now, check=self._decide, work=self._fetch
        )

    def _decide(self, received: Received[LookupRequest]) -> Admit:
        """Decide the query before anything reads the record: a refusal here cannot tell
        whether the record exists. A policy refusal is kept on the plan and audited after
        admission (the token is used); only a bad service item refuses before it."""
        request = received.request
        _purpose_into(received.audit, request.purpose)
        self._query_into(received.audit, request.query)
        item = received.policy.service_item(request.purpose.item)
        plan = self._plan(received.policy, request.consumer, item, request.query, received.audit.at)
        return Admit(
            case=request.purpose.case,
            quotas=[plan.quota] if plan.quota else [],
            probes=[plan.probe] if plan.probe else [],
            plan=plan,
        )

    async def _fetch(
        self, received: Received[LookupRequest], admit: Admit, admission: Admission
    ) -> Done:
        plan: _Planned = admit.plan
        _apply_admission([plan], admission)
        result = await self._fetch_and_audit(received, plan, received.audit)
        if isinstance(result, Error):
            raise result  # audited already
        claims, index = result
        return Done(
            {
                "purpose": msgspec.structs.asdict(received.request.purpose),
                **claims,
                "policy_version": received.policy.version,
            },
            index=index,
        )

    # --- batches --------------------------------------------------------------------------

    async def lookup_batch(self, body: bytes, *, now: float) -> SignedAnswer:
        """Run a batch: one token, one signed answer with a result per query, each audited.

        A batch over the limit, or whose token or purpose is bad, is refused whole.
        """
        return await self._exchanges.run(
            self._batch, body, now=now, check=self._decide_batch, work=self._fetch_batch
        )

    def _decide_batch(self, received: Received[BatchRequest]) -> Admit:
        batch = received.request
        _purpose_into(received.audit, batch.purpose)
        item = received.policy.service_item(batch.purpose.item)
        plans = [
            _Planned(None, error=q)
            if isinstance(q, InvalidInput)
            else self._plan(
                received.policy, batch.consumer, item, q, received.audit.at, f"queries[{i}]"
            )
            for i, q in enumerate(batch.queries)
        ]
        return Admit(
            case=batch.purpose.case,
            quotas=[p.quota for p in plans if p.quota is not None],
            probes=[p.probe for p in plans if p.probe is not None],
            cost=len(plans),
            plan=plans,
        )

    async def _fetch_batch(
        self, received: Received[BatchRequest], admit: Admit, admission: Admission
    ) -> Done:
        plans: list[_Planned] = admit.plan
        _apply_admission(plans, admission)
        results: list[dict[str, Any]] = []
        for i, plan in enumerate(plans):
            draft = received.audit.but()
            if plan.query is not None:
                self._query_into(draft, plan.query)
            outcome = await self._fetch_and_audit(received, plan, draft)
            if isinstance(outcome, Error):
                results.append({"index": i, **_problem(outcome)})
            else:
                item_claims, _index = outcome
                results.append({"index": i, "status": 200, **item_claims})
        first = next(r["audit"]["index"] for r in results if "audit" in r)
        return Done(
            {
                "purpose": msgspec.structs.asdict(received.request.purpose),
                "results": results,
                "policy_version": received.policy.version,
            },
            index=first,
        )

    # --- shared steps ---------------------------------------------------------------------

    def _query_into(self, draft: AuditDraft, query: Query) -> None:
        draft.resource = query.resource
        draft.subject_hmac = self._exchanges.hash_subject(query.subject.type, query.subject.value)
        draft.fields = query.fields

    def _plan(  # noqa: PLR0917 - private; every argument is needed, none has a default
        self,
        policy: PolicySet,
        consumer: str,
        item: ServiceItem,
        query: Query,
        at: dt.datetime,
        where: str = "query",
    ) -> _Planned:
        """Decide one query (pure); a refusal is kept on the plan, audited later."""
        plan = _Planned(query)
        try:
            try:
                resource = policy.resource(query.resource)
            except InvalidInput:
                raise InvalidInput(f"{where}.resource", "is not in the catalogue") from None
            if resource.subject != query.subject.type:
                raise InvalidInput(
                    f"{where}.subject.type", f"this resource is keyed by {resource.subject}"
                )
            unknown = [f for f in query.fields if f not in resource.field_names]
            if unknown:
                raise InvalidInput(
                    f"{where}.fields", f"not fields of this resource: {', '.join(unknown)}"
                )
            plan.decision = policy.decide(
                consumer=consumer, resource=resource, fields=query.fields, item=item, now=at
            )
        except (InvalidInput, PolicyDenied) as exc:
            plan.error = exc
            return plan
        subject = self._exchanges.hash_subject(query.subject.type, query.subject.value)
        if plan.decision.max_subjects_per_day is not None:
            plan.quota = QuotaClaim(
                grant_id=plan.decision.grant_id,
                day=at.astimezone(DISTRICT_TZ).date().isoformat(),
                subject=subject,
                limit=plan.decision.max_subjects_per_day,
            )
        if resource.cache_ttl_seconds > 0:
            plan.probe = CacheProbe(resource.id, subject)
            plan.ttl = float(resource.cache_ttl_seconds)
        return plan

    async def _fetch_and_audit(
        self, received: Received[Any], plan: _Planned, draft: AuditDraft
    ) -> tuple[dict[str, Any], int] | Error:
        """Fetch and release one planned query, or audit its refusal. Returns the answer's
        claims for it and the audit index, or the (audited) error."""
        ex = self._exchanges
        now = received.now
        if plan.error is not None:
            await ex.refuse(plan.error, draft, AuditEvent.LOOKUP_REFUSED)
            return plan.error
        assert plan.query is not None
        assert plan.decision is not None
        query, decision = plan.query, plan.decision
        draft = draft.but(grant_id=decision.grant_id)
        cache: dict[str, Any] = {"hit": False}
        record: SourceRecord | None
        telemetry = current_request()
        if telemetry is not None:
            telemetry.resource, telemetry.service_item = query.resource, draft.service_item
            if plan.probe is not None:
                telemetry.cache_reads.append((query.resource, plan.cached is not None))
        if plan.cached is not None:
            hit = msgspec.json.decode(plan.cached.payload, type=_CachedSourceRecord)
            record = SourceRecord(hit.values, hit.source, hit.as_of, hit.version)
            cache = {"hit": True, "age_seconds": round(max(0.0, now - plan.cached.cached_at), 3)}
        else:
            adapter = self._adapters(received.policy).get(query.resource)
            try:
                if adapter is None:
                    raise SourceFailed(query.resource, "no adapter")
                record = await fetch_within(
                    adapter, query.resource, query.subject.value, self._source_deadline
                )
            except SourceFailed as exc:
                await ex.refuse(exc, draft, AuditEvent.LOOKUP_REFUSED)
                return exc
            if record is not None and plan.probe is not None:
                payload = msgspec.json.encode(
                    _CachedSourceRecord(
                        dict(record.values), record.source, record.as_of, record.version
                    )
                )
                await ex.guard.cache_put(
                    department=received.token.department,
                    probe=plan.probe,
                    generation=plan.generation,
                    payload=payload,
                    ttl=plan.ttl,
                    now=now,
                )
        # The quota counts the subject in the entry's transaction (the guard's count is a
        # copy); a subject beyond it is refused there, written as the refusal it is.
        try:
            if record is None:
                missing = RecordNotFound("no record for this subject")
                missing.audit_index = await ex.audit.append(
                    draft.entry(
                        AuditEvent.LOOKUP_NOT_FOUND,
                        Outcome.ALLOWED,
                        reason_code=missing.audit_code,
                    ),
                    quota=plan.quota,
                )
                return missing
            data = decision.release(record.values)
            index = await ex.audit.append(
                draft.entry(
                    AuditEvent.LOOKUP_RELEASED,
                    Outcome.ALLOWED,
                    response_hash=hashlib.sha256(
                        msgspec.json.encode(data, order="sorted")
                    ).hexdigest(),
                ),
                quota=plan.quota,
            )
        except PolicyDenied as refused:  # closed case or quota, by the durable check
            return refused
        resource = received.policy.resources[query.resource]
        return {
            "query": {
                "resource": query.resource,
                "subject": {"type": str(query.subject.type), "id": query.subject.value},
                "fields": list(decision.fields),
            },
            "data": data,
            "masked": sorted(f for f in decision.fields if f in decision.masks),
            "provenance": {
                "provider": resource.provider,
                "source": record.source,
                "as_of": record.as_of,
                **({"version": record.version} if record.version is not None else {}),
                "cache": cache,
            },
            "grant": decision.grant_id,
            "audit": {"index": index},
        }, index


async def fetch_within(
    adapter: SourceAdapter, resource: str, subject: str, deadline: float
) -> SourceRecord | None:
    """The adapter's fetch under the gateway's own deadline: a backstop behind the adapter's
    timeouts, so a source can never hold a request (and its audit entry) open. The time it
    took is the request's ``source`` phase, and a source read of its telemetry."""
    record = current_request()
    started = time.perf_counter()
    outcome = "failed"
    try:
        # A timeout scope, not ``wait_for``: that runs the fetch as a task of its own, three
        # turns of the event loop for a read that completes without suspending (a local
        # SQLite source), each turn several milliseconds when the loop is busy.
        async with asyncio.timeout(deadline):
            found = await adapter.fetch(subject)
    except TimeoutError:
        outcome = "timeout"
        raise SourceTimeout(resource, f"no answer within {deadline:g} s") from None
    except SourceTimeout:
        outcome = "timeout"
        raise
    else:
        outcome = "found" if found is not None else "not-found"
        return found
    finally:
        if record is not None:
            spent = time.perf_counter() - started
            record.add("source", spent)
            record.sources.append((resource, type(adapter).__name__, outcome, spent))


def _purpose_into(draft: AuditDraft, purpose: Purpose) -> None:
    draft.service_item = purpose.item
    draft.case_number = purpose.case
    draft.reason = purpose.reason


def _problem(exc: Error) -> dict[str, Any]:
    """A batch item's refusal, shaped like the problem details of a single lookup."""
    out: dict[str, Any] = {"status": exc.status, "reason": exc.audit_code}
    if isinstance(exc, InvalidInput):
        out["field"] = exc.field
        out["detail"] = exc.reason
    elif isinstance(exc, PolicyDenied):
        out["reason"] = exc.reason_code
        out["detail"] = exc.detail
    if exc.audit_index is not None:
        out["audit"] = {"index": exc.audit_index}
    return out
