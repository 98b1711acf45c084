"""The audit writer's commits on the event loop (``commit_on_loop``, local SQLite): the
entries of one turn of the loop share a commit made by the loop itself, durable, in order and
gap-free; a batch that finds the database locked goes to the writer thread without the loop
ever waiting for the lock; and a server database keeps its writer thread."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit import GroupCommitAuditLog
from gateway.errors import StoreUnavailable
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from tests.support import audit_entry, stored_details


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "g.sqlite3"


@pytest.fixture
def engine(database: Path) -> sa.Engine:
    e = create_database_engine(f"sqlite:///{database}", busy_timeout_ms=5000)
    migrations.upgrade(e)
    return e


@contextlib.contextmanager
def _started(log: GroupCommitAuditLog):  # type: ignore[no-untyped-def]
    log.start()
    try:
        yield log
    finally:
        log.stop()


def test_the_loop_commits_a_turns_entries_together(engine: sa.Engine) -> None:
    async def run(log: GroupCommitAuditLog) -> list[int]:
        first = await asyncio.gather(*(log.append(audit_entry(i)) for i in range(16)))
        second = await asyncio.gather(*(log.append(audit_entry(16 + i)) for i in range(16)))
        return [*first, *second]

    with _started(GroupCommitAuditLog(engine=engine, commit_on_loop=True, timeout=10)) as log:
        indexes = asyncio.run(run(log))
    assert indexes == list(range(1, 33))
    assert log.loop_commits == 2  # sixteen entries of one turn each time
    assert log.batches_committed == 2
    assert stored_details(engine) == [(i + 1, str(i)) for i in range(32)]


def test_a_locked_database_sends_the_batch_to_the_writer_thread(
    engine: sa.Engine, database: Path
) -> None:
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 0.6 s
    threading.Timer(0.6, holder.commit).start()
    ticks: list[float] = []

    async def run(log: GroupCommitAuditLog) -> list[int]:
        async def ticker() -> None:  # the loop must go on turning while the lock is held
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        appended = asyncio.gather(*(log.append(audit_entry(i)) for i in range(4)))
        await ticker()
        return list(await appended)

    try:
        with _started(GroupCommitAuditLog(engine=engine, commit_on_loop=True, timeout=10)) as log:
            indexes = asyncio.run(run(log))
    finally:
        holder.close()
    assert indexes == [1, 2, 3, 4]
    assert log.loop_commits == 0  # the thread wrote them, once the lock was free
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
    assert [d for _, d in stored_details(engine)] == ["0", "1", "2", "3"]


def test_a_lock_held_past_the_timeout_fails_the_requests_and_writes_nothing(
    database: Path,
) -> None:
    engine = create_database_engine(f"sqlite:///{database}", busy_timeout_ms=200)
    migrations.upgrade(engine)
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        log = GroupCommitAuditLog(engine=engine, commit_on_loop=True, timeout=0.3, grace=0.3)
        with _started(log), pytest.raises(StoreUnavailable):
            asyncio.run(log.append(audit_entry(0)))
    finally:
        holder.rollback()
        holder.close()
    time.sleep(0.1)
    assert stored_details(engine) == []


def test_a_server_database_keeps_its_writer_thread(audit_engine: sa.Engine) -> None:
    async def run(log: GroupCommitAuditLog) -> list[int]:
        return list(await asyncio.gather(*(log.append(audit_entry(i)) for i in range(8))))

    with _started(GroupCommitAuditLog(engine=audit_engine, commit_on_loop=True, timeout=30)) as log:
        indexes = asyncio.run(run(log))
    assert indexes == list(range(1, 9))
    on_sqlite = audit_engine.dialect.name == "sqlite"
    assert (log.loop_commits > 0) is on_sqlite
