"""A consumer declares one of its cases closed: later lookups for it are refused."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway.cache import Admission
from gateway.core.lookup import CaseClosure, parse_case_closure_claims
from gateway.core.protocol import AuditEvent, TokenType
from gateway.exchange import Admit, Done, Exchange, Received, SignedAnswer, SignedExchanges
from gateway.lookups.store import record_closed_case

__all__ = ["CLOSE_CASE", "CaseService"]

CLOSE_CASE = Exchange(
    request=TokenType.CASE_CLOSE,
    answer=TokenType.CASE_CLOSED,
    parse=parse_case_closure_claims,
    refused=AuditEvent.CASE_REFUSED,
    done=AuditEvent.CASE_CLOSED,
)


class CaseService:
    """Signed case closures. The database keeps the record; the guard is how lookups see it
    fast (the audit writer checks the record itself, whatever the guard knows)."""

    def __init__(self, *, exchanges: SignedExchanges, engine: sa.Engine) -> None:
        self._exchanges = exchanges
        self._engine = engine

    async def close(self, body: bytes, *, now: float) -> SignedAnswer:
        """Close the case named by the signed request ``body``; answer a signed receipt."""
        return await self._exchanges.run(CLOSE_CASE, body, now=now, work=self._close)

    async def _close(
        self, received: Received[CaseClosure], _admit: Admit, _admission: Admission
    ) -> Done:
        closure = received.request
        received.audit.case_number = closure.case
        received.audit.reason = closure.reason
        newly = await asyncio.to_thread(
            record_closed_case,
            self._engine,
            department=closure.consumer,
            case=closure.case,
            operator=closure.operator,
            reason=closure.reason,
            at=received.audit.at,
        )
        await self._exchanges.guard.close_case(department=closure.consumer, case=closure.case)
        return Done(
            {"case": closure.case, "closed": True, "already_closed": not newly},
            audit={"detail": "closed" if newly else "already closed"},
        )
