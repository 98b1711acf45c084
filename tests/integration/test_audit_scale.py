"""The audit log's write path at scale: its indexes, the bulk fill, the writer's memory.

Real SQLite files (and PostgreSQL where reachable); no timing is asserted anywhere — the
costs are measured by ``loadtests.audit_path --sizes`` and ``make bench-scale``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.audit.bulk import bulk_append
from gateway.audit.tree import CommittedNodes, StoredTree, leaf_bytes, tree_size
from gateway.audit.verify import verify_log
from gateway.core import merkle
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import audit_entries
from loadtests.district import synthetic_entries
from tests.support import postgres_database, postgres_reachable

MIGRATIONS = Path(migrations.__file__).parent


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    e = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    migrations.upgrade(e)
    yield e
    e.dispose()


def _alembic(engine: sa.Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def _indexes(engine: sa.Engine) -> set[str]:
    return {str(i["name"]) for i in sa.inspect(engine).get_indexes("audit_entries")}


def test_migration_0011_drops_the_prefix_indexes_and_downgrades(engine: sa.Engine) -> None:
    dropped = {"ix_audit_entries_department", "ix_audit_entries_subject_hmac"}
    kept = {
        "ix_audit_entries_at",
        "ix_audit_entries_withholds",
        "ix_audit_entries_department_idx",
        "ix_audit_entries_subject_idx",
        "ix_audit_entries_case_idx",
    }
    assert _indexes(engine) == kept
    _alembic(engine, "downgrade", "0010")
    assert _indexes(engine) == kept | dropped
    _alembic(engine, "upgrade", "head")
    assert _indexes(engine) == kept


def _index_sql(engine: sa.Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).scalar_one()
        )


def test_migration_0012_makes_the_corrections_index_partial_and_downgrades(
    engine: sa.Engine,
) -> None:
    assert "WHERE withholds IS NOT NULL" in _index_sql(engine, "ix_audit_entries_withholds")
    _alembic(engine, "downgrade", "0011")
    assert "WHERE" not in _index_sql(engine, "ix_audit_entries_withholds")
    _alembic(engine, "upgrade", "head")
    assert "WHERE withholds IS NOT NULL" in _index_sql(engine, "ix_audit_entries_withholds")


def _migration_0013_cases(engine: sa.Engine) -> Iterator[sa.Engine]:
    yield engine
    if postgres_reachable() is None:
        with postgres_database() as url:
            server = create_database_engine(url)
            migrations.upgrade(server)
            yield server
            server.dispose()


def test_migration_0013_keys_the_nodes_by_position_and_downgrades(engine: sa.Engine) -> None:
    for db in _migration_0013_cases(engine):
        bulk_append(db, list(synthetic_entries(777)), chunk=100)
        size, root = _stored_root(db)
        assert (size, root) == (777, _root_from_rows(db))
        with db.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("merkle_nodes")}
            key = sa.inspect(conn).get_pk_constraint("merkle_nodes")["constrained_columns"]
            plan = (
                conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT pos FROM merkle_nodes WHERE level = 0 "
                    "ORDER BY pos DESC LIMIT 1"
                ).all()
                if db.dialect.name == "sqlite"
                else []
            )
        assert (key, columns) == (["pos", "level"], {"pos", "level", "hash"})
        assert all("TEMP B-TREE" not in str(row) for row in plan)  # read in key order
        _alembic(db, "downgrade", "0012")
        with db.connect() as conn:
            old = conn.exec_driver_sql(
                "SELECT level, idx, hash FROM merkle_nodes ORDER BY level, idx"
            ).all()
        by_key = {(int(lvl), int(i)): bytes(h) for lvl, i, h in old}
        assert merkle.root(size, _Nodes(by_key)) == root
        _alembic(db, "upgrade", "head")
        assert _stored_root(db) == (size, root)


class _Nodes:
    def __init__(self, nodes: dict[tuple[int, int], bytes]) -> None:
        self._nodes = nodes

    def node(self, level: int, index: int) -> bytes:
        return self._nodes[(level, index)]


def _plans(conn: sa.Connection, query: sa.Select[tuple[object, ...]]) -> str:
    compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
    return " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))


# The filters that used the dropped indexes, in the shapes the officers' tools, the citizens'
# access history and the refusal reports query them (for values the log holds few of: what an
# index is for; a department with an eighth of the log may rightly be read by the primary key).
e = audit_entries.c
QUERIES = {
    "department, keyset page": (
        sa.select(e.idx).where(e.department == "archives", e.idx > 10).order_by(e.idx).limit(50),
        "ix_audit_entries_department_idx",
    ),
    "department's refusals, newest first": (
        sa.select(e.idx, e.detail)
        .where(e.department == "archives", e.decision == "refused", e.at >= dt.datetime(2026, 1, 1))
        .order_by(e.idx.desc())
        .limit(50),
        "ix_audit_entries_department_idx",
    ),
    "subject, keyset page": (
        sa.select(e.idx).where(e.subject_hmac == "ab" * 32, e.idx > 10).order_by(e.idx).limit(50),
        "ix_audit_entries_subject_idx",
    ),
    "subject's access history, newest first": (
        sa.select(e.idx, e.event)
        .where(e.subject_hmac == "ab" * 32, e.decision == "allowed", e.idx < 1000)
        .order_by(e.idx.desc())
        .limit(101),
        "ix_audit_entries_subject_idx",
    ),
    "case, keyset page": (
        sa.select(e.idx).where(e.case_number == "C-1", e.idx > 10).order_by(e.idx).limit(50),
        "ix_audit_entries_case_idx",
    ),
    # The partial index of corrections answers the lookup of an entry's correction.
    "the correction of an entry": (
        sa.select(e.idx).where(e.withholds == 1234),
        "ix_audit_entries_withholds",
    ),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_filter_of_the_dropped_indexes_still_has_one_sqlite(
    engine: sa.Engine, name: str
) -> None:
    bulk_append(engine, synthetic_entries(3000))
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    query, index = QUERIES[name]
    with engine.connect() as conn:
        plan = _plans(conn, query)
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    assert "SCAN audit_entries" not in plan.replace(f"USING INDEX {index}", ""), plan


@pytest.mark.skipif(postgres_reachable() is not None, reason="no PostgreSQL")
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_filter_of_the_dropped_indexes_still_has_one_postgresql(name: str) -> None:
    with postgres_database() as url:
        pg = create_database_engine(url)
        try:
            migrations.upgrade(pg)
            bulk_append(pg, synthetic_entries(3000))
            query, index = QUERIES[name]
            with pg.begin() as conn:
                conn.exec_driver_sql("ANALYZE audit_entries")
                # A table this small may be read whole; what matters is that the index can
                # answer: with sequential scans priced out, the plan uses it.
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
                plan = " ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
        finally:
            pg.dispose()
    assert index in plan, plan


def _root_from_rows(engine: sa.Engine) -> bytes:
    """The root recomputed from the stored rows alone, leaf by leaf."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_entries).order_by(audit_entries.c.idx)).mappings()
        tree = merkle.MemoryTree(merkle.leaf_hash(leaf_bytes(r)) for r in rows)
    return merkle.root(tree.size, tree)


