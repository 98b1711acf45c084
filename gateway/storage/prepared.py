"""Core statements compiled once per dialect and run straight on the driver's cursor.

``conn.execute(select)`` builds a cache key of the statement, expands its ``IN`` lists, sets
up an execution context and a result object with a processor per column: on SQLite that is
~40 µs per statement around work the driver does in ~5 µs (measured: a licence's read with
the registry's revision took 216 µs through ``Connection.execute``, 30 µs on the cursor; the
audit writer spent four fifths of its CPU in that machinery, for six statements a batch).
The hot statements — a verification's read, the audit sequencer's and its promises' — are
declared in SQLAlchemy Core like every other query, so each dialect gets its own SQL, and run
through :class:`PreparedSelect` (and :func:`execute_many` for ``INSERT``): the compiled SQL
and the driver's own parameters, inside the caller's connection and transaction. Driver
errors are wrapped as SQLAlchemy wraps them (``DBAPIError.instance``) and a lost connection
is invalidated, so callers handle failures exactly as before.

Only columns whose values the driver returns as they are stored may be selected (text,
integers, bytes), and only parameters the dialect passes as they are: a column or parameter
the dialect would convert (SQLite's dates, say) is refused when the statement is compiled,
never returned or sent unconverted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

__all__ = ["PreparedSelect", "execute", "execute_many"]


def _run(
    conn: sa.Connection, sql: str, params: Any, *, many: bool = False, fetch: bool = True
) -> tuple[list[tuple[Any, ...]], int]:
    """``sql`` on the driver's cursor of ``conn``: the rows it returned (none unless
    ``fetch``) and the driver's row count."""
    return _on_driver(
        conn.dialect, conn.connection, conn.invalidate, sql, params, many=many, fetch=fetch
    )


def _on_driver(
    dialect: sa.Dialect,
    dbapi_conn: Any,
    invalidate: Callable[[BaseException], None],
    sql: str,
    params: Any,
    *,
    many: bool = False,
    fetch: bool = True,
) -> tuple[list[tuple[Any, ...]], int]:
    try:
        cursor = dbapi_conn.cursor()
        try:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            rows = list(cursor.fetchall()) if fetch and not many else []
            return rows, cursor.rowcount
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_conn, None)
        if lost:
            invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
            ismulti=many,
        ) from exc


def execute(conn: sa.Connection, sql: str, params: Sequence[Any]) -> int:
    """One statement of compiled ``sql`` that returns no rows, inside ``conn``'s transaction;
    the rows it changed (the driver's ``rowcount``)."""
    return _run(conn, sql, params, fetch=False)[1]


def execute_many(conn: sa.Connection, sql: str, params: Sequence[Any]) -> int:
    """One ``executemany`` of compiled ``sql`` inside ``conn``'s transaction; the rows it
    changed in all (the driver's ``rowcount``)."""
    return _run(conn, sql, params, many=True)[1]


class _Slot:
    """Stands in for a value while the statement's parameters are laid out."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int | None) -> None:
        self.name = name
        self.index = index


class _Layout:
    """The SQL of one shape of the statement (its ``IN`` lists' lengths) and where each of
    the driver's parameters comes from: a value (by name, and index in its list) or a
    literal of the statement."""

    __slots__ = ("named", "slots", "sql")

    def __init__(self, compiled: Any, lengths: dict[str, int]) -> None:
        sentinels: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if bind.expanding:
                sentinels[name] = [_Slot(name, i) for i in range(lengths[name])]
            elif bind.required:
                sentinels[name] = _Slot(name, None)
        state = compiled.construct_expanded_state(sentinels)
        self.sql: str = state.statement
        self.named = state.positiontup is None
        keys = list(state.parameters) if self.named else list(state.positiontup)
        self.slots: tuple[tuple[str, Any], ...] = tuple(
            (key, state.parameters[key]) for key in keys
        )

    def params(self, values: dict[str, Any]) -> Any:
        got = []
        for _key, source in self.slots:
            if isinstance(source, _Slot):
                value = values[source.name]
                got.append(value if source.index is None else value[source.index])
            else:
                got.append(source)
        if self.named:
            return {key: value for (key, _), value in zip(self.slots, got, strict=True)}
        return tuple(got)


class _Compiled:
    __slots__ = ("compiled", "expanding", "layouts")

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        for column in statement.selected_columns:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                raise ValueError(
                    f"{column.name}: {dialect.name} converts its values; "
                    "select it through Connection.execute"
                )
        self.compiled = statement.compile(dialect=dialect)
        for name, bind in self.compiled.binds.items():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise ValueError(f"{name}: {dialect.name} converts its values")
        self.expanding = tuple(n for n, b in self.compiled.binds.items() if b.expanding)
        self.layouts: dict[tuple[int, ...], _Layout] = {}

    def layout(self, values: dict[str, Any]) -> tuple[_Layout, dict[str, Any]]:
        """The layout for ``values``' list lengths, and the values to bind. Each list is
        padded with its last value to a power of two (``IN (a, b, b, b)`` means
        ``IN (a, b)``), so that a statement has a few layouts, not one per length."""
        if not self.expanding:
            shape: tuple[int, ...] = ()
        else:
            values = dict(values)
            lengths = []
            for name in self.expanding:
                items = list(values[name])
                if not items:
                    raise ValueError(f"{name}: an IN list must not be empty")
                size = 1 << (len(items) - 1).bit_length()
                values[name] = items + [items[-1]] * (size - len(items))
                lengths.append(size)
            shape = tuple(lengths)
        found = self.layouts.get(shape)
        if found is None:
            found = self.layouts[shape] = _Layout(
                self.compiled, dict(zip(self.expanding, shape, strict=True))
            )
        return found, values


class PreparedSelect:
    """One ``SELECT`` with named bind parameters (``bindparam``, ``expanding=True`` for an
    ``IN`` list, which must not be empty), run on the driver's cursor.

    Each dialect compiles it once; each shape of its ``IN`` lists lays out its SQL once.
    """

    def __init__(self, statement: sa.Select[Any]) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    @property
    def statement(self) -> sa.Select[Any]:
        """The Core statement (to explain its plan, say)."""
        return self._statement

    def _for(self, dialect: sa.Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self._statement, dialect)
        return compiled

    def all(self, conn: sa.Connection, **values: Any) -> list[tuple[Any, ...]]:
        """Every row, as the driver's tuples, read inside ``conn``'s transaction (if any)."""
        layout, bound = self._for(conn.dialect).layout(values)
        return _run(conn, layout.sql, layout.params(bound))[0]

    def read(self, engine: sa.Engine, **values: Any) -> list[tuple[Any, ...]]:
        """Every row, read on a connection of ``engine``'s pool outside any transaction of
        the caller's (a one-statement read: no ``Connection`` object is built for it)."""
        layout, bound = self._for(engine.dialect).layout(values)
        dbapi_conn = engine.raw_connection()
        try:
            return _on_driver(
                engine.dialect, dbapi_conn, dbapi_conn.invalidate, layout.sql, layout.params(bound)
            )[0]
        finally:
            dbapi_conn.close()  # back to the pool, which ends the driver's transaction

    def first(self, conn: sa.Connection, **values: Any) -> tuple[Any, ...] | None:
        """The first row, or None."""
        rows = self.all(conn, **values)
        return rows[0] if rows else None

    def scalar(self, conn: sa.Connection, **values: Any) -> Any:
        """The first column of the first row, or None if there is no row."""
        row = self.first(conn, **values)
        return None if row is None else row[0]
