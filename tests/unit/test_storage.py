"""Storage on a real SQLite file: migrations match the schema; group commit numbers entries."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.errors import StoreUnavailable
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import metadata


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    e = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}", busy_timeout_ms=200)
    migrations.upgrade(e)
    return e


def test_migrations_produce_the_declared_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        at=dt.datetime.now(dt.UTC), event="test:entry:made", decision=Outcome.ALLOWED, detail=str(i)
    )


def test_group_commit_gives_every_entry_its_own_index(engine: sa.Engine) -> None:
    log = GroupCommitAuditLog(engine=engine, max_batch=64)
    log.start()

    async def run() -> list[int]:
        return await asyncio.gather(*(log.append(_entry(i)) for i in range(500)))

    try:
        indexes = asyncio.run(run())
    finally:
        log.stop()
    assert sorted(indexes) == list(range(1, 501))
    assert log.batches_committed < 500  # entries shared transactions
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT idx, detail FROM audit_entries")).all()
    assert {int(d): i for i, d in rows} == dict(enumerate(indexes))


def test_append_fails_closed_when_the_database_is_locked(engine: sa.Engine, tmp_path: Path) -> None:
    log = GroupCommitAuditLog(engine=engine, timeout=5)
    log.start()
    blocker = sa.create_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    try:
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable):
                asyncio.run(log.append(_entry(0)))
            conn.exec_driver_sql("ROLLBACK")
        # The lock is gone: the log works again.
        assert asyncio.run(log.append(_entry(1))) >= 1
    finally:
        log.stop()
        blocker.dispose()
