"""A consumer department declares a case closed; later lookups for it are refused."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway.audit import AuditEntry, Outcome
from gateway.core.lookup import parse_case_closure_claims
from gateway.core.tokens import CASE_CLOSE_REQUEST_TYP, CASE_CLOSE_RESULT_TYP
from gateway.lookups.base import SignedRequests, elapsed_ms
from gateway.lookups.service import LookupAnswer, PolicyHolder
from gateway.storage.cases import record_closed_case

__all__ = ["CaseService"]

EVENT_CLOSED = "case:closure:recorded"
EVENT_REFUSED = "case:closure:refused"


class CaseService:
    """Records case closures durably, then in the guard that refuses lookups for them."""

    def __init__(
        self, *, requests: SignedRequests, policy: PolicyHolder, engine: sa.Engine
    ) -> None:
        self._requests = requests
        self._policy = policy
        self._engine = engine

    async def close(self, body: bytes, *, now: float) -> LookupAnswer:
        """Close the case named by the signed request ``body``; answer a signed receipt."""
        rq = self._requests
        received = await rq.receive(
            body,
            typ=CASE_CLOSE_REQUEST_TYP,
            now=now,
            policy_version=self._policy.current.version,
            event=EVENT_REFUSED,
            parse=parse_case_closure_claims,
        )
        token, closure, base, started = (
            received.token,
            received.request,
            received.base,
            received.started,
        )
        base.update(operator=closure.operator, case_number=closure.case, reason=closure.reason)
        await rq.admit(token, now=now, base=base, event=EVENT_REFUSED, started=started)
        # The database is the record; the guard (in process or Redis) is how lookups see it.
        newly = await asyncio.to_thread(
            record_closed_case,
            self._engine,
            department=closure.consumer,
            case=closure.case,
            operator=closure.operator,
            reason=closure.reason,
            at=base["at"],
        )
        await rq.guard.close_case(department=closure.consumer, case=closure.case)
        index = await rq.audit.append(
            AuditEntry(
                **base,
                event=EVENT_CLOSED,
                decision=Outcome.ALLOWED,
                detail="closed" if newly else "already closed",
                latency_ms=elapsed_ms(started),
            )
        )
        answer = rq.sign_answer(
            {
                "case": closure.case,
                "closed": True,
                "already_closed": not newly,
                "audit": {"index": index},
            },
            token=token,
            typ=CASE_CLOSE_RESULT_TYP,
            now=now,
        )
        return LookupAnswer(answer, index)
