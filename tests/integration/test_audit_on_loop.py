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


async def _tick(ticks: list[float], seconds: float) -> None:
    """Note the time every 10 ms for ``seconds``: gaps show where the loop stood still."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)


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
        appended = asyncio.gather(*(log.append(audit_entry(i)) for i in range(4)))
        await _tick(ticks, 0.5)  # the loop must go on turning while the lock is held
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


# --- the commit (and its fsync) in the committer thread while the disk is slow -----------


class _SlowCommits:
    """Makes every commit of ``engine`` take ``seconds`` (as a slow disk's fsync would) and
    records which thread ran each statement and each commit."""

    def __init__(self, engine: sa.Engine, seconds: float) -> None:
        self.seconds = seconds
        self.insert_seconds = 0.0  # each INSERT statement takes this long
        self.statement_threads: set[str] = set()
        self.commit_threads: list[str] = []
        self.started = threading.Event()
        self.fail_next = False
        # SQLite's own trace: the writer runs its statements on the driver's cursor, past
        # SQLAlchemy's events.
        sa.event.listen(engine, "checkout", self._trace)
        sa.event.listen(engine, "commit", self._commit)

    def _trace(self, dbapi_conn: sqlite3.Connection, *_: object) -> None:
        dbapi_conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(("INSERT", "SELECT")):
            self.statement_threads.add(threading.current_thread().name)
        if sql.lstrip().upper().startswith("INSERT"):
            time.sleep(self.insert_seconds)

    def _commit(self, _conn: sa.Connection) -> None:
        self.commit_threads.append(threading.current_thread().name)
        self.started.set()
        time.sleep(self.seconds)
        if self.fail_next:  # as SQLAlchemy hands on a failed commit of the driver's
            self.fail_next = False
            raise sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))


#: A commit slower than this (s) sends the commits to the committer thread in these tests.
SLOW = 0.1


def _slow_log(engine: sa.Engine, spell: float = 10.0) -> GroupCommitAuditLog:
    return GroupCommitAuditLog(
        engine=engine, commit_on_loop=True, timeout=10, slow_commit=SLOW, slow_spell=spell
    )


async def _slow_spell(log: GroupCommitAuditLog, slow: _SlowCommits) -> int:
    """One entry whose commit, on the loop, is slow: the commits go to the committer."""
    seconds, slow.seconds = slow.seconds, 2 * SLOW
    try:
        return await log.append(audit_entry(1000))
    finally:
        slow.seconds = seconds


def test_a_slow_commit_sends_the_commits_to_the_committer_thread_for_a_spell(
    engine: sa.Engine,
) -> None:
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> list[int]:
        first = await log.append(audit_entry(0))  # quick: on the loop
        spelled = await _slow_spell(log, slow)  # slow, on the loop: the spell begins
        during = await log.append(audit_entry(1))  # the committer's
        await asyncio.sleep(0.8)  # the spell is over
        after = await log.append(audit_entry(2))  # on the loop again
        return [first, spelled, during, after]

    with _started(_slow_log(engine, spell=0.5)) as log:
        indexes = asyncio.run(run(log))
    assert indexes == [1, 2, 3, 4]
    assert slow.commit_threads == ["MainThread", "MainThread", "audit-committer", "MainThread"]
    assert (log.loop_commits, log.committer_commits, log.batches_committed) == (4, 1, 4)
    assert slow.statement_threads == {"MainThread"}
    assert [d for _, d in stored_details(engine)] == ["0", "1000", "1", "2"]


def test_a_long_batch_with_a_quick_commit_keeps_the_commits_on_the_loop(
    engine: sa.Engine,
) -> None:
    # Its statements hold the loop wherever the commit is made: only a slow commit (the disk)
    # is worth the committer's handovers.
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> list[int]:
        slow.insert_seconds = SLOW  # the batch takes several times SLOW, its commit none
        first = await log.append(audit_entry(0))
        slow.insert_seconds = 0.0
        return [first, await log.append(audit_entry(1))]

    with _started(_slow_log(engine)) as log:
        assert asyncio.run(run(log)) == [1, 2]
    assert slow.commit_threads == ["MainThread", "MainThread"]
    assert (log.loop_commits, log.committer_commits) == (2, 0)


def test_the_loop_goes_on_while_the_committer_commits_and_the_next_batch_gathers(
    engine: sa.Engine,
) -> None:
    slow = _SlowCommits(engine, 0.0)
    ticks: list[float] = []

    async def run(log: GroupCommitAuditLog) -> list[int]:
        await _slow_spell(log, slow)
        slow.seconds = 0.3  # each commit now takes 0.3 s, in the committer thread

        first = asyncio.gather(*(log.append(audit_entry(i)) for i in range(4)))
        # The loop goes on turning while a commit is under way.
        ticking = asyncio.ensure_future(_tick(ticks, 0.5))
        await asyncio.sleep(0.05)  # the first batch's commit is under way: these wait for it
        second = asyncio.gather(*(log.append(audit_entry(4 + i)) for i in range(4)))
        await asyncio.sleep(0.02)
        third = asyncio.gather(*(log.append(audit_entry(8 + i)) for i in range(4)))
        await ticking
        return [*await first, *await second, *await third]

    with _started(_slow_log(engine)) as log:
        indexes = asyncio.run(run(log))
    assert indexes == list(range(2, 14))
    # After the spell's first entry, two batches: the first four alone, then what gathered
    # while their commit was under way.
    assert log.committer_commits == 2
    assert log.batches_committed == 3
    assert slow.commit_threads == ["MainThread", "audit-committer", "audit-committer"]
    assert slow.statement_threads == {"MainThread"}
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.15
    assert [d for _, d in stored_details(engine)] == ["1000", *(str(i) for i in range(12))]


@pytest.mark.parametrize("where", ["loop", "committer"])
def test_a_failed_commit_fails_its_requests_and_the_next_batch_is_written(
    engine: sa.Engine, where: str
) -> None:
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> tuple[list[int | BaseException], list[int]]:
        if where == "committer":
            await _slow_spell(log, slow)
        slow.fail_next = True
        failed = await asyncio.gather(
            *(log.append(audit_entry(i)) for i in range(3)), return_exceptions=True
        )
        later = await asyncio.gather(*(log.append(audit_entry(3 + i)) for i in range(3)))
        return failed, list(later)

    with _started(_slow_log(engine)) as log:
        failed, later = asyncio.run(run(log))
    assert all(isinstance(r, StoreUnavailable) and r.in_doubt for r in failed)
    first = 2 if where == "committer" else 1
    assert later == [first, first + 1, first + 2]  # the failed batch's indexes used again
    # The failed commit was made where the test put it (the next batch may go to the writer
    # thread, busy with checking the failed one for a while).
    failed_commit = slow.commit_threads[1 if where == "committer" else 0]
    assert failed_commit == ("audit-committer" if where == "committer" else "MainThread")
    # Nothing of the failed batch landed, so nothing needed correcting.
    stored = [d for _, d in stored_details(engine)]
    assert stored == [*(["1000"] if where == "committer" else []), "3", "4", "5"]


def test_a_request_cancelled_while_queued_is_never_written(engine: sa.Engine) -> None:
    async def run(log: GroupCommitAuditLog) -> int:
        with log._writing:  # the writer is busy: the entry stays queued
            task = asyncio.ensure_future(log.append(audit_entry(0)))
            await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await log.append(audit_entry(1))

    with _started(GroupCommitAuditLog(engine=engine, timeout=10)) as log:
        index = asyncio.run(run(log))
    assert index == 1
    assert stored_details(engine) == [(1, "1")]


def test_a_request_cancelled_during_its_commit_has_its_entry_corrected(
    engine: sa.Engine,
) -> None:
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> None:
        await _slow_spell(log, slow)
        slow.started.clear()
        slow.seconds = 0.3
        task = asyncio.ensure_future(log.append(audit_entry(0)))
        await asyncio.to_thread(slow.started.wait, 5)  # its commit is under way
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # the commit lands; the writer thread corrects it

    with _started(_slow_log(engine)) as log:
        asyncio.run(run(log))
        deadline = time.monotonic() + 5
        while len(stored_details(engine)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT idx, event, decision, withholds FROM audit_entries ORDER BY idx")
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "lookup:record:released", "allowed", None),
        (2, "lookup:record:released", "allowed", None),
        (3, "audit:answer:withheld", "refused", 2),
    ]
