"""An answer unlike its documented schema is a bug: the pipeline finds it before the entry
that would say the request was answered is written, so the log never records an answer that
did not leave. The real pipeline of an in-process gateway, a real signed case closure."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from gateway.cache import Admission
from gateway.core.lookup import CaseClosure
from gateway.core.protocol import AuditEvent, TokenType
from gateway.exchange import Admit, Done, Received
from gateway.lookups.cases import CLOSE_CASE
from tests.inprocess import InProcessGateway


def test_an_answer_unlike_its_schema_writes_no_entry_of_an_answer(
    embedded_app: InProcessGateway,
) -> None:
    exchanges = embedded_app.runtime.exchanges
    with embedded_app.client("tax") as client:
        now = time.time()
        token = client.sign(
            {
                "iss": "tax",
                "aud": embedded_app.settings.gateway_id,
                "iat": int(now),
                "exp": int(now) + 60,
                "jti": f"undocumented-{now}",
                "case": "BJ-UNDOCUMENTED-1",
                "operator": "clerk-1",
                "reason": "核验",
            },
            typ=TokenType.CASE_CLOSE,
        )

    async def undocumented(_r: Received[CaseClosure], _a: Admit, _b: Admission) -> Done:
        # "closed" must be a boolean; an extra member the schema does not name
        return Done({"case": "BJ-UNDOCUMENTED-1", "closed": "yes", "already_closed": False})

    before = embedded_app.audit_count()
    with pytest.raises(msgspec.ValidationError):
        asyncio.run(exchanges.run(CLOSE_CASE, token.encode(), now=now, work=undocumented))
    written = embedded_app.audit_rows("idx > :n", n=before)
    assert [row["event"] for row in written if row["event"] == AuditEvent.CASE_CLOSED] == []
