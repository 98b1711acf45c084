"""The disk reserve of a local SQLite database: below it the audit writer writes nothing and
``/readyz`` says why, on real files; a server database has no local disk to check. (The full
disk itself, a small tmpfs filled up and freed again, is in ``test_faults``.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.errors import StoreUnavailable
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.readiness import DiskReserve, ReadinessProbe
from gateway.storage.schema import audit_entries
from tests.support import postgres_database

#: More than any disk this suite runs on has free (the setting's own maximum, about 1 TB).
_MORE_THAN_FREE_MB = 1_000_000


def _entry() -> AuditEntry:
    return AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department="tax",
    )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    e = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    migrations.upgrade(e)
    return e


def _append_with(engine: sa.Engine, reserve: DiskReserve) -> int:
    log = GroupCommitAuditLog(engine=engine, reserve=reserve, timeout=10)
    log.start()
    try:
        return asyncio.run(log.append(_entry()))
    finally:
        log.stop()


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_entries)).scalar_one())


def test_below_the_reserve_no_entry_is_written_and_the_request_fails(
    engine: sa.Engine, tmp_path: Path
) -> None:
    assert shutil.disk_usage(tmp_path).free < _MORE_THAN_FREE_MB * 1024 * 1024
    with pytest.raises(StoreUnavailable) as failed:
        _append_with(engine, DiskReserve(engine=engine, min_free_mb=_MORE_THAN_FREE_MB))
    assert not failed.value.in_doubt  # refused before any transaction: nothing may have landed
    assert _count(engine) == 0


def test_with_its_reserve_the_disk_takes_entries(engine: sa.Engine) -> None:
    assert _append_with(engine, DiskReserve(engine=engine, min_free_mb=1)) == 1
    assert _count(engine) == 1


def test_readiness_says_how_much_is_left(engine: sa.Engine, tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    probe = ReadinessProbe(engine=engine, timeout=5, min_free_mb=_MORE_THAN_FREE_MB)
    why = asyncio.run(probe.check())
    assert why is not None
    assert why.startswith("only ")
    assert why.endswith(" MB free for the database")
    assert abs(int(why.split()[1]) - free_mb) <= 64  # the tests' own files may come and go
    assert asyncio.run(ReadinessProbe(engine=engine, timeout=5, min_free_mb=1).check()) is None


def test_a_server_database_has_no_local_reserve() -> None:
    with postgres_database() as url:
        e = create_database_engine(url)
        try:
            reserve = DiskReserve(engine=e, min_free_mb=_MORE_THAN_FREE_MB)
            assert reserve.shortfall(now=0.0) is None
        finally:
            e.dispose()


def test_the_free_space_is_read_at_most_once_an_interval(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    e = sa.create_engine(f"sqlite:///{directory / 'g.sqlite3'}")  # never connected
    reserve = DiskReserve(engine=e, min_free_mb=1, interval=10.0)
    assert reserve.shortfall(now=100.0) is None
    directory.rmdir()
    assert reserve.shortfall(now=109.0) is None  # what it read at 100
    why = reserve.shortfall(now=110.0)
    assert why is not None
    assert why.startswith("the free space for the database cannot be read")  # fails closed
