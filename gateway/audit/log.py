"""Durable audit writes with group commit."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.entry import AuditEntry, Outcome
from gateway.audit.promises import CURRENT_CLAIM, Pending, gate, purge
from gateway.audit.tree import Sequencer
from gateway.cache.protocol import QuotaClaim
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import AuditEvent
from gateway.errors import PolicyDenied, StoreUnavailable
from gateway.storage.inserts import insert_many
from gateway.storage.prepared import PreparedSelect
from gateway.storage.readiness import DiskReserve
from gateway.storage.schema import audit_entries
from gateway.telemetry.context import current_request

__all__ = ["WITHHELD_EVENT", "AuditLog", "GroupCommitAuditLog"]

log = logging.getLogger(__name__)


class AuditLog(Protocol):
    """Where the request path writes its entries."""

    async def append(self, entry: AuditEntry, *, quota: QuotaClaim | None = None) -> int:
        """Make ``entry`` durable and return its index in the log.

        ``quota``: the subject this entry counts against its grant's daily quota. The
        promises of the request being served (:data:`~gateway.audit.promises.CURRENT_CLAIM`)
        are checked in the same transaction; an entry that breaks one is written as its
        refusal and the matching error is raised (:class:`~gateway.errors.Replayed`,
        :class:`~gateway.errors.PolicyDenied`), naming that entry.

        Raises :class:`~gateway.errors.StoreUnavailable` if it could not be made durable; the
        caller must then release nothing.
        """
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...


class _State(enum.Enum):
    PENDING = "pending"  # queued; the request may still withdraw it
    TAKEN = "taken"  # in the writer's transaction: its outcome will be known
    DONE = "done"  # the outcome is on its way to the request
    WITHDRAWN = "withdrawn"  # the request gave up before the writer took it: never written
    GAVE_UP = "gave-up"  # the request gave up while the commit was under way


@dataclass(slots=True)
class _Waiter:
    """One request's entry on its way to the log.

    ``wake`` only wakes the request; the outcome itself is ``outcome``, set with the state
    under the log's lock. The request awaits ``wake`` directly (no ``wait_for``, no
    ``shield``: each of those layers costs the request a turn of the busy event loop, several
    milliseconds under load), and its timeout is a timer that sets ``wake`` too.
    """

    pending: Pending
    wake: asyncio.Future[None]  # replaced (under the lock) for the grace period's wait
    loop: asyncio.AbstractEventLoop
    arrived: float  # time.monotonic() when it was queued
    state: _State = _State.PENDING
    outcome: int | BaseException | None = None  # set with state DONE

    def result(self) -> int:
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return outcome


_STOP = object()
_HOUSEKEEPING = object()  # the loop wrote a batch that left corrections to make


@dataclass(slots=True)
class _Deferred:
    """A batch the event loop wrote whose commit (and fsync) the committer thread makes."""

    txn: sa.RootTransaction
    loop: asyncio.AbstractEventLoop
    entries: list[AuditEntry]
    attempt: list[tuple[int, AuditEntry]]  # what to check for if the commit fails
    started: float  # time.perf_counter() when the batch's transaction began
    taken: list[_Waiter] = field(default_factory=list)
    results: list[int | BaseException] = field(default_factory=list)
    error: BaseException | None = None  # what the commit raised
    ran: bool = False  # the committer has made the commit (or failed to)
    finished: bool = False  # its completion has run (on the loop, or at stop)


class _Locked(Exception):
    """The loop's batch found the database locked by another writer; nothing was written."""


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds the lock)."""
    orig = getattr(exc, "orig", None)
    return isinstance(orig, sqlite3.OperationalError) and orig.sqlite_errorcode in _BUSY_CODES


_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

#: Advisory lock key of the audit sequencer ("yiwang" in ASCII, fits a bigint).
_SEQUENCER_LOCK_ID = 0x796977616E67
#: The writer's SQLite page cache (KiB): the log's indexes at 10⁶ entries fit in it.
_WRITER_CACHE_KIB = 65536
_TAKE_SEQUENCER_LOCK = PreparedSelect(sa.select(sa.func.pg_advisory_xact_lock(_SEQUENCER_LOCK_ID)))
_LAST_INDEX = PreparedSelect(sa.select(sa.func.max(audit_entries.c.idx)))
#: Event of the entry that corrects an earlier one whose answer was never handed over.
WITHHELD_EVENT = AuditEvent.ANSWER_WITHHELD
#: Under load means entries come less than this many ``linger`` apart on average: a linger
#: is then expected to bring at least a quarter of an entry more into the commit.
_BUSY_GAPS = 4
#: How often the writer forgets used tokens that expired and quota days that are over.
_PURGE_SECONDS = 60.0
#: How often (s) the writer thread copies the write-ahead log into the database file while
#: the event loop commits (``commit_on_loop``): the loop's own connection never does it.
_WAL_CHECKPOINT_SECONDS = 0.25
#: Slow commits on the loop, one after another, that make a slow disk (_timed_on_loop).
_SLOW_COMMITS_IN_A_ROW = 2


def _store_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the store failed (rather than one entry's values)."""
    return isinstance(
        exc,
        sa.exc.OperationalError
        | sa.exc.InterfaceError
        | sa.exc.DisconnectionError
        | sa.exc.TimeoutError
        | OSError
        | RuntimeError,  # the stored tree disagrees with the entries: not one entry's fault
    ) or (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)


