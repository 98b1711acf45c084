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
from dataclasses import replace
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


#: The details of the entries whose slow commits begin a spell (_slow_spell).
SPELL = ["1000", "1001"]


async def _slow_spell(log: GroupCommitAuditLog, slow: _SlowCommits) -> int:
    """Two entries, one after the other, whose commits on the loop are slow: the disk is
    slow, and the commits go to the committer. The second one's index."""
    seconds, slow.seconds = slow.seconds, 2 * SLOW
    try:
        await log.append(audit_entry(1000))
        return await log.append(audit_entry(1001))
    finally:
        slow.seconds = seconds


def test_a_slow_commit_sends_the_commits_to_the_committer_thread_for_a_spell(
    engine: sa.Engine,
) -> None:
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> list[int]:
        first = await log.append(audit_entry(0))  # quick: on the loop
        spelled = await _slow_spell(log, slow)  # slow twice, on the loop: the spell begins
        during = await log.append(audit_entry(1))  # the committer's
        await asyncio.sleep(0.8)  # the spell is over
        after = await log.append(audit_entry(2))  # on the loop again
        return [first, spelled, during, after]

    with _started(_slow_log(engine, spell=0.5)) as log:
        indexes = asyncio.run(run(log))
    assert indexes == [1, 3, 4, 5]
    assert slow.commit_threads == [*["MainThread"] * 3, "audit-committer", "MainThread"]
    assert (log.loop_commits, log.committer_commits, log.batches_committed) == (5, 1, 5)
    assert slow.statement_threads == {"MainThread"}
    assert [d for _, d in stored_details(engine)] == ["0", *SPELL, "1", "2"]


def test_one_slow_commit_alone_keeps_the_commits_on_the_loop(engine: sa.Engine) -> None:
    # A fsync that met the disk's own housekeeping is not a slow disk: a spell would cost
    # every lookup the committer's handovers for nothing.
    slow = _SlowCommits(engine, 0.0)

    async def run(log: GroupCommitAuditLog) -> list[int]:
        indexes = []
        for i in range(4):  # slow, quick, slow, quick: never two slow ones in a row
            slow.seconds = 2 * SLOW if i % 2 == 0 else 0.0
            indexes.append(await log.append(audit_entry(i)))
        return indexes

    with _started(_slow_log(engine)) as log:
        assert asyncio.run(run(log)) == [1, 2, 3, 4]
    assert slow.commit_threads == ["MainThread"] * 4
    assert (log.loop_commits, log.committer_commits) == (4, 0)


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
    assert indexes == list(range(3, 15))
    # After the spell's entries, two batches: the first four alone, then what gathered
    # while their commit was under way.
    assert log.committer_commits == 2
    assert log.batches_committed == 4
    assert slow.commit_threads == [*["MainThread"] * 2, *["audit-committer"] * 2]
    assert slow.statement_threads == {"MainThread"}
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.15
    assert [d for _, d in stored_details(engine)] == [*SPELL, *(str(i) for i in range(12))]


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
    first = 3 if where == "committer" else 1
    assert later == [first, first + 1, first + 2]  # the failed batch's indexes used again
    # The failed commit was made where the test put it (the next batch may go to the writer
    # thread, busy with checking the failed one for a while).
    failed_commit = slow.commit_threads[2 if where == "committer" else 0]
    assert failed_commit == ("audit-committer" if where == "committer" else "MainThread")
    # Nothing of the failed batch landed, so nothing needed correcting.
    stored = [d for _, d in stored_details(engine)]
    assert stored == [*(SPELL if where == "committer" else []), "3", "4", "5"]


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
        while len(stored_details(engine)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT idx, event, decision, withholds FROM audit_entries ORDER BY idx")
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "lookup:record:released", "allowed", None),
        (2, "lookup:record:released", "allowed", None),
        (3, "lookup:record:released", "allowed", None),
        (4, "audit:answer:withheld", "refused", 3),
    ]


# --- the write-ahead log, copied into the database file by the writer thread -------------