def _stored_root(engine: sa.Engine) -> tuple[int, bytes]:
    with engine.connect() as conn:
        size = tree_size(conn)
        return size, merkle.root(size, StoredTree(conn))


def test_bulk_fill_builds_the_tree_the_writer_would(engine: sa.Engine, tmp_path: Path) -> None:
    entries = list(synthetic_entries(1500))
    # Chunks that end at odd sizes: the frontier carried between them is exercised.
    assert bulk_append(engine, entries[:333], chunk=77) == 333
    assert bulk_append(engine, entries[333:], chunk=250) == 1500
    size, root = _stored_root(engine)
    assert size == 1500
    assert root == _root_from_rows(engine)

    # The same entries through the gateway's own writer give the same root.
    other = create_database_engine(f"sqlite:///{tmp_path / 'writer.sqlite3'}")
    migrations.upgrade(other)
    log = GroupCommitAuditLog(engine=other, max_batch=64, timeout=30)
    log.start()

    async def append_all() -> None:
        for entry in entries:
            await log.append(entry)

    try:
        asyncio.run(append_all())
    finally:
        log.stop()
    assert _stored_root(other) == (1500, root)
    other.dispose()

    # And the log verifies as a whole, proofs included.
    report = verify_log(engine, issuer="yiwang-gateway", gateway_jwks={"keys": []})
    assert report.ok, report


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        at=dt.datetime.now(dt.UTC), event="test:entry:made", decision=Outcome.ALLOWED, detail=str(i)
    )