def _wake(wake: asyncio.Future[None]) -> None:
    if not wake.done():  # a timer woke it already, or its request was cancelled
        wake.set_result(None)


def _wake_all(wakes: list[asyncio.Future[None]]) -> None:
    for wake in wakes:
        _wake(wake)


async def _woken(waiter: _Waiter, seconds: float) -> bool:
    """Wait until the writer settles ``waiter`` or ``seconds`` pass; whether it is settled."""
    wake = waiter.wake
    timer = waiter.loop.call_later(seconds, _wake, wake)
    try:
        await wake
    finally:
        timer.cancel()
    return waiter.state is _State.DONE


class GroupCommitAuditLog:
    """Appends entries through one writer thread that commits them in batches.

    A request puts its entry on a queue and awaits a future. The writer takes whatever has
    queued up (at most ``max_batch``), checks the requests' promises and inserts the entries
    in one transaction, and only after the commit returns does it resolve each future. While
    one batch commits, the next one fills, so the cost of a commit is shared.

    **Truthful under faults.** A request waits ``timeout`` seconds. If its entry is still
    queued then, it is withdrawn — never written — and the request answers 503. If the writer
    has it in a transaction, the request waits for that outcome up to ``grace`` seconds more
    (the database's own statement and lock timeouts end a stuck commit sooner); if it still
    has to give up, or a commit fails in a way that leaves its outcome unknown, the writer
    checks afterwards and, for every entry that was committed as allowed although its answer
    was never handed over, writes a correction entry (``audit:answer:withheld``, naming it).

    **Adaptive group commit.** Each commit costs the writer a fixed amount of work (the
    sequencer, the promises' statements, the commit itself), and each of its statements hands
    the GIL back and forth with the event loop. Under load, entries come closer together than
    four times ``linger``: the writer then waits until ``linger`` after the batch's first
    entry came, so that the entries of requests still on their way join the same commit (at
    most ``linger`` more latency, a fraction of a commit's work per entry). An entry that
    comes alone — after a pause, or when the last ones came further apart — is written at
    once.

    **Batches written by the event loop** (``commit_on_loop``, for a local SQLite file). A
    writer thread's statements each give the interpreter's lock up while SQLite works and then
    wait for the busy event loop to give it back (up to the switch interval): a commit of a
    few entries took ~4.7 ms of wall time for ~0.6 ms of CPU, and the loop paid for every
    handover. On SQLite the statements are local calls of microseconds, so the loop runs them
    itself: the entries appended during one turn of the loop are written together at its
    end, with no handover per statement, and committed there too while commits are quick
    (0.3–1 ms here, the fsync most of it; the loop's connection leaves the copying of the
    write-ahead log into the file to the writer thread, :meth:`_checkpoint`). When two in a
    row take longer than ``slow_commit`` — a disk that is slow now, which would hold every
    request on the loop — the commits go to the committer thread for ``slow_spell`` seconds:
    the loop writes the batch, the thread makes the commit (one handover a batch) while the
    loop serves other requests, the next turns' entries gather meanwhile, and the commit's
    completion, back on the loop, settles its requests and writes them as the next batch.
    (The committer costs each lookup ~10 % more CPU in handovers, measured: worth it only
    while the disk is slow.) The loop never waits for a lock: its connection has no busy
    timeout, and a batch that finds the database locked by another writer — or the writer
    thread busy — goes to the writer thread, which waits for the lock within the request's
    timeout as before.
    """

    def __init__(
        self,
        *,
        engine: sa.Engine,
        max_batch: int = 512,
        linger: float = 0.0,
        timeout: float = 5.0,
        grace: float | None = None,
        reserve: DiskReserve | None = None,
        commit_on_loop: bool = False,
        slow_commit: float = 0.002,
        slow_spell: float = 1.0,
        on_commit: Callable[[Sequence[AuditEntry], float], None] | None = None,
    ) -> None:
        """``on_commit`` is told of every batch made durable (its entries and how long the
        commit took), on the writer's thread: the metrics count entries there, off the loop.
        With a ``reserve``, no batch is written while the database's disk is below it."""
        self._engine = engine
        self._reserve = reserve
        self._short: str | None = None  # what the reserve said last, logged when it changes
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._linger = linger
        # The mean gap between entries' arrivals (an exponential moving average, seconds):
        # the writer lingers only when it is short (_BUSY_GAPS).
        self._gap = math.inf
        self._last_arrival: float | None = None
        self.lingered = 0  # commits that waited for more entries
        self._timeout = timeout
        self._grace = timeout if grace is None else grace
        self._queue: queue.SimpleQueue[_Waiter | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards every waiter's state
        self._tree = Sequencer()  # used only by whoever holds _writing
        # The writer thread's own connection (False) and the event loop's (True).
        self._connections: dict[bool, sa.Connection] = {}
        self._commit_on_loop = commit_on_loop and engine.dialect.name == "sqlite"
        self._on_loop = False  # whether the batch being written is the loop's
        # Held by whoever writes a batch (the loop or the writer thread): one at a time.
        self._writing = threading.Lock()
        self._loop_batch: list[_Waiter] = []  # appended this turn of the loop
        self.loop_commits = 0  # batches the event loop wrote itself
        # The loop's batch whose commit the committer thread is making (at most one: while
        # it is under way the loop's next batch fills, as a group commit's does).
        self._deferred: _Deferred | None = None
        self._defer = False  # set while the loop writes a batch whose commit it defers
        self._open_txn: sa.RootTransaction | None = None  # the deferred transaction, once open
        self._new_deferral: _Deferred | None = None  # made by _write, taken by the loop
        # A commit the loop made itself that took longer than ``slow_commit`` (a disk that
        # is slow now) sends the commits to the committer thread for ``slow_spell`` seconds
        # (the class's docstring).
        self._slow_commit = slow_commit
        self._slow_spell = slow_spell
        self._committer_until = -math.inf
        self._slow_in_a_row = 0  # the loop's last commits that were slow, one after another
        self.committer_commits = 0  # batches whose commit the committer thread made
        self._commits: queue.SimpleQueue[_Deferred | object] = queue.SimpleQueue()
        self._committer: threading.Thread | None = None
        # Entries of a failed commit that may have been durable after all: (index, entry).
        self._in_doubt: list[tuple[int, AuditEntry]] = []
        self._withheld: list[tuple[int, AuditEntry]] = []  # committed, answer not delivered
        self._next_purge = 0.0
        self.batches_committed = 0
        # The loop's commits when the writer thread last checkpointed, and when it may next.
        self._checkpointed_after = 0
        self._next_checkpoint = 0.0

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
        if self._commit_on_loop and self._committer is None:
            self._committer = threading.Thread(
                target=self._run_commits, name="audit-committer", daemon=True
            )
            self._committer.start()

    def stop(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=self._timeout * 2)
            self._thread = None
        if self._committer is not None:
            self._commits.put(_STOP)
            self._committer.join(timeout=self._timeout * 2)
            self._committer = None
        deferred = self._deferred
        if deferred is not None and deferred.ran:
            # Its completion waits for a turn of the loop that may never come (stop() runs
            # on the loop itself at shutdown): finish it here.
            self._finish(deferred)
        # The loop's connection, unless a writer thread that would not stop still writes.
        if self._writing.acquire(timeout=self._timeout):
            try:
                self._on_loop = True
                self._drop_connection(lost=False)
            finally:
                self._on_loop = False
                self._writing.release()

    async def append(self, entry: AuditEntry, *, quota: QuotaClaim | None = None) -> int:
        if self._thread is None:
            raise StoreUnavailable("audit log")
        claim = CURRENT_CLAIM.get()
        record = current_request()
        started = time.perf_counter()
        try:
            index = await self._append(Pending(entry, claim, quota))
        except PolicyDenied:
            # Refused by the durable check of a closed case or a quota: written as the
            # refusal, in the transaction that also claimed the token.
            if claim is not None:
                claim.durable = True
            raise
        finally:
            if record is not None:  # the request's wait for durability: its audit phase
                record.add("audit", time.perf_counter() - started)
        if claim is not None:
            claim.durable = True
        return index

    async def _append(self, pending: Pending) -> int:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(pending, loop.create_future(), loop, time.monotonic())
        if self._commit_on_loop:
            if not self._loop_batch:
                loop.call_soon(self._commit_loop_batch)
            self._loop_batch.append(waiter)
        else:
            self._queue.put(waiter)
        try:
            if await _woken(waiter, self._timeout):
                return waiter.result()
            with self._lock:
                if waiter.state is _State.PENDING:
                    waiter.state = _State.WITHDRAWN  # the writer will skip it: never committed
                    raise StoreUnavailable("audit log")
                if waiter.state is not _State.DONE:  # TAKEN: wait for the commit's outcome
                    waiter.wake = loop.create_future()
            if await _woken(waiter, self._grace):
                return waiter.result()
            with self._lock:
                if waiter.state is not _State.DONE:
                    waiter.state = _State.GAVE_UP  # the writer corrects the entry if it lands
                    raise StoreUnavailable("audit log", in_doubt=True)
            return waiter.result()  # settled this very moment
        except asyncio.CancelledError:
            # The request is gone (shutdown): its answer will never be handed over, so its
            # entry must not say it was — withdrawn if still queued, corrected if it lands.
            with self._lock:
                if waiter.state is _State.PENDING:
                    waiter.state = _State.WITHDRAWN
                elif waiter.state is _State.TAKEN:
                    waiter.state = _State.GAVE_UP
            raise

    async def ping(self) -> bool:
        def _ping() -> bool:
            try:
                with self._engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return True
            except SQLAlchemyError:
                return False

        return await asyncio.to_thread(_ping)

    def _commit_loop_batch(self) -> None:
        """At the end of a turn of the loop: write what it appended (the class's docstring)."""
        if self._deferred is not None:
            return  # a commit is under way: its completion (_finish) writes this batch next
        batch, self._loop_batch = self._loop_batch, []
        if not batch:
            return
        if self._thread is None or not self._writing.acquire(blocking=False):
            for w in batch:  # the writer thread is writing: it takes these next
                self._queue.put(w)
            return
        deferred = None
        try:
            self._on_loop = True
            self._defer = self._committer is not None and time.monotonic() < self._committer_until
            busy = self._commit(batch)
            deferred, self._new_deferral = self._new_deferral, None
            if not busy:
                self.loop_commits += 1
        finally:
            self._on_loop = self._defer = False
            if deferred is None:
                self._writing.release()
        if deferred is not None:  # _writing stays held until the commit's completion
            self._deferred = deferred
            self._commits.put(deferred)
        for w in busy:
            self._queue.put(w)
        if deferred is None and (self._in_doubt or self._withheld):
            self._queue.put(_HOUSEKEEPING)  # corrections are the writer thread's work

    def _run_commits(self) -> None:
        """The committer thread: the commit (and fsync) of each batch the loop wrote."""
        while True:
            deferred = self._commits.get()
            if deferred is _STOP:
                return
            assert isinstance(deferred, _Deferred)
            try:
                deferred.txn.commit()
            except BaseException as exc:  # its requests learn it on the loop (_finish)
                deferred.error = exc
            deferred.ran = True
            # RuntimeError: the loop closed meanwhile (shutdown); stop() finishes it.
            with contextlib.suppress(RuntimeError):
                deferred.loop.call_soon_threadsafe(self._finish, deferred)

    def _finish(self, deferred: _Deferred) -> None:
        """On the loop: settle a deferred commit's requests, then write the next batch."""
        if deferred.finished:
            return
        deferred.finished = True
        results = deferred.results
        if deferred.error is not None:
            self._on_loop = True
            try:
                self._tree.forget()
                self._drop_connection(lost=True)
            finally:
                self._on_loop = False
            log.error(
                "audit batch of %d could not be committed: %s",
                len(deferred.entries),
                deferred.error,
            )
            # It may have landed: checked when the store is back (as in _write).
            self._in_doubt.extend(deferred.attempt)
            results = [StoreUnavailable("audit log", in_doubt=True) for _ in results]
        else:
            self.batches_committed += 1
            self.committer_commits += 1
            if self._on_commit is not None:
                self._on_commit(deferred.entries, time.perf_counter() - deferred.started)
        self._deferred = None
        try:
            self._settle(deferred.taken, results)
        finally:
            self._writing.release()
        if self._in_doubt or self._withheld:
            self._queue.put(_HOUSEKEEPING)
        if self._loop_batch:
            self._commit_loop_batch()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            with self._writing:
                self._drop_connection(lost=False)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A transaction on the writer's own connection, opened once and kept.

        Kept because SQLite discards a connection's page cache whenever another connection
        wrote: a connection from the pool, each batch another, started every batch cold and
        read the indexes' pages again from the file (the sequencer's ``max(idx)`` and the
        inserts into random-key indexes were most of the writer's time at 10⁵ entries). The
        writer's connections (the thread's, and the event loop's with ``commit_on_loop``)
        are nearly the only ones that write, so their caches stay warm, and they get a larger
        one. Any failure drops the one that failed: its next batch opens a fresh one.
        """
        conn = self._connections.get(self._on_loop)
        if conn is None:
            conn = self._engine.connect()
            if conn.dialect.name == "sqlite":
                driver = conn.connection.driver_connection
                driver.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")  # type: ignore[union-attr]
                if self._on_loop:  # the loop never waits for a lock (the class's docstring)
                    driver.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                    # Nor copies the log into the file: the writer thread does (_checkpoint).
                    driver.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            self._connections[self._on_loop] = conn
        txn = conn.begin()
        defer, self._defer = self._defer, False
        try:
            if conn.dialect.name == "sqlite":
                # The write lock first: the sequencer's read of the last index and the
                # promises' checks must see every other writer's commit (another process on
                # the same file: a `gateway` command). The driver would take it only
                # at the first insert, after them — the same index twice, a used token
                # accepted twice.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            if defer:  # the committer thread commits it (_commit_loop_batch)
                self._open_txn = txn
                return
            committing = time.monotonic()
            txn.commit()
            if self._on_loop:
                self._timed_on_loop(time.monotonic() - committing)
        except BaseException:
            with contextlib.suppress(Exception):
                txn.rollback()
            self._drop_connection(lost=True)
            raise

    def _timed_on_loop(self, seconds: float) -> None:
        """A commit the loop made took ``seconds``: the second slow one in a row means the
        disk is slow now, and the next commits go to the committer (the class's docstring).

        The commit alone is timed: a large batch's statements hold the loop wherever its
        commit is made. One slow commit alone is not a slow disk — a fsync that met the
        disk's own housekeeping, say, a few in a thousand here —, and a spell costs each
        lookup the committer's handovers for ``slow_spell`` seconds.
        """
        if seconds <= self._slow_commit:
            self._slow_in_a_row = 0
            return
        self._slow_in_a_row += 1
        if self._slow_in_a_row >= _SLOW_COMMITS_IN_A_ROW:
            self._slow_in_a_row = 0
            self._committer_until = time.monotonic() + self._slow_spell

    def _drop_connection(self, *, lost: bool) -> None:
        conn = self._connections.pop(self._on_loop, None)
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if lost:  # after a failure, not back to the pool: its state is unknown
                conn.invalidate()
            conn.close()

    def _serve(self) -> None:
        stopping = False
        # With the loop committing, the thread wakes often to checkpoint (_checkpoint); its
        # housekeeping still waits for a pause of _PURGE_SECONDS, as it always did.
        wake = _WAL_CHECKPOINT_SECONDS if self._commit_on_loop else _PURGE_SECONDS
        idle_since = time.monotonic()
        while not stopping:
            try:
                first = self._queue.get(timeout=wake)
            except queue.Empty:
                self._checkpoint()
                if time.monotonic() - idle_since >= _PURGE_SECONDS:
                    idle_since = time.monotonic()
                    with self._writing:
                        self._housekeeping()
                continue
            if first is _STOP:
                return
            if first is _HOUSEKEEPING:
                with self._writing:
                    self._housekeeping()
                continue
            assert isinstance(first, _Waiter)
            self._wait_for_company(first)
            batch: list[_Waiter] = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                if isinstance(nxt, _Waiter):
                    batch.append(nxt)
            self._note_arrivals(batch)
            with self._writing:
                self._commit(batch)
                self._housekeeping()
            self._checkpoint()
            idle_since = time.monotonic()

    def _checkpoint(self) -> None:
        """Copy what the event loop committed from the write-ahead log into the database file.

        SQLite does it by itself in the commit that takes the log past 1,000 pages: that one
        commit then writes and syncs the database file too (5–40 ms here), holding every
        request on the loop, and its slowness sent the commits to the committer thread for a
        spell. So the loop's connection never does it (``wal_autocheckpoint=0``) and the
        writer thread does it every ``_WAL_CHECKPOINT_SECONDS`` while the loop commits, on a
        connection of its own and without the writers' lock: a passive checkpoint copies what
        no reader still needs and waits for nobody, and the loop's commits go on meanwhile.
        """
        commits = self.loop_commits + self.committer_commits
        now = time.monotonic()
        if commits == self._checkpointed_after or now < self._next_checkpoint:
            return
        self._checkpointed_after, self._next_checkpoint = commits, now + _WAL_CHECKPOINT_SECONDS
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except SQLAlchemyError as exc:  # the next one copies what this one could not
            log.warning("audit log: could not checkpoint the write-ahead log: %s", exc)

    def _wait_for_company(self, first: _Waiter) -> None:
        """Under load, sleep until ``linger`` after ``first`` came (the class's docstring)."""
        last, busy = self._last_arrival, _BUSY_GAPS * self._linger
        if self._gap >= busy or last is None or first.arrived - last >= busy:
            return  # not under load, or the first entry after a pause
        left = first.arrived + self._linger - time.monotonic()
        if left > 0:
            self.lingered += 1
            time.sleep(left)

    def _note_arrivals(self, batch: list[_Waiter]) -> None:
        last = self._last_arrival
        for w in batch:
            if last is not None:
                gap = max(0.0, w.arrived - last)
                self._gap = gap if self._gap == math.inf else 0.8 * self._gap + 0.2 * gap
            last = w.arrived
        self._last_arrival = last

    def _commit(self, batch: list[_Waiter]) -> list[_Waiter]:
        """Write ``batch`` and settle its requests; on the loop, what found the database
        locked (handed back, still pending, for the writer thread)."""
        with self._lock:
            taken = [w for w in batch if w.state is _State.PENDING]
            for w in taken:
                w.state = _State.TAKEN
        if not taken:
            return []
        try:
            results = self._write([w.pending for w in taken])
        except _Locked:
            with self._lock:
                for w in taken:
                    w.state = _State.PENDING
            return taken
        if self._new_deferral is not None:  # committed later: settled by _finish
            self._new_deferral.taken, self._new_deferral.results = taken, results
            return []
        self._settle(taken, results)
        return []

    def _settle(self, taken: list[_Waiter], results: list[int | BaseException]) -> None:
        """Hand each request its entry's outcome, once the batch is durable (or failed)."""
        # One wake-up per event loop for the whole batch, not one per entry.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        with self._lock:
            for w, result in zip(taken, results, strict=True):
                if w.state is _State.GAVE_UP:
                    if isinstance(result, int) and w.pending.entry.decision is Outcome.ALLOWED:
                        self._withheld.append((result, w.pending.entry))
                    continue
                w.state, w.outcome = _State.DONE, result
                by_loop.setdefault(w.loop, []).append(w.wake)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # the writer thread, or stop() after the loop ended
            running = None
        for loop, wakes in by_loop.items():
            if loop is running:  # on that very loop: no wake-up needed
                _wake_all(wakes)
                continue
            # RuntimeError: the loop closed while we wrote (shutdown); nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake_all, wakes)

    def _write(self, batch: list[Pending], *, whole: bool = True) -> list[int | BaseException]:
        """Commit ``batch`` in one transaction; each entry's index, or its error.

        When the store itself fails (unreachable, disk full, locked) every entry fails: a
        503 for each request, nothing released. When the failure is an entry's own (a value
        the store will not take — which :class:`AuditEntry` normalisation should make
        impossible), the batch is split in halves and retried, so only the entry that cannot
        be stored fails, and it is replaced by an entry saying so: one sender's input never
        costs other requests their answer.
        """
        if self._below_reserve():
            return [StoreUnavailable("audit log") for _ in batch]
        attempt: list[tuple[int, AuditEntry]] = []
        started = time.perf_counter()
        defer, self._defer = self._defer and whole, False  # only the loop's whole batch
        try:
            first = self._insert(batch, attempt, defer=defer)
        except Exception as exc:  # whatever failed, nothing of this transaction is known
            self._tree.forget()
            if self._on_loop and whole and not attempt and _locked(exc):
                raise _Locked from exc  # nothing written: the writer thread waits for it
            if _store_failed(exc):
                log.error("audit batch of %d could not be written: %s", len(batch), exc)
                # If the commit itself failed, it may have landed: check when the store is
                # back, and tell each request its token may be used (never "send it again").
                self._in_doubt.extend(attempt)
                doubt = bool(attempt)
                return [StoreUnavailable("audit log", in_doubt=doubt) for _ in batch]
            if len(batch) > 1:
                half = len(batch) // 2
                # A half that finds the lock taken fails (503) rather than going to the
                # writer thread: the other half may be committed already.
                return self._write(batch[:half], whole=False) + self._write(
                    batch[half:], whole=False
                )
            return [self._unstorable(batch[0].entry, exc)]
        if defer:
            txn, self._open_txn = self._open_txn, None
            assert txn is not None
            self._new_deferral = _Deferred(
                txn=txn,
                loop=asyncio.get_running_loop(),
                entries=[p.entry for p in batch],
                attempt=attempt,
                started=started,
            )
        else:
            self.batches_committed += 1
            if self._on_commit is not None:
                self._on_commit([p.entry for p in batch], time.perf_counter() - started)
        out: list[int | BaseException] = []
        for offset, p in enumerate(batch):
            if p.refusal is not None:
                p.refusal.audit_index = first + offset
                out.append(p.refusal)
            else:
                out.append(first + offset)
        return out

    def _below_reserve(self) -> bool:
        """Whether the disk is below its reserve (:class:`DiskReserve`); said once a spell."""
        short = None if self._reserve is None else self._reserve.shortfall(now=time.monotonic())
        if (short is None) != (self._short is None):
            if short is None:
                log.warning("audit log: the disk has its reserve again; writing")
            else:
                log.error("audit log: %s; no entry is written (503) until there is more", short)
        self._short = short
        return short is not None

    def _insert(
        self, batch: list[Pending], attempt: list[tuple[int, AuditEntry]], *, defer: bool = False
    ) -> int:
        """One transaction: the sequencer lock, the promises, the entries and their leaves.

        Everything that does not need the lock is prepared before it; ``attempt`` is filled
        just before the commit, so that a commit that fails can be checked for later. With
        ``defer`` the transaction is left open for the committer thread (``_open_txn``).
        """
        self._defer = defer
        with self._transaction() as conn:
            first = self._sequence(conn)
            gate(conn, batch)
            rows = [p.entry.as_row() for p in batch]
            for offset, row in enumerate(rows):
                row["idx"] = first + offset
            insert_many(conn, audit_entries, rows)
            # Same transaction, same lock: the tree's order is the log's, and no entry
            # is durable without its leaf.
            self._tree.integrate(conn, rows)
            attempt.extend((first + i, p.entry) for i, p in enumerate(batch))
        return first

    def _unstorable(self, entry: AuditEntry, exc: BaseException) -> BaseException:
        """Record that ``entry`` could not be stored (its request fails with 503)."""
        log.error("audit entry %s could not be stored: %s", entry.event, type(exc).__name__)
        failed = StoreUnavailable("audit log")
        replacement = AuditEntry(
            at=entry.at,
            event=entry.event,
            decision=Outcome.REFUSED,
            department=entry.department,
            request_hash=entry.request_hash,
            policy_version=entry.policy_version,
            reason_code="entry-unstorable",
            detail=f"the entry could not be stored ({type(exc).__name__}); nothing was released",
        )
        try:
            failed.audit_index = self._insert([Pending(replacement)], [])
            self.batches_committed += 1
        except Exception:  # the store is failing after all; the request still gets its 503
            self._tree.forget()
        return failed

    def _housekeeping(self) -> None:
        """Corrections for answers never handed over; forget expired promises."""
        if self._in_doubt:
            self._resolve_in_doubt()
        if self._withheld:
            self._correct()
        now = time.time()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_SECONDS
            oldest = dt.datetime.fromtimestamp(now, DISTRICT_TZ).date() - dt.timedelta(days=2)
            try:
                with self._transaction() as conn:
                    purge(conn, now=now, oldest_day=oldest.isoformat())
            except SQLAlchemyError as exc:
                log.warning("could not purge expired promises: %s", exc)

    def _resolve_in_doubt(self) -> None:
        """Which entries of failed commits landed after all (their requests got 503s)."""
        doubtful = dict(self._in_doubt)
        e = audit_entries.c
        # The same index may hold a later batch's entry (the failed one rolled back): it is
        # the doubtful entry only if what identifies it matches (not the request hash alone:
        # an entry of no signed request has none).
        same = (e.event, e.request_hash, e.department, e.subject_hmac, e.request_id, e.detail)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(e.idx, *same).where(e.idx.in_(list(doubtful)))).all()
        except SQLAlchemyError:
            return  # still down: ask again after the next batch
        self._in_doubt = []
        for idx, *stored in rows:
            entry = doubtful[int(idx)]
            row = entry.as_row()
            if [row.get(c.name) for c in same] == stored and entry.decision is Outcome.ALLOWED:
                self._withheld.append((int(idx), entry))

    def _correct(self) -> None:
        corrections = [
            Pending(
                AuditEntry(
                    at=dt.datetime.now(dt.UTC),
                    event=WITHHELD_EVENT,
                    decision=Outcome.REFUSED,
                    department=entry.department,
                    operator=entry.operator,
                    resource=entry.resource,
                    subject_hmac=entry.subject_hmac,
                    request_hash=entry.request_hash,
                    policy_version=entry.policy_version,
                    reason_code="answer-withheld",
                    withholds=idx,
                    detail=f"the answer recorded by entry {idx} was never handed over: its "
                    "request gave up waiting for the audit write; nothing was released",
                )
            )
            for idx, entry in self._withheld
        ]
        try:
            self._insert(corrections, [])
        except Exception as exc:  # try again after the next batch
            self._tree.forget()
            log.error("corrections could not be written yet: %s", exc)
            return
        self.batches_committed += 1
        self._withheld = []

    def _sequence(self, conn: sa.Connection) -> int:
        """The index of the batch's first entry, taken under the sequencer lock.

        Indexes are assigned here, in one transaction with the insert, so the log's order is
        total and gap-free: a failed batch rolls back and its indexes are used by the next.
        On PostgreSQL a transaction-scoped advisory lock makes this process the only
        sequencer until it commits, whichever process or host it runs on. On SQLite the
        transaction began with ``BEGIN IMMEDIATE`` (:meth:`_transaction`): the database's one
        write lock, held from before this read to the commit, whichever process writes. A process
        that stalls while holding it loses its session (``idle_in_transaction_session_timeout``)
        and with it the lock, so the other gateways go on.
        """
        if conn.dialect.name == "postgresql":
            _TAKE_SEQUENCER_LOCK.all(conn)
        last = _LAST_INDEX.scalar(conn)
        return int(last or 0) + 1