def _checkpointed_entries(database: Path) -> int | None:
    """The entries the database file itself holds, without its write-ahead log: what a
    checkpoint copied (None while one is copying, the file read mid-way)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?immutable=1", uri=True)) as c:
            return int(c.execute("SELECT count(*) FROM audit_entries").fetchone()[0])
    except sqlite3.DatabaseError:
        return None


class _Checkpoints:
    """The threads that ran a ``PRAGMA wal_checkpoint`` on ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.threads: list[str] = []
        sa.event.listen(engine, "checkout", self._trace)

    def _trace(self, dbapi_conn: sqlite3.Connection, *_: object) -> None:
        dbapi_conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        if "wal_checkpoint" in sql.lower():
            self.threads.append(threading.current_thread().name)


def test_the_writer_thread_copies_the_loops_commits_into_the_database_file(
    engine: sa.Engine, database: Path
) -> None:
    checkpoints = _Checkpoints(engine)

    async def run(log: GroupCommitAuditLog) -> int:
        for i in range(10):
            await asyncio.gather(*(log.append(audit_entry(5 * i + j)) for j in range(5)))
        conn = log._connections[True]  # the loop's own
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

    with _started(GroupCommitAuditLog(engine=engine, commit_on_loop=True, timeout=10)) as log:
        assert asyncio.run(run(log)) == 0  # the loop's commits never checkpoint
        assert log.loop_commits == 10
        deadline = time.monotonic() + 5
        while _checkpointed_entries(database) != 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    # Fifty entries are far below the 1,000 pages of SQLite's own checkpoint: only the
    # writer thread's copied them.
    assert _checkpointed_entries(database) == 50
    assert checkpoints.threads
    assert set(checkpoints.threads) == {"audit-writer"}


def test_a_commit_on_the_loop_never_copies_the_log_into_the_file(
    engine: sa.Engine, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own checkpoint runs in the commit that takes the log past 1,000 pages, and
    # writes and syncs the database file there (5–40 ms, every request on the loop held).
    # Here the writer thread does not checkpoint either, so the file must stay as it was.
    monkeypatch.setattr("gateway.audit.log._WAL_CHECKPOINT_SECONDS", 3600.0)
    with engine.connect() as conn:  # the schema into the file, the log empty
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _checkpointed_entries(database) == 0
    wide = "注" * 2000  # 6 KB a detail (the most an entry keeps): 800 entries take the log
    # well past 1,000 pages of 4 KiB

    async def run(log: GroupCommitAuditLog) -> None:
        for i in range(8):
            batch = (replace(audit_entry(100 * i + j), detail=wide) for j in range(100))
            await asyncio.gather(*(log.append(entry) for entry in batch))

    with _started(GroupCommitAuditLog(engine=engine, commit_on_loop=True, timeout=10)) as log:
        asyncio.run(run(log))
        assert log.loop_commits == 8
        assert (database.with_name(database.name + "-wal")).stat().st_size > 1000 * 4096
        assert _checkpointed_entries(database) == 0


# --- two writers on one file: a command, or a second worker, beside the gateway ----------


@pytest.mark.parametrize("mode", ["loop", "thread"])
def test_two_writers_on_one_file_never_take_the_same_index(database: Path, mode: str) -> None:
    # Each writer has its own engine, so its own connections: to SQLite's locks they are
    # two processes. The sequencer's read of the last index must be under the write lock,
    # or both read the same last index and one batch fails on the other's (seen: a few in a
    # hundred batches refused, their entries replaced by "could not be stored").
    url = f"sqlite:///{database}"
    migrations.upgrade(create_database_engine(url, busy_timeout_ms=5000))
    indexes: list[int] = []
    failures: list[BaseException] = []

    def writer(first: int) -> None:
        log = GroupCommitAuditLog(
            engine=create_database_engine(url, busy_timeout_ms=5000),
            commit_on_loop=mode == "loop",
            timeout=10,
        )

        async def run() -> None:
            for i in range(150):
                batch = (log.append(audit_entry(first + 4 * i + j)) for j in range(4))
                for outcome in await asyncio.gather(*batch, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        failures.append(outcome)
                    else:
                        indexes.append(outcome)

        with _started(log):
            asyncio.run(run())

    threads = [threading.Thread(target=writer, args=(first,)) for first in (0, 10_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(indexes) == list(range(1, 1201))
    stored = stored_details(create_database_engine(url, busy_timeout_ms=5000))
    assert [i for i, _ in stored] == list(range(1, 1201))
    assert sorted(int(d) for _, d in stored) == sorted([*range(600), *range(10_000, 10_600)])
