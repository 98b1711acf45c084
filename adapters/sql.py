"""SQL source adapter: a department's relational database, read-only, through SQLAlchemy.

Catalogue options (``[resource.source]``)::

    adapter = "sql"
    url = "sqlite:///{data_dir}/sources/market.sqlite3"   # any SQLAlchemy URL
    table = "enterprises"                                  # table or view
    key = "uscc"                                           # column holding the subject id
    timeout_ms = 2000                                      # statement timeout (default 2000)

Each field maps to ``column`` (default: the field's name). Queries are built with SQLAlchemy
Core from these names — never by string formatting — and bind the subject as a parameter.
Connections are read-only at the driver or session level, pooled per database URL, and every
statement runs under a timeout: PostgreSQL's ``statement_timeout``, MySQL/MariaDB's
``max_execution_time``, SQLite's progress handler.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.core.policy import FieldType, Resource
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout
from gateway.storage.database import ShortReads

__all__ = ["SqlSourceAdapter", "create"]

_ENGINES: dict[tuple[str, int], sa.Engine] = {}
_SQLITE_CHECK_EVERY = 1000  # SQLite VM instructions between deadline checks


def _sqlite_engine(path: Path, timeout_ms: int) -> sa.Engine:
    # Open the file read-only through SQLite's URI form: writes fail at the driver.
    engine = sa.create_engine(
        f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": timeout_ms / 1000}
    )

    @sa.event.listens_for(engine, "connect")
    def _deadline(dbapi_conn: Any, record: Any) -> None:
        # SQLite has no statement timeout; a progress handler that returns non-zero aborts
        # the running statement ("interrupted"). The deadline is armed before each statement.
        deadline = [float("inf")]
        record.info["deadline"] = deadline

        def check() -> int:
            return 1 if time.monotonic() > deadline[0] else 0

        dbapi_conn.set_progress_handler(check, _SQLITE_CHECK_EVERY)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _arm(conn: Any, _c: Any, _s: Any, _p: Any, _ctx: Any, _many: Any) -> None:
        conn.connection.info["deadline"][0] = time.monotonic() + timeout_ms / 1000

    return engine


def _read_only_engine(url: str, timeout_ms: int) -> sa.Engine:
    # One engine (and pool) per source database, shared by the resources that live there.
    engine = _ENGINES.get((url, timeout_ms))
    if engine is not None:
        return engine
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(Path(parsed.database or "").resolve(), timeout_ms)
    elif backend == "postgresql":
        engine = sa.create_engine(
            parsed,
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=True,
            pool_timeout=timeout_ms / 1000,
            connect_args={
                "connect_timeout": max(1, timeout_ms // 1000),
                "options": f"-c default_transaction_read_only=on "
                f"-c statement_timeout={int(timeout_ms)}",
            },
        )
    elif backend in ("mysql", "mariadb"):
        engine = sa.create_engine(
            parsed,
            pool_pre_ping=True,
            pool_timeout=timeout_ms / 1000,
            connect_args={
                "init_command": f"SET SESSION max_execution_time={int(timeout_ms)}, "
                "SESSION TRANSACTION READ ONLY"
            },
        )
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True, pool_timeout=timeout_ms / 1000)
    _ENGINES[(url, timeout_ms)] = engine
    return engine


def _coerce(value: Any, kind: FieldType) -> Any:
    if value is None:
        return None
    if kind is FieldType.BOOLEAN:
        return bool(value)
    if kind is FieldType.INTEGER:
        return int(value)
    if kind is FieldType.NUMBER:
        return float(value)
    if kind is FieldType.DATE:
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return str(value)


def _is_timeout(exc: SQLAlchemyError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return any(
        marker in text
        for marker in (
            "interrupted",
            "statement timeout",
            "canceling statement",
            "max_execution_time",
            "timeout",
        )
    )


class SqlSourceAdapter:
    """Reads one resource's records from a table or view, keyed by one column."""

    def __init__(self, *, resource: Resource, engine: sa.Engine, table: str, key: str) -> None:
        self._resource = resource
        self._engine = engine
        self._types = {f.name: f.type for f in resource.fields}
        columns: dict[str, sa.ColumnClause[Any]] = {
            f.name: sa.column(f.column or f.name) for f in resource.fields
        }
        key_column: sa.ColumnClause[Any] = sa.column(key)
        source_table = sa.table(table, key_column, *columns.values())
        # One statement for all fields: the record is small, one shape keeps the statement
        # cache hot, and the whole record can be cached; the gateway releases granted fields.
        self._statement = (
            sa.select(*(col.label(name) for name, col in columns.items()))
            .select_from(source_table)
            .where(key_column == sa.bindparam("subject"))
            .limit(2)
        )
        self.description = f"sql:{table}"
        self._reads = ShortReads(engine)

    def _fetch_sync(self, subject: str) -> list[sa.Row[Any]]:
        with self._engine.connect() as conn:
            return list(conn.execute(self._statement, {"subject": subject}).all())

    async def fetch(self, subject: str) -> SourceRecord | None:
        rid = self._resource.id
        try:
            rows = await self._reads.run(self._fetch_sync, subject)
        except OperationalError as exc:
            if _is_timeout(exc):
                raise SourceTimeout(rid, "statement timed out") from None
            raise SourceFailed(rid, "database unreachable or failing") from None
        except SQLAlchemyError:
            raise SourceFailed(rid, "query failed") from None
        if not rows:
            return None
        if len(rows) > 1:
            # A key that is not unique is a source defect; refusing beats guessing.
            raise SourceFailed(rid, "more than one record for the key")
        row = rows[0]._mapping
        try:
            values = {name: _coerce(row[name], kind) for name, kind in self._types.items()}
        except (TypeError, ValueError):
            raise SourceFailed(rid, "a value does not match the field's type") from None
        as_of = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return SourceRecord(values=values, source=self.description, as_of=as_of)

    async def close(self) -> None:
        self._engine.dispose()


def create(resource: Resource, *, context: AdapterContext) -> SqlSourceAdapter:
    """Build the adapter from the resource's ``source`` options."""
    options = resource.source
    missing = [k for k in ("url", "table", "key") if not isinstance(options.get(k), str)]
    if missing:
        raise ConfigurationError(
            [f"resource {resource.id!r}: sql source needs {', '.join(missing)}"]
        )
    timeout_ms = options.get("timeout_ms", 2000)
    if not isinstance(timeout_ms, int) or not 10 <= timeout_ms <= 600_000:
        raise ConfigurationError([f"resource {resource.id!r}: timeout_ms must be 10..600000"])
    url = str(options["url"]).replace("{data_dir}", str(context.data_dir.resolve()))
    return SqlSourceAdapter(
        resource=resource,
        engine=_read_only_engine(url, timeout_ms),
        table=str(options["table"]),
        key=str(options["key"]),
    )
