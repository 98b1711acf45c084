"""The SQL adapter against real SQLite and PostgreSQL source databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import create_adapter
from gateway.core.keyring import GatewaySigner
from gateway.core.policy import Field, FieldType, Resource, SharingClass
from gateway.core.sources import AdapterContext, SourceAdapter
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout
from tests.support import postgres_database

ROWS: list[dict[str, Any]] = [
    {"code": "A1", "title": "甲", "amount": 12.5, "born": "2001-02-03", "ok": 1, "n": 7},
    {"code": "B2", "title": None, "amount": None, "born": None, "ok": 0, "n": None},
]


def _resource(table: str, url: str, **options: Any) -> Resource:
    return Resource(
        id="things",
        name="things",
        provider="market",
        sharing=SharingClass.UNCONDITIONAL,
        subject="uscc",
        fields=(
            Field("title", FieldType.STRING),
            Field("amount", FieldType.NUMBER),
            Field("born", FieldType.DATE),
            Field("ok", FieldType.BOOLEAN),
            Field("count", FieldType.INTEGER, column="n"),
        ),
        source={"adapter": "sql", "url": url, "table": table, "key": "code", **options},
    )


def _context(tmp: Path) -> AdapterContext:
    signer = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer="gw")
    return AdapterContext(
        data_dir=tmp,
        database=None,
        gateway_id="gw",
        sign=lambda c, t: signer.sign(c, typ=t),
        environ={},
    )


def _fill(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = sa.Table(
        "things",
        md,
        sa.Column("code", sa.String, primary_key=True),
        sa.Column("title", sa.String),
        sa.Column("amount", sa.Float),
        sa.Column("born", sa.String),
        sa.Column("ok", sa.Integer),
        sa.Column("n", sa.Integer),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), ROWS)
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text("CREATE VIEW slow_things AS SELECT t.* FROM things t, pg_sleep(2)")
            )
        else:
            # A view that keeps SQLite busy for a long time: a large recursive count.
            conn.execute(
                sa.text(
                    "CREATE VIEW slow_things AS WITH RECURSIVE c(x) AS "
                    "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
                    "SELECT t.* FROM things t, (SELECT max(x) FROM c)"
                )
            )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'src.sqlite3'}"
        _fill(url)
        yield url
    else:
        with postgres_database() as url:
            _fill(url)
            yield url


def _run(adapter: SourceAdapter, subject: str) -> Any:
    async def go() -> Any:
        try:
            return await adapter.fetch(subject)
        finally:
            await adapter.close()

    return asyncio.run(go())


def test_reads_typed_records_by_key(source_url: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    record = _run(create_adapter(_resource("things", source_url), context=ctx), "A1")
    assert record.values == {
        "title": "甲",
        "amount": 12.5,
        "born": "2001-02-03",
        "ok": True,
        "count": 7,
    }
    assert record.source == "sql:things"
    empty = _run(create_adapter(_resource("things", source_url), context=ctx), "B2")
    assert empty.values["title"] is None
    assert empty.values["ok"] is False
    assert _run(create_adapter(_resource("things", source_url), context=ctx), "ZZ") is None


def test_subject_is_a_bound_parameter_not_sql(source_url: str, tmp_path: Path) -> None:
    adapter = create_adapter(_resource("things", source_url), context=_context(tmp_path))
    assert _run(adapter, "A1' OR '1'='1") is None


def test_statement_timeout_is_a_source_timeout(source_url: str, tmp_path: Path) -> None:
    adapter = create_adapter(
        _resource("slow_things", source_url, timeout_ms=300), context=_context(tmp_path)
    )
    started = time.monotonic()
    with pytest.raises(SourceTimeout):
        _run(adapter, "A1")
    assert time.monotonic() - started < 1.5  # the statement was cut, not waited out


def test_sessions_are_read_only(source_url: str, tmp_path: Path) -> None:
    adapter = create_adapter(_resource("things", source_url), context=_context(tmp_path))
    engine: sa.Engine = adapter._engine  # type: ignore[attr-defined]
    try:
        with engine.begin() as conn, pytest.raises(sa.exc.SQLAlchemyError):
            conn.execute(sa.text("DELETE FROM things"))
    finally:
        engine.dispose()


def test_unreachable_database_is_a_source_failure(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    adapter = create_adapter(_resource("things", url), context=_context(tmp_path))
    with pytest.raises(SourceFailed) as err:
        _run(adapter, "A1")
    assert not isinstance(err.value, SourceTimeout)


def test_bad_options_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="timeout_ms"):
        create_adapter(_resource("things", "sqlite:///x", timeout_ms=0), context=_context(tmp_path))
    resource = _resource("things", "sqlite:///x")
    broken = Resource(
        **{
            **{f: getattr(resource, f) for f in resource.__struct_fields__},
            "source": {"adapter": "sql", "url": "sqlite:///x"},
        }
    )
    with pytest.raises(ConfigurationError, match="table, key"):
        create_adapter(broken, context=_context(tmp_path))
