"""The audit log on a real SQLite file, written by the real group-commit sequencer and
checkpointed by the real checkpointer, then tampered with in every way (edit, delete, insert,
reorder, truncate — with and without rewriting the stored tree to match): ``verify_log``
must fail every time, and pass while nobody tampered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from pathlib import Path

import pytest
import rfc8785
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.audit.transparency import TransparencyLog
from gateway.audit.tree import leaf_bytes, node_row
from gateway.audit.verify import ProblemCode, verify_log
from gateway.core import merkle
from gateway.core.keyring import GatewaySigner, public_jwk
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import audit_entries, merkle_nodes

ISSUER = "yiwang-gateway"
KEY = ec.generate_private_key(ec.SECP256R1())
JWK = public_jwk(KEY, alg="ES256")
T0 = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
_databases = itertools.count()


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + dt.timedelta(seconds=n, microseconds=n * 7),
        event="lookup:record:released" if n % 3 else "lookup:record:refused",
        decision=Outcome.ALLOWED if n % 3 else Outcome.REFUSED,
        department=("tax", "hrss", "police")[n % 3],
        operator=f"clerk-{n % 5}",
        subject_hmac=f"{n:064x}",
        fields=("name", "status") if n % 2 else None,
        latency_ms=n / 7,
        detail=f"entry {n}",
    )


def rebuild_tree(conn: sa.Connection) -> None:
    """What a careful forger does: recompute every stored node from the (tampered) rows."""
    rows = conn.execute(sa.select(audit_entries).order_by(audit_entries.c.idx)).mappings().all()
    tree = merkle.MemoryTree(merkle.leaf_hash(leaf_bytes(r)) for r in rows)
    conn.execute(merkle_nodes.delete())
    nodes = [node_row(lvl, i, h) for lvl, i, h in tree.nodes()]
    if nodes:
        conn.execute(sa.insert(merkle_nodes), nodes)


class TamperedLog(RuleBasedStateMachine):
    """Appends and checkpoints, then (once) a tampering; verify tells the truth throughout."""

    def __init__(self) -> None:
        super().__init__()
        path = Path(TMP) / f"audit-{next(_databases)}.sqlite3"
        self.engine = create_database_engine(f"sqlite:///{path}")
        migrations.upgrade(self.engine)
        self.log = GroupCommitAuditLog(engine=self.engine, max_batch=7)
        self.log.start()
        self.checkpoints = TransparencyLog(
            engine=self.engine,
            signer=GatewaySigner(private_key=KEY, issuer=ISSUER),
            gateway_id=ISSUER,
        )
        self.written = 0
        self.checkpointed = 0
        self.tampered: str | None = None

    def teardown(self) -> None:
        self.log.stop()
        self.engine.dispose()

    @rule(count=st.integers(1, 25))
    @precondition(lambda self: self.tampered is None)
    def append(self, count: int) -> None:
        async def write() -> list[int]:
            return await asyncio.gather(
                *(self.log.append(_entry(self.written + i)) for i in range(count))
            )

        indexes = asyncio.run(write())
        assert sorted(indexes) == list(range(self.written + 1, self.written + count + 1))
        self.written += count

    @rule()
    @precondition(lambda self: self.tampered is None and self.written > self.checkpointed)
    def checkpoint(self) -> None:
        made = self.checkpoints.make_checkpoint(T0)
        assert made is not None
        assert made.size == self.written
        self.checkpointed = self.written

    # Tampering happens only inside what a signed checkpoint covers: entries written after
    # the last checkpoint are, by design, not yet vouched for by anything signed.

    def _can_tamper(self) -> bool:
        return self.tampered is None and self.checkpointed >= 2

    @rule(data=st.data(), rewrite_tree=st.booleans())
    @precondition(lambda self: self._can_tamper())
    def edit(self, data: st.DataObject, rewrite_tree: bool) -> None:
        target = data.draw(st.integers(1, self.checkpointed), label="entry")
        column = data.draw(st.sampled_from(["department", "detail", "decision", "at"]))
        value: object = T0 - dt.timedelta(days=1) if column == "at" else f"forged-{column}"
        self._tamper(
            f"edit {target}.{column}",
            lambda c: c.execute(
                audit_entries.update().where(audit_entries.c.idx == target).values({column: value})
            ),
            rewrite_tree,
        )

    @rule(data=st.data(), rewrite_tree=st.booleans())
    @precondition(lambda self: self._can_tamper())
    def delete(self, data: st.DataObject, rewrite_tree: bool) -> None:
        target = data.draw(st.integers(1, self.checkpointed - 1), label="entry")
        self._tamper(
            f"delete {target}",
            lambda c: c.execute(audit_entries.delete().where(audit_entries.c.idx == target)),
            rewrite_tree,
        )

    @rule(data=st.data(), rewrite_tree=st.booleans())
    @precondition(lambda self: self._can_tamper())
    def insert(self, data: st.DataObject, rewrite_tree: bool) -> None:
        at = data.draw(st.integers(1, self.checkpointed), label="position")

        def shift_and_insert(c: sa.Connection) -> None:
            # Make room by renumbering from the end (the primary key must stay unique).
            for idx in range(self.written, at - 1, -1):
                c.execute(
                    audit_entries.update().where(audit_entries.c.idx == idx).values(idx=idx + 1)
                )
            row = _entry(10_000).as_row()
            c.execute(sa.insert(audit_entries), [{**row, "idx": at}])

        self._tamper(f"insert at {at}", shift_and_insert, rewrite_tree)

    @rule(data=st.data(), rewrite_tree=st.booleans())
    @precondition(lambda self: self._can_tamper())
    def reorder(self, data: st.DataObject, rewrite_tree: bool) -> None:
        a = data.draw(st.integers(1, self.checkpointed - 1), label="first")
        b = data.draw(st.integers(a + 1, self.checkpointed), label="second")

        def swap(c: sa.Connection) -> None:
            for idx, temp in ((a, -1), (b, a), (-1, b)):
                c.execute(audit_entries.update().where(audit_entries.c.idx == idx).values(idx=temp))

        self._tamper(f"swap {a} and {b}", swap, rewrite_tree)

    @rule(data=st.data(), rewrite_tree=st.booleans())
    @precondition(lambda self: self._can_tamper())
    def truncate(self, data: st.DataObject, rewrite_tree: bool) -> None:
        keep = data.draw(st.integers(0, self.checkpointed - 1), label="keep")
        self._tamper(
            f"truncate to {keep}",
            lambda c: c.execute(audit_entries.delete().where(audit_entries.c.idx > keep)),
            rewrite_tree,
        )

    @rule()
    @precondition(lambda self: self.tampered is not None)
    def verify_again(self) -> None:
        """After the tampering nothing else happens; the invariant keeps checking."""

    def _tamper(self, what: str, change: object, rewrite_tree: bool) -> None:
        self.log.stop()  # the forger works on the database at rest
        with self.engine.begin() as conn:
            change(conn)  # type: ignore[operator]
            if rewrite_tree:
                rebuild_tree(conn)
        self.tampered = what + (" and rewrite the tree" if rewrite_tree else "")

    @invariant()
    def verify_tells_the_truth(self) -> None:
        report = verify_log(self.engine, gateway_jwk=JWK, issuer=ISSUER)
        if self.tampered is None:
            assert report.ok, report.problems
            assert report.entries == report.tree_size == self.written
        else:
            assert not report.ok, f"{self.tampered} went unnoticed"


TMP = ""


@pytest.fixture(autouse=True)
def _tmp_dir(tmp_path: Path) -> None:
    global TMP  # noqa: PLW0603 - the state machine is built by hypothesis, not by pytest
    TMP = str(tmp_path)


TestTamperedLog = TamperedLog.TestCase
TestTamperedLog.settings = settings(
    # 25 tampered logs in the suite; a fifth of the profile's examples under the fuzz profile.
    max_examples=max(25, settings().max_examples // 5),
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_an_edit_names_its_entry(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    migrations.upgrade(engine)
    log = GroupCommitAuditLog(engine=engine)
    log.start()

    async def write() -> None:
        for n in range(40):
            await log.append(_entry(n))

    asyncio.run(write())
    log.stop()
    TransparencyLog(
        engine=engine, signer=GatewaySigner(private_key=KEY, issuer=ISSUER), gateway_id=ISSUER
    ).make_checkpoint(T0)
    assert verify_log(engine, gateway_jwk=JWK, issuer=ISSUER).ok
    with engine.begin() as conn:
        conn.execute(audit_entries.update().where(audit_entries.c.idx == 17).values(operator="x"))
    report = verify_log(engine, gateway_jwk=JWK, issuer=ISSUER)
    assert report.first_bad_entry == 17
    assert "entry 17 differs" in report.problems[0]
    # The same problem as a code and its numbers, for pages that say it in other words.
    assert report.found[0].code is ProblemCode.ENTRY_DIFFERS
    assert report.found[0].details == {"entry": 17}
    assert report.found[0].message == report.problems[0]
    engine.dispose()


@given(
    text=st.text(max_size=40),
    number=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    fields=st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=4)),
)
@settings(max_examples=300, deadline=None)
def test_leaves_are_rfc8785_canonical_json(
    text: str, number: float, fields: list[str] | None
) -> None:
    row = {
        **_entry(3).as_row(),
        "idx": 42,
        "detail": text,
        "reason": text[::-1],
        "latency_ms": number,
        "fields": None if fields is None else json.dumps(fields),
    }
    leaf = leaf_bytes(row)
    assert leaf == rfc8785.dumps(json.loads(leaf))
    assert json.loads(leaf)["detail"] == text


def test_entries_written_before_the_tree_existed_join_it_in_order(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    migrations.upgrade(engine)
    with engine.begin() as conn:  # as the log wrote them before migration 0005: no nodes
        conn.execute(
            sa.insert(audit_entries), [{**_entry(n).as_row(), "idx": n + 1} for n in range(9)]
        )
    log = GroupCommitAuditLog(engine=engine)
    log.start()
    try:
        assert asyncio.run(log.append(_entry(9))) == 10
    finally:
        log.stop()
    signer = GatewaySigner(private_key=KEY, issuer=ISSUER)
    made = TransparencyLog(engine=engine, signer=signer, gateway_id=ISSUER).make_checkpoint(T0)
    assert made is not None
    assert made.size == 10
    expected = merkle.MemoryTree(
        merkle.leaf_hash(leaf_bytes({**_entry(n).as_row(), "idx": n + 1})) for n in range(10)
    )
    assert made.root == merkle.root(10, expected).hex()
    assert verify_log(engine, gateway_jwk=JWK, issuer=ISSUER).ok
    engine.dispose()
