"""One entry that cannot be stored fails only its own request, on SQLite and PostgreSQL.

:class:`~gateway.audit.AuditEntry` normalises every text field, so a sender can no longer
produce such an entry; these tests forge one past the normalisation (as a future bug might)
to hold the group-commit writer to its second promise: the other entries of the batch commit,
each with its own gap-free index, and the unstorable one is replaced by an entry that says
what happened.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.audit.promises import CURRENT_CLAIM, TokenClaim
from gateway.audit.verify import verify_log
from gateway.cache.protocol import QuotaClaim
from gateway.core.keyring import GatewaySigner
from gateway.errors import Error, PolicyDenied, Replayed, StoreUnavailable
from gateway.storage.schema import closed_cases


def honest(i: int) -> AuditEntry:
    return AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department=f"dept-{i % 5}",
        reason="核验",
        detail=str(i),
    )


def poisoned(value: str) -> AuditEntry:
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department="poisoner",
        request_hash="ab" * 32,
    )
    object.__setattr__(entry, "reason", value)  # past the normalisation, on purpose
    return entry


def test_the_entry_normalises_what_a_sender_put_in_it() -> None:
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="x",
        decision=Outcome.REFUSED,
        reason="a\ud800b\x00c" + "长" * 300,
        detail="header-not-allowed:\x00",
        fields=("name\x00",),
        latency_ms=float("nan"),
    )
    assert entry.reason is not None
    assert entry.reason.startswith("a\ufffdb\ufffdc")
    assert len(entry.reason) == 256  # the column's width
    assert entry.detail == "header-not-allowed:\ufffd"
    assert entry.fields == ("name\ufffd",)
    assert entry.latency_ms is None


@pytest.mark.parametrize("bad", ["\ud800", "a\x00b"])
def test_an_unstorable_entry_fails_alone(audit_engine: sa.Engine, bad: str) -> None:
    if bad == "a\x00b" and audit_engine.dialect.name == "sqlite":
        pytest.skip("SQLite stores NUL; only PostgreSQL refuses it")
    log = GroupCommitAuditLog(engine=audit_engine, max_batch=128)
    log.start()

    async def run() -> list[int | BaseException]:
        entries = [honest(i) for i in range(25)] + [poisoned(bad)] + [honest(i) for i in range(25)]
        # All queued at once: they share the writer's batches with the poisoned one.
        return await asyncio.gather(*(log.append(e) for e in entries), return_exceptions=True)

    try:
        results = asyncio.run(run())
    finally:
        log.stop()
    others = results[:25] + results[26:]
    assert all(isinstance(r, int) for r in others), others
    failed = results[25]
    assert isinstance(failed, StoreUnavailable)
    assert failed.audit_index is not None
    with audit_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT idx, department, reason_code, decision FROM audit_entries ORDER BY idx")
        ).all()
    # Gap-free, and the replacement says what happened (never "released").
    assert [r.idx for r in rows] == list(range(1, 52))
    replacement = next(r for r in rows if r.idx == failed.audit_index)
    assert (replacement.department, replacement.reason_code, replacement.decision) == (
        "poisoner",
        "entry-unstorable",
        "refused",
    )
    signer = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer="g")
    report = verify_log(audit_engine, gateway_jwk=signer.public_jwk, issuer="g")
    assert report.ok, report


# --- the durable promises, checked by the writer ---------------------------------------------


def _claimed(claim: TokenClaim, entry: AuditEntry, log: GroupCommitAuditLog, **kw: Any) -> Any:
    async def run() -> Any:
        CURRENT_CLAIM.set(claim)
        try:
            return await log.append(entry, **kw)
        except Error as exc:
            return exc

    return run()


def test_the_writer_keeps_single_use_closed_cases_and_quotas(audit_engine: sa.Engine) -> None:
    with audit_engine.begin() as conn:
        conn.execute(
            closed_cases.insert().values(
                department="dept-1",
                case_number="CLOSED",
                closed_at=dt.datetime.now(dt.UTC),
                operator="o",
                reason="办结",
            )
        )
    log = GroupCommitAuditLog(engine=audit_engine, max_batch=128)
    log.start()

    def claim(jti: str, nonce: str, case: str | None = None) -> TokenClaim:
        return TokenClaim("dept-1", jti, nonce, 4_000_000_000, case, "lookup:record:refused")

    def quota(subject: str) -> QuotaClaim:
        return QuotaClaim(grant_id="g", day="2026-12-01", subject=subject, limit=2)

    async def run() -> list[Any]:
        return await asyncio.gather(
            # One request's two entries share its claim; a replay in the same batch loses.
            _claimed(claim("j-1", "n-1"), honest(1), log),
            _claimed(claim("j-1", "n-1"), honest(2), log),
            _claimed(claim("j-1", "n-other"), honest(3), log),
            # A release under a closed case; a refusal under it is no release.
            _claimed(claim("j-2", "n-2", "CLOSED"), honest(4), log),
            # Quota of 2 subjects: a, b fit; a again fits; c does not.
            _claimed(claim("j-3", "n-3"), honest(5), log, quota=quota("a")),
            _claimed(claim("j-4", "n-4"), honest(6), log, quota=quota("b")),
            _claimed(claim("j-5", "n-5"), honest(7), log, quota=quota("a")),
            _claimed(claim("j-6", "n-6"), honest(8), log, quota=quota("c")),
        )

    try:
        results = asyncio.run(run())
        # A replay of an earlier batch's token loses too (another batch, another transaction).
        late = asyncio.run(_claimed(claim("j-4", "n-late"), honest(9), log))
    finally:
        log.stop()
    assert isinstance(results[0], int)
    assert isinstance(results[1], int)
    assert isinstance(results[2], Replayed)
    assert isinstance(results[3], PolicyDenied)
    assert results[3].reason_code == "case-closed"
    assert [isinstance(r, int) for r in results[4:7]] == [True, True, True]
    assert isinstance(results[7], PolicyDenied)
    assert results[7].reason_code == "quota-exhausted"
    assert isinstance(late, Replayed)
    with audit_engine.connect() as conn:
        rows = {
            r.idx: r
            for r in conn.execute(
                sa.text("SELECT idx, event, decision, reason_code FROM audit_entries")
            )
        }
    for refused in (results[2], results[3], results[7], late):
        row = rows[refused.audit_index]
        assert (row.event, row.decision) == ("lookup:record:refused", "refused")
    assert rows[results[2].audit_index].reason_code == "replay"
