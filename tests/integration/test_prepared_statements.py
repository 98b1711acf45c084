"""Prepared statements on the driver's cursor (gateway.storage.prepared), on real SQLite and
PostgreSQL: the rows are those ``Connection.execute`` gives for the same statement (the
oracle), ``IN`` lists of every length (padded to a power of two) select exactly their
values, reads see the caller's uncommitted writes, columns or parameters the dialect would
convert are refused, and driver errors arrive as SQLAlchemy's."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.storage.inserts import insert_many
from gateway.storage.prepared import PreparedSelect
from tests.support import postgres_database

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("owner", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("blob", sa.LargeBinary(), nullable=True),
    sa.Column("made_at", sa.DateTime(timezone=True), nullable=True),
)

OWNERS = ["tax", "hrss", "market", "centre"]
NAMES = [f"n{i}" for i in range(40)]

BY_KEYS = sa.select(things.c.owner, things.c.name, things.c.size).where(
    things.c.owner.in_(sa.bindparam("owners", expanding=True)),
    things.c.name.in_(sa.bindparam("names", expanding=True)),
)
BY_SIZE = sa.select(things.c.name, things.c.note, things.c.blob).where(
    things.c.owner == sa.bindparam("owner"), things.c.size >= 10
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    path: Path = tmp_path_factory.mktemp("prepared") / "p.sqlite3"
    with (
        postgres_database()
        if request.param == "postgresql"
        else contextlib.nullcontext(f"sqlite:///{path}")
    ) as url:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        with engine.begin() as conn:
            insert_many(
                conn,
                things,
                [
                    {
                        "owner": owner,
                        "name": name,
                        "size": (i * 7 + j) % 23,
                        "note": None if i % 3 else f"说明 {i}",
                        "blob": bytes([i, j]),
                    }
                    for j, owner in enumerate(OWNERS)
                    for i, name in enumerate(NAMES)
                ],
                ["owner", "name", "size", "note", "blob"],
            )
        try:
            yield engine
        finally:
            engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    owners=st.lists(st.sampled_from([*OWNERS, "nobody"]), min_size=1, max_size=5),
    names=st.lists(st.sampled_from([*NAMES, "missing", "n1'; --"]), min_size=1, max_size=70),
)
def test_rows_are_those_of_connection_execute(
    engine: sa.Engine, owners: list[str], names: list[str]
) -> None:
    prepared = PreparedSelect(BY_KEYS)
    with engine.connect() as conn:
        expected = sorted(
            tuple(r) for r in conn.execute(BY_KEYS, {"owners": owners, "names": names})
        )
        got = sorted(prepared.all(conn, owners=owners, names=names))
    assert got == expected
    assert {(o, n) for o, n, _ in got} == {
        (o, n) for o in owners for n in names if o in OWNERS and n in NAMES
    }


def test_literals_scalars_bytes_and_nulls_come_back_as_stored(engine: sa.Engine) -> None:
    prepared = PreparedSelect(BY_SIZE)
    count = PreparedSelect(sa.select(sa.func.count()).where(things.c.owner == sa.bindparam("o")))
    with engine.connect() as conn:
        expected = sorted(tuple(r) for r in conn.execute(BY_SIZE, {"owner": "hrss"}))
        got = sorted(
            (name, note, bytes(blob)) for name, note, blob in prepared.all(conn, owner="hrss")
        )
        assert got == expected
        assert got
        assert count.scalar(conn, o="tax") == len(NAMES)
        assert count.first(conn, o="nobody") == (0,)
        assert PreparedSelect(BY_KEYS).first(conn, owners=["nobody"], names=["n1"]) is None


def test_a_read_sees_its_own_transaction_and_nothing_after_a_rollback(engine: sa.Engine) -> None:
    prepared = PreparedSelect(BY_KEYS)
    with engine.connect() as conn:
        with conn.begin() as tx:
            insert_many(conn, things, [{"owner": "tax", "name": "fresh", "size": 1}])
            assert prepared.all(conn, owners=["tax"], names=["fresh"]) == [("tax", "fresh", 1)]
            tx.rollback()
        assert prepared.all(conn, owners=["tax"], names=["fresh"]) == []


def test_columns_and_parameters_the_dialect_converts_are_refused(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # SQLite stores dates as text: SQLAlchemy converts
            with pytest.raises(ValueError, match="made_at"):
                PreparedSelect(sa.select(things.c.made_at)).all(conn)
            when = sa.bindparam("when", type_=sa.DateTime(timezone=True))
            with pytest.raises(ValueError, match="when"):
                PreparedSelect(sa.select(things.c.name).where(things.c.made_at > when)).all(
                    conn, when=None
                )
        with pytest.raises(ValueError, match="must not be empty"):
            PreparedSelect(BY_KEYS).all(conn, owners=[], names=["n1"])


def test_driver_errors_arrive_as_sqlalchemy_errors(engine: sa.Engine) -> None:
    missing = sa.Table("no_such_table", sa.MetaData(), sa.Column("x", sa.Integer()))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        PreparedSelect(sa.select(missing.c.x)).all(conn)
    assert "no_such_table" in str(caught.value)
    assert isinstance(caught.value, sa.exc.SQLAlchemyError)


def test_a_one_statement_read_on_the_pool_gives_the_same_rows(engine: sa.Engine) -> None:
    prepared = PreparedSelect(BY_KEYS)
    with engine.connect() as conn:
        expected = sorted(prepared.all(conn, owners=OWNERS, names=NAMES[:5]))
    assert sorted(prepared.read(engine, owners=OWNERS, names=NAMES[:5])) == expected
    assert len(expected) == len(OWNERS) * 5
    missing = sa.Table("no_such_table", sa.MetaData(), sa.Column("x", sa.Integer()))
    with pytest.raises(sa.exc.DBAPIError):
        PreparedSelect(sa.select(missing.c.x)).read(engine)
    # The pool's connection went back usable after the failure.
    assert prepared.read(engine, owners=["tax"], names=["n1"]) == [("tax", "n1", (1 * 7 + 0) % 23)]


# --- insert_many: multi-row statements on SQLite, executemany elsewhere --------------------

batch_rows = sa.Table(
    "batch_rows",
    metadata,
    sa.Column("owner", sa.String(16), primary_key=True),
    sa.Column("serial", sa.Integer(), primary_key=True),
    sa.Column("label", sa.Text(), nullable=True),
    sa.Column("blob", sa.LargeBinary(), nullable=True),
    sa.Column("made_at", sa.DateTime(timezone=True), nullable=True),
)


def _batch_row(owner: str, serial: int) -> dict[str, object]:
    return {
        "owner": owner,
        "serial": serial,
        "label": None if serial % 5 == 0 else f"第{serial}号 ‘证照’",
        "blob": serial.to_bytes(3, "big") if serial % 2 else None,
        "made_at": dt.datetime(2026, 12, 1, 8, serial % 60, tzinfo=dt.UTC) if serial % 3 else None,
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=st.sets(st.integers(0, 700), max_size=40),
    sent=st.lists(st.integers(0, 700), max_size=600, unique=True),
)
def test_insert_many_stores_what_one_insert_per_row_stores(
    engine: sa.Engine, stored: set[int], sent: list[int]
) -> None:
    """Any number of rows (across the powers of two and the 256-row statements): the table
    holds what one ``INSERT`` per row would have left, and the count is of new rows only."""
    owner, oracle = f"o{len(sent)}-{len(stored)}", f"x{len(sent)}-{len(stored)}"

    def stored_rows(conn: sa.Connection, who: str) -> list[tuple[object, ...]]:
        query = sa.select(batch_rows).where(batch_rows.c.owner == who).order_by("serial")
        return [tuple(r)[1:] for r in conn.execute(query)]

    with engine.connect() as conn, conn.begin() as txn:
        for serial in sorted(stored):
            conn.execute(sa.insert(batch_rows), _batch_row(owner, serial))
        for serial in sorted(stored | set(sent)):  # the oracle: one INSERT per row
            conn.execute(sa.insert(batch_rows), _batch_row(oracle, serial))
        inserted = insert_many(
            conn, batch_rows, [_batch_row(owner, s) for s in sent], ignore_duplicates=True
        )
        got, expected = stored_rows(conn, owner), stored_rows(conn, oracle)
        txn.rollback()
    assert inserted == len(set(sent) - stored)
    assert got == expected
    assert [r[0] for r in got] == sorted(stored | set(sent))


def test_insert_many_without_ignoring_duplicates_fails_whole(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(sa.delete(batch_rows).where(batch_rows.c.owner == "dup"))
            insert_many(conn, batch_rows, [_batch_row("dup", 3)])
        rows = [_batch_row("dup", s) for s in range(300)]  # 256 + 32 + 8 + 4: 3 is in the first
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            insert_many(conn, batch_rows, rows)
        count = conn.execute(
            sa.select(sa.func.count()).where(batch_rows.c.owner == "dup")
        ).scalar_one()
    assert count == 1
