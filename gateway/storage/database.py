"""Opening database engines with durable settings for each dialect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = ["ShortReads", "create_database_engine", "is_sqlite"]

R = TypeVar("R")


class ShortReads:
    """Where a feature runs its short reads of ``engine`` (one or a few indexed statements).

    A local SQLite file answers such a read in tens of microseconds, less than handing it to
    a worker thread and back costs, so it runs on the event loop; a database reached over the
    network is read in a worker thread, so that its round trip never holds the loop.
    """

    def __init__(self, engine: sa.Engine) -> None:
        #: Whether the reads run on the event loop (a local SQLite file).
        self.on_loop = engine.dialect.name == "sqlite"

    async def run(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)``, on the loop or in a worker thread (the class's docstring)."""
        if self.on_loop:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names an SQLite database (the embedded setup)."""
    return make_url(url).get_backend_name() == "sqlite"


#: Pooled SQLite connections: asyncio's default thread pool (``min(32, cpus + 4)`` workers on a
#: small machine) plus the gateway's own threads, with room to spare.
_SQLITE_POOL_SIZE = 16


def create_database_engine(
    url: str, *, busy_timeout_ms: int = 5000, idle_in_transaction_ms: int = 2000
) -> sa.Engine:
    """An engine for ``url``. SQLite gets WAL, full fsync on commit and a busy timeout;
    PostgreSQL gets a bounded pool, lock and statement timeouts so a stuck table fails fast
    (503), and — so that no stalled process holds the district hostage — sessions that die
    when their process stops talking inside a transaction (``idle_in_transaction_ms``: the
    sequencer's lock is released with them) and TCP keepalives that notice a vanished host."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Enough pooled connections for every thread that reads or writes at once (the
        # default thread pool's workers, the audit writer, the checkpoint loop): a connection
        # beyond the pool is opened for one read and closed after it, its pragmas run and its
        # page cache thrown away each time (seen on the verification path under load).
        engine = sa.create_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000},
            pool_pre_ping=False,
            pool_size=_SQLITE_POOL_SIZE,
            max_overflow=_SQLITE_POOL_SIZE,
            # The most recently used connection first: the event loop's reads take one at a
            # time, so they keep reusing the one whose page cache is warm, rather than going
            # round every pooled connection, each with a cache of its own.
            pool_use_lifo=True,
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns — the audit promise depends on it.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.close()

        return engine
    return sa.create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        pool_timeout=busy_timeout_ms / 1000,
        connect_args={
            "connect_timeout": max(1, busy_timeout_ms // 1000),
            "options": f"-c lock_timeout={int(busy_timeout_ms)} "
            f"-c statement_timeout={int(busy_timeout_ms) * 2} "
            f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_ms)}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            # Unacknowledged data for this long means the peer is gone: fail, do not hang.
            "tcp_user_timeout": max(1000, int(busy_timeout_ms) * 2),
        },
    )
