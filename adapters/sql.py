"""SQL source adapter: a department's relational database, read-only, through SQLAlchemy.

Catalogue options (``[resource.source]``)::

    adapter = "sql"
    url = "sqlite:///{data_dir}/sources/market.sqlite3"   # any SQLAlchemy URL
    table = "enterprises"                                  # table or view
    key = "uscc"                                           # column holding the subject id

Each field maps to ``column`` (default: the field's name). Queries are built with SQLAlchemy
Core from these names — never by string formatting — and bound the subject as a parameter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from gateway.core.policy import FieldType, Resource
from gateway.core.sources import SourceRecord
from gateway.errors import ConfigurationError, StoreUnavailable

__all__ = ["SqlSourceAdapter", "create"]

_ENGINES: dict[str, sa.Engine] = {}


def _read_only_engine(url: str) -> sa.Engine:
    # One engine (and pool) per source database, shared by the resources that live there.
    engine = _ENGINES.get(url)
    if engine is not None:
        return engine
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Open the file read-only through SQLite's URI form: writes fail at the driver.
        path = Path(parsed.database or "").resolve()
        engine = sa.create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": 2.0}
        )
    elif parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(
            parsed,
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 2,
                "options": "-c default_transaction_read_only=on -c statement_timeout=2000",
            },
        )
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    _ENGINES[url] = engine
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
        # One prepared statement for all fields: the record is small and one shape keeps the
        # statement cache hot; fields outside the grant are dropped after the read.
        self._names = list(columns)
        self._statement = (
            sa.select(*(columns[n].label(n) for n in self._names))
            .select_from(source_table)
            .where(key_column == sa.bindparam("subject"))
            .limit(2)
        )
        self.description = f"sql:{table}"
        # A local SQLite file answers in tens of microseconds: less than handing the query to
        # a worker thread costs. Anything reached over a network is read off the event loop.
        self._inline = engine.dialect.name == "sqlite"

    def _fetch_sync(self, subject: str) -> list[sa.Row[Any]]:
        with self._engine.connect() as conn:
            return list(conn.execute(self._statement, {"subject": subject}).all())

    async def fetch(self, subject: str, fields: Sequence[str]) -> SourceRecord | None:
        try:
            if self._inline:
                rows = self._fetch_sync(subject)
            else:
                rows = await asyncio.to_thread(self._fetch_sync, subject)
        except SQLAlchemyError:
            raise StoreUnavailable(f"source of {self._resource.id}") from None
        if not rows:
            return None
        if len(rows) > 1:
            # A key that is not unique is a source defect; refusing beats guessing.
            raise StoreUnavailable(f"source of {self._resource.id} (duplicate key)")
        row = rows[0]._mapping
        values = {name: _coerce(row[name], self._types[name]) for name in fields}
        as_of = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return SourceRecord(values=values, source=self.description, as_of=as_of)

    async def close(self) -> None:
        self._engine.dispose()


def create(resource: Resource, *, data_dir: Path) -> SqlSourceAdapter:
    """Build the adapter from the resource's ``source`` options."""
    options = resource.source
    missing = [k for k in ("url", "table", "key") if not isinstance(options.get(k), str)]
    if missing:
        raise ConfigurationError(
            [f"resource {resource.id!r}: sql source needs {', '.join(missing)}"]
        )
    url = str(options["url"]).replace("{data_dir}", str(data_dir.resolve()))
    return SqlSourceAdapter(
        resource=resource,
        engine=_read_only_engine(url),
        table=str(options["table"]),
        key=str(options["key"]),
    )
