"""Many rows into one table, straight to the driver's ``executemany``.

``conn.execute(sa.insert(table), rows)`` takes every row through SQLAlchemy's generic
parameter machinery (a dict per row, a processor lookup per value): on the audit writer's
path, where each group commit inserts an entry and two tree nodes per request, that was a
third of the writer's CPU. :func:`insert_many` compiles the ``INSERT`` once per table,
columns and dialect, applies only the bind processors the dialect has for those columns
(SQLite's for dates and times, none on PostgreSQL for these types; bytes are passed as
they are) and hands the driver's own ``executemany`` plain tuples
(:mod:`gateway.storage.prepared`: SQLAlchemy's execution context, too, cost more than the
insert itself). The SQL, the values stored and the transaction
are the same.

On SQLite the rows go in as multi-row ``VALUES`` statements, one per power of two in the
batch's size (13 rows: 8, 4 and 1), not one ``sqlite3_step`` per row: the driver releases and
takes back the GIL around every step, and each time the audit writer takes it back the event
loop's thread may wait for it (in-process, the saving was within the machine's noise; the
statements are fewer either way). The powers of two keep the statements few (a cached
statement per size), and the limit on bound variables (32,766 since SQLite 3.32) bounds the
largest.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway.storage.prepared import execute, execute_many

__all__ = ["insert_many"]


def _insert_statement(table: sa.Table, dialect: sa.Dialect, *, ignore: bool) -> Any:
    if not ignore:
        return sa.insert(table)
    # Rows whose key is stored already are skipped (SQLite and PostgreSQL alike).
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError(f"no insert-ignoring-duplicates for {dialect.name}")


#: The most rows in one SQLite statement: 2⁸ rows of up to 64 columns stay within SQLite's
#: default limit of 32,766 bound variables.
_MOST_ROWS, _MOST_COLUMNS = 256, 64


class _Compiled:
    def __init__(
        self, table: sa.Table, columns: tuple[str, ...], dialect: sa.Dialect, *, ignore: bool
    ) -> None:
        statement = _insert_statement(table, dialect, ignore=ignore)
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = tuple(compiled.positiontup or ()) if self.positional else columns
        if set(order) != set(columns):
            raise ValueError(f"{table.name}: the compiled INSERT binds {order}, not {columns}")
        self.order = order
        processors = [
            # Bytes go to either driver as they are: SQLAlchemy's wrapping of each one in the
            # DBAPI's Binary (a memoryview on SQLite) is a call per tree node for nothing.
            None
            if isinstance(table.c[name].type, sa.LargeBinary)
            else table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in order
        ]
        #: (position, processor) of the columns the dialect converts (SQLite: dates, times).
        self.processed: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (i, p) for i, p in enumerate(processors) if p is not None
        )
        getter = operator.itemgetter(*order)
        # One column: itemgetter gives the value itself, not a 1-tuple.
        self.values: Callable[[Mapping[str, Any]], Any] = (
            getter if len(order) > 1 else (lambda row: (getter(row),))
        )
        #: SQLite: the ``VALUES`` group of one row, repeated for multi-row statements.
        self._group = "(" + ", ".join("?" * len(order)) + ")"
        self._multi: dict[int, str] = {}
        self.multi_row = (
            dialect.name == "sqlite"
            and len(order) <= _MOST_COLUMNS
            and self.sql.count(self._group) == 1
        )

    def rows_sql(self, count: int) -> str:
        """The statement inserting ``count`` rows at once (SQLite)."""
        sql = self._multi.get(count)
        if sql is None:
            head, tail = self.sql.split(self._group)
            sql = self._multi[count] = head + ", ".join([self._group] * count) + tail
        return sql


_CACHE: dict[tuple[str, tuple[str, ...], str, str, bool], _Compiled] = {}


def insert_many(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    ignore_duplicates: bool = False,
) -> int:
    """Insert ``rows`` (each a mapping with every one of ``columns``; by default the first
    row's keys) into ``table`` inside ``conn``'s transaction; ``ignore_duplicates``: a row
    whose key is stored already is skipped, not an error. How many rows were inserted."""
    if not rows:
        return 0
    names = tuple(columns or rows[0].keys())
    dialect = conn.dialect
    key = (table.name, names, dialect.name, dialect.driver, ignore_duplicates)
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = _CACHE[key] = _Compiled(table, names, dialect, ignore=ignore_duplicates)
    values = compiled.values
    processed = compiled.processed
    params: list[Any] = []
    for row in rows:
        got = values(row)
        if processed:
            got = list(got)
            for i, process in processed:
                if got[i] is not None:
                    got[i] = process(got[i])
            got = tuple(got)  # the driver takes tuples (SQLAlchemy refuses lists here)
        params.append(got)
    if compiled.multi_row:
        return _insert_in_powers_of_two(conn, compiled, params)
    if not compiled.positional:  # named paramstyle (psycopg's pyformat): mappings
        params = [dict(zip(compiled.order, got, strict=True)) for got in params]
    return execute_many(conn, compiled.sql, params)


def _insert_in_powers_of_two(conn: sa.Connection, compiled: _Compiled, params: list[Any]) -> int:
    inserted, start, left = 0, 0, len(params)
    while left:
        count = min(_MOST_ROWS, 1 << (left.bit_length() - 1))
        flat = [value for row in params[start : start + count] for value in row]
        inserted += execute(conn, compiled.rows_sql(count), flat)
        start, left = start + count, left - count
    return inserted
