"""Readiness of the durable store, tested by writing to it — within a bound.

Reading says little: SQLite answers a ``SELECT`` with its disk full, and a frozen PostgreSQL
never answers at all. So ``/readyz`` writes one row (its process's probe) in its own
transaction, with its own timeout, and on SQLite also checks the free space of the database's
file system (:class:`DiskReserve`, which the audit writer checks too). One probe at a time:
while one waits on a stuck store, the next check says not-ready at once instead of piling up
threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import shutil
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway.storage.schema import readiness_probes

__all__ = ["DiskReserve", "ReadinessProbe"]


class DiskReserve:
    """The free space a local SQLite database keeps in hand; below it, it takes no writes.

    A file system that is full does not refuse every write: a commit whose pages fit in space
    the write-ahead log already holds (left by a checkpoint or by a failed commit) still
    succeeds, so a gateway on a full disk answered some lookups and refused others, by chance.
    Refusing below a reserve makes it one rule, the same for ``/readyz`` and for the audit
    writer, and leaves SQLite the room it needs to checkpoint and recover. Nothing to check
    for a server database: its disk is the server's.

    The free space is read at most every ``interval`` seconds (``now`` is a monotonic clock):
    the audit writer asks before every batch, and each system call hands the interpreter's
    lock to the event loop and waits to get it back.
    """

    def __init__(self, *, engine: sa.Engine, min_free_mb: int, interval: float = 0.0) -> None:
        self._min_free = min_free_mb * 1024 * 1024
        self._interval = interval
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        in_memory = database in {None, "", ":memory:"} or str(database).startswith("file:")
        self._directory = None if in_memory else Path(str(database)).resolve().parent
        self._checked_at = -math.inf
        self._short: str | None = None

    def shortfall(self, *, now: float) -> str | None:
        """``None`` while the reserve is there; otherwise what is left, in words."""
        if self._directory is None or self._min_free == 0:
            return None
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            try:
                free = shutil.disk_usage(self._directory).free
            except OSError as exc:  # the directory gone or unreadable: no write there either
                self._short = f"the free space for the database cannot be read ({exc.strerror})"
            else:
                left = f"only {free // (1024 * 1024)} MB free for the database"
                self._short = None if free >= self._min_free else left
        return self._short


class ReadinessProbe:
    """Whether the durable store takes a write now."""

    def __init__(
        self, *, engine: sa.Engine, timeout: float, min_free_mb: int, process: str | None = None
    ) -> None:
        self._engine = engine
        self._timeout = timeout
        self._process = process or f"{os.uname().nodename}:{os.getpid()}"[:64]
        self._in_flight: asyncio.Future[None] | None = None
        self._reserve = DiskReserve(engine=engine, min_free_mb=min_free_mb)

    async def check(self) -> str | None:
        """``None`` when ready; otherwise why not, in words."""
        if (short := self._reserve.shortfall(now=time.monotonic())) is not None:
            return short
        if self._in_flight is not None and not self._in_flight.done():
            return "the previous write probe is still waiting for the database"
        self._in_flight = asyncio.ensure_future(asyncio.to_thread(self._write))
        try:
            await asyncio.wait_for(asyncio.shield(self._in_flight), self._timeout)
        except TimeoutError:
            return f"a write took longer than {self._timeout:g} s"
        except Exception as exc:  # any failure of the store: not ready, and why
            return f"a write failed ({type(exc).__name__})"
        return None

    def _write(self) -> None:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        at = dt.datetime.now(dt.UTC)
        statement = (
            dialect.insert(readiness_probes)
            .values(process=self._process, at=at)
            .on_conflict_do_update(index_elements=["process"], set_={"at": at})
        )
        with self._engine.begin() as conn:
            conn.execute(statement)