def test_the_writers_remembered_tree_follows_other_writers_and_failed_commits(
    engine: sa.Engine,
) -> None:
    """The writer keeps the tree's size and edge in memory; another process appending, or a
    commit that failed, makes it read the stored tree again — the root stays the log's."""
    log = GroupCommitAuditLog(engine=engine, max_batch=8, timeout=30)
    log.start()

    async def append(n: int, start: int) -> list[int]:
        return list(await asyncio.gather(*(log.append(_entry(start + i)) for i in range(n))))

    try:
        first = asyncio.run(append(13, 0))
        # Another writer (a second process, a command) appends behind this one's back.
        bulk_append(engine, synthetic_entries(21, start=13))
        second = asyncio.run(append(11, 34))
        # A batch whose commit fails: the memory is dropped, the next batch re-reads.
        original = log._insert

        def failing(batch: object, attempt: object, *, defer: bool = False) -> int:
            log._insert = original  # type: ignore[method-assign]
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

        log._insert = failing  # type: ignore[method-assign]
        with pytest.raises(Exception, match="audit log"):
            asyncio.run(log.append(_entry(99)))
        third = asyncio.run(append(5, 100))
    finally:
        log.stop()
    assert sorted(first) == list(range(1, 14))
    assert sorted(second) == list(range(35, 46))
    assert sorted(third) == list(range(46, 51))
    size, root = _stored_root(engine)
    assert size == 50
    assert root == _root_from_rows(engine)
    assert verify_log(engine, issuer="yiwang-gateway", gateway_jwks={"keys": []}).ok


def test_the_durable_promises_are_read_by_their_keys_not_by_a_scan(engine: sa.Engine) -> None:
    # Who claimed a token, and which cases are closed: read in the audit writer's
    # transaction for every batch, from tables that grow with the log — by primary key.
    from gateway.audit.promises import _CLOSED, _OWNERS

    for statement, params, table in (
        (_OWNERS, {"departments": ["tax"], "jtis": ["j1", "j2"]}, "used_tokens"),
        (_CLOSED, {"departments": ["tax", "hrss"], "cases": ["C-1"]}, "closed_cases"),
    ):
        with engine.connect() as conn:
            bound = statement.statement.params(**params)
            compiled = bound.compile(conn, compile_kwargs={"literal_binds": True})
            plan = " | ".join(
                str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
        assert f"SEARCH {table} USING" in plan, plan
        assert f"SCAN {table}" not in plan, plan


def test_proofs_through_the_shared_upper_levels_are_the_stored_trees(engine: sa.Engine) -> None:
    """Oracle: every proof read with the shared copy of the upper levels (as it fills, and
    as the log grows) is the proof a fresh reader of the stored tree gives; once it is warm,
    a proof asks the database for its lowest levels' nodes only."""
    committed = CommittedNodes(from_level=3, most=10_000)
    node_queries: list[str] = []

    def reads(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "merkle_nodes" in statement:
            node_queries.append(statement)

    sa.event.listen(engine, "before_cursor_execute", reads)
    rng = random.Random(17)
    bulk_append(engine, list(synthetic_entries(700)), chunk=100)
    for grown in (700, 1_350, 2_049):
        if grown > 700:
            with engine.connect() as conn:
                have = tree_size(conn)
            bulk_append(engine, list(synthetic_entries(grown - have, start=have)))
        with engine.connect() as conn:
            size = tree_size(conn)
            assert size == grown
            for _ in range(60):
                index, at = rng.randrange(size), rng.randint(1, size)
                index = min(index, at - 1)
                shared = StoredTree(conn, committed=committed)
                shared.prefetch(merkle.inclusion_nodes(index, at))
                fresh = StoredTree(conn)
                assert merkle.inclusion_proof(index, at, shared) == merkle.inclusion_proof(
                    index, at, fresh
                )
                assert merkle.root(at, shared) == merkle.root(at, fresh)
                old = rng.randint(1, at)
                assert merkle.consistency_proof(old, at, shared) == merkle.consistency_proof(
                    old, at, fresh
                )
    assert 0 < len(committed) <= 10_000
    with engine.connect() as conn:
        # Warm: a proof of the same entry again needs no upper-level node from the database.
        size = tree_size(conn)
        StoredTree(conn, committed=committed).prefetch(merkle.inclusion_nodes(5, size))
        tree = StoredTree(conn, committed=committed)
        wanted = merkle.inclusion_nodes(5, size)
        upper = [k for k in wanted if k[0] >= committed.from_level]
        assert upper
        assert set(committed.get_many(upper)) == set(upper)
        before = len(node_queries)
        tree.prefetch(upper)
        assert len(node_queries) == before  # all upper nodes from the shared copy: no query


def test_the_shared_upper_levels_are_bounded() -> None:
    committed = CommittedNodes(from_level=2, most=8)
    committed.offer({(level, i): bytes([level, i]) * 16 for level in range(6) for i in range(4)})
    # 16 nodes of levels 2..5 offered: level 2 and then 3 dropped to stay within 8.
    assert committed.from_level == 4
    assert len(committed) == 8
    assert committed.get_many([(2, 1), (3, 1), (0, 1)]) == {}
    assert committed.get_many([(4, 1), (5, 3)]) == {
        (4, 1): bytes([4, 1]) * 16,
        (5, 3): bytes([5, 3]) * 16,
    }
