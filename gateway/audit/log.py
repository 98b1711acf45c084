"""Durable audit writes with group commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.entry import AuditEntry, Outcome
from gateway.audit.tree import Sequencer
from gateway.errors import StoreUnavailable
from gateway.storage.schema import audit_entries

__all__ = ["AuditLog", "GroupCommitAuditLog"]

log = logging.getLogger(__name__)


class AuditLog(Protocol):
    """Where the request path writes its entries."""

    async def append(self, entry: AuditEntry) -> int:
        """Make ``entry`` durable and return its index in the log.

        Raises :class:`~gateway.errors.StoreUnavailable` if it could not be made durable; the
        caller must then release nothing.
        """
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...


_Waiter = tuple[AuditEntry, "asyncio.Future[int]", asyncio.AbstractEventLoop]
_STOP = object()


#: Advisory lock key of the audit sequencer ("yiwang" in ASCII, fits a bigint).
_SEQUENCER_LOCK_ID = 0x796977616E67


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


def _settle_all(settled: list[tuple[asyncio.Future[int], Any]]) -> None:
    for fut, result in settled:
        if fut.done():  # the request gave up waiting (timeout) — nothing to tell it
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


class GroupCommitAuditLog:
    """Appends entries through one writer thread that commits them in batches.

    A request puts its entry on a queue and awaits a future. The writer takes whatever has
    queued up (at most ``max_batch``), inserts it in one transaction, and only after the
    commit returns does it resolve each future with the entry's index. While one batch
    commits, the next one fills, so the cost of a commit is shared by the requests waiting.
    """

    def __init__(self, *, engine: sa.Engine, max_batch: int = 512, timeout: float = 5.0) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: queue.SimpleQueue[_Waiter | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._tree = Sequencer()  # used by the writer thread only
        self.batches_committed = 0

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=self._timeout * 2)
            self._thread = None

    async def append(self, entry: AuditEntry) -> int:
        if self._thread is None:
            raise StoreUnavailable("audit log")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._queue.put((entry, fut, loop))
        try:
            return await asyncio.wait_for(fut, self._timeout)
        except TimeoutError:
            raise StoreUnavailable("audit log") from None

    async def ping(self) -> bool:
        def _ping() -> bool:
            try:
                with self._engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return True
            except SQLAlchemyError:
                return False

        return await asyncio.to_thread(_ping)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Waiter] = [first]  # type: ignore[list-item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: list[_Waiter]) -> None:
        results = self._write([entry for entry, _, _ in batch])
        # One wake-up per event loop for the whole batch, not one per entry.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]] = {}
        for (_, fut, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, result))
        for loop, settled in by_loop.items():
            # RuntimeError: the loop closed while we wrote (shutdown); nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    def _write(self, entries: list[AuditEntry]) -> list[int | BaseException]:
        """Commit ``entries`` in one transaction; their indexes, or an error for each.

        When the store itself fails (unreachable, disk full, locked) every entry fails: a
        503 for each request, nothing released. When the failure is an entry's own (a value
        the store will not take — which :class:`AuditEntry` normalisation should make
        impossible), the batch is split in halves and retried, so only the entry that cannot
        be stored fails, and it is replaced by an entry saying so: one sender's input never
        costs other requests their answer.
        """
        try:
            first = self._insert(entries)
        except Exception as exc:  # whatever failed, nothing of this transaction is durable
            self._tree.forget()
            if _store_failed(exc):
                log.error("audit batch of %d could not be written: %s", len(entries), exc)
                return [StoreUnavailable("audit log") for _ in entries]
            if len(entries) > 1:
                half = len(entries) // 2
                return self._write(entries[:half]) + self._write(entries[half:])
            return [self._unstorable(entries[0], exc)]
        self.batches_committed += 1
        return list(range(first, first + len(entries)))

    def _insert(self, entries: list[AuditEntry]) -> int:
        with self._engine.begin() as conn:
            first = self._sequence(conn)
            rows = [entry.as_row() for entry in entries]
            for offset, row in enumerate(rows):
                row["idx"] = first + offset
            conn.execute(sa.insert(audit_entries), rows)
            # Same transaction, same lock: the tree's order is the log's, and no entry
            # is durable without its leaf.
            self._tree.integrate(conn, rows)
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
            failed.audit_index = self._insert([replacement])
            self.batches_committed += 1
        except Exception:  # the store is failing after all; the request still gets its 503
            self._tree.forget()
        return failed

    def _sequence(self, conn: sa.Connection) -> int:
        """The index of the batch's first entry, taken under the sequencer lock.

        Indexes are assigned here, in one transaction with the insert, so the log's order is
        total and gap-free: a failed batch rolls back and its indexes are used by the next.
        On PostgreSQL a transaction-scoped advisory lock makes this process the only
        sequencer until it commits, whichever process or host it runs on; SQLite's single
        writer (and the embedded setup's single process) gives the same guarantee.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SEQUENCER_LOCK_ID)))
        last = conn.execute(sa.select(sa.func.max(audit_entries.c.idx))).scalar()
        return int(last or 0) + 1
