"""The licence store on real databases (SQLite file, PostgreSQL): concurrent reservations get
distinct entries, one identifier keeps one entry, status lists follow status changes, and a
new version cancels the old one in the same transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.identifiers import LicenceId, licence_check_character
from gateway.core.keyring import public_jwk
from gateway.core.licences import (
    STATUS_VALUES,
    HolderIdType,
    LicenceContent,
    LicenceStatus,
    StatusAction,
)
from gateway.core.seals import Seal, SealStatus
from gateway.errors import InvalidInput
from gateway.licensing.store import LicenceStore
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import departments
from tests.support import postgres_database

ISSUER = "11430600006122001T"
TYPE = "11100000000013338W001"
AT = dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LicenceStore]:
    with (
        postgres_database()
        if request.param == "postgresql"
        else contextlib.nullcontext(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    ) as url:
        engine = create_database_engine(url)
        migrations.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                departments.insert().values(
                    id="market", name="市场监管", uscc=ISSUER, roles="issuer", updated_at=AT
                )
            )
        try:
            yield LicenceStore(engine)
        finally:
            engine.dispose()


def lid(serial: int, version: str = "001") -> LicenceId:
    body = f"{serial:011d}"
    check = licence_check_character(TYPE + ISSUER + body + version)
    return LicenceId.parse(f"1.2.156.3005.2.{TYPE}.{ISSUER}.{body}.{version}.{check}")


def content(licence: LicenceId, store: LicenceStore) -> LicenceContent:
    ref = store.reserve(licence_id=licence, department="market", at=AT)
    return LicenceContent(
        licence_id=licence.value,
        type_code=TYPE,
        type_name="营业执照",
        holder_name="某公司",
        holder_id="91350100M000100Y43",
        holder_id_type=HolderIdType.USCC,
        issuer_uscc=ISSUER,
        issuer_name="区市场监督管理局",
        issue_date=dt.date(2026, 5, 1),
        valid_from=dt.date(2026, 5, 1),
        valid_until=None,
        jurisdiction="430602",
        service_item="000201001000",
        status=ref,
    )


def test_concurrent_reservations_get_distinct_entries(store: LicenceStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        refs = list(
            pool.map(
                lambda n: store.reserve(licence_id=lid(n), department="market", at=AT),
                range(64),
            )
        )
    assert len(set(refs)) == 64
    assert store.status_list_ids() == ["0001"]
    # asked again (concurrently), an identifier keeps its entry
    with ThreadPoolExecutor(8) as pool:
        again = set(
            pool.map(
                lambda _: store.reserve(licence_id=lid(7), department="market", at=AT), range(8)
            )
        )
    assert again == {refs[7]}
    with pytest.raises(InvalidInput, match="another department"):
        store.reserve(licence_id=lid(7), department="realestate", at=AT)


def _revoke(store: LicenceStore, licence_id: str) -> None:
    store.change_status(
        licence_id, StatusAction.REVOKE, department="market", operator="op", reason="吊销", at=AT
    )


def test_status_lists_follow_status_changes(store: LicenceStore) -> None:
    first = content(lid(1), store)
    store.publish(first, "sealed-1", department="market", operator="op", at=AT)
    assert first.status is not None
    _revoke(store, first.licence_id)
    status_list = store.status_list(first.status.list_id)
    assert status_list is not None
    assert status_list.get(first.status.index) == STATUS_VALUES[LicenceStatus.REVOKED]
    history = store.history(first.licence_id)
    assert [(e.action, e.status) for e in history] == [
        ("issue", LicenceStatus.VALID),
        ("revoke", LicenceStatus.REVOKED),
    ]
    with pytest.raises(InvalidInput, match="cannot reinstate"):
        store.change_status(
            first.licence_id,
            StatusAction.REINSTATE,
            department="market",
            operator="op",
            reason="x",
            at=AT,
        )


def test_a_new_version_cancels_the_old_one_atomically(store: LicenceStore) -> None:
    v1 = content(lid(2), store)
    store.publish(v1, "sealed-v1", department="market", operator="op", at=AT)
    v2 = content(lid(2, "002"), store)
    published = store.publish(v2, "sealed-v2", department="market", operator="op", at=AT)
    assert published.superseded == v1.licence_id
    old = store.get(v1.licence_id)
    assert old is not None
    assert old.status is LicenceStatus.CANCELLED
    assert old.superseded_by == v2.licence_id
    assert store.by_holder(TYPE, v1.holder_id) == store.get(v2.licence_id)
    # the status list says so too, and the old version cannot come back
    assert v1.status is not None
    listed = store.status_list(v1.status.list_id)
    assert listed is not None
    assert listed.get(v1.status.index) == STATUS_VALUES[LicenceStatus.CANCELLED]
    with pytest.raises(InvalidInput):
        store.publish(v1, "sealed-v1", department="market", operator="op", at=AT)


def test_a_content_must_carry_the_entry_reserved_for_it(store: LicenceStore) -> None:
    a, b = content(lid(3), store), content(lid(4), store)
    swapped = msgspec.structs.replace(a, status=b.status)
    with pytest.raises(InvalidInput, match="reserved"):
        store.publish(swapped, "x", department="market", operator="op", at=AT)
    assert store.get(a.licence_id) is None


def test_seal_changes_bump_the_registry_revision(store: LicenceStore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    seal = Seal(
        seal_id="s1",
        name="章",
        type="official",
        owner="market",
        owner_uscc=ISSUER,
        jwk={k: v for k, v in public_jwk(key, alg="ES256").items() if k != "kid"},
        alg="ES256",
        valid_from=dt.date(2026, 1, 1),
        valid_until=dt.date(2030, 1, 1),
    )
    before = store.registry_revision()
    store.register_seal(seal, at=AT, by="market")
    with pytest.raises(InvalidInput):
        store.register_seal(seal, at=AT, by="market")
    store.change_seal("s1", SealStatus.SUSPENDED, at=AT, by="admin", reason="遗失")
    revision, registry = store.registry()
    assert revision == before + 2
    stored = registry.by_id("s1")
    assert stored is not None
    assert stored.status is SealStatus.SUSPENDED
    assert stored.history[0].at == AT


def _engine_of(store: LicenceStore) -> sa.Engine:
    return store._engine  # the test's own store: the same database for a second process


def test_a_kept_record_is_used_again_while_no_licence_changed(store: LicenceStore) -> None:
    first = content(lid(5), store)
    store.publish(first, "sealed-5", department="market", operator="op", at=AT)
    _, read = store.get_with_revision(first.licence_id)
    _, again = store.get_with_revision(first.licence_id)
    assert read is not None
    assert again is read  # the kept copy, not a new read of its row
    assert store.get_with_revision("1.2.156.3005.2.none") == (store.registry_revision(), None)


def test_a_change_by_another_process_is_seen_at_the_next_read(store: LicenceStore) -> None:
    # Another gateway process on the same database: its change moves the revision this
    # store checks, so the record it kept is read again.
    first = content(lid(6), store)
    store.publish(first, "sealed-6", department="market", operator="op", at=AT)
    _, kept = store.get_with_revision(first.licence_id)
    assert kept is not None
    assert kept.status is LicenceStatus.VALID
    other = LicenceStore(_engine_of(store))
    _revoke(other, first.licence_id)
    _, now = store.get_with_revision(first.licence_id)
    assert now is not None
    assert now.status is LicenceStatus.REVOKED


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE licences SET status = 'suspended' WHERE licence_id = :id",
        "DELETE FROM licences WHERE licence_id = :id",
    ],
)
def test_a_change_made_outside_the_gateway_is_seen_too(store: LicenceStore, change: str) -> None:
    # The revision is moved by the database's triggers, whoever writes: an administrator's
    # SQL included.
    first = content(lid(8), store)
    store.publish(first, "sealed-8", department="market", operator="op", at=AT)
    assert store.get_with_revision(first.licence_id)[1] is not None
    with _engine_of(store).begin() as conn:
        conn.execute(
            sa.text("DELETE FROM licence_events WHERE licence_id = :id"), {"id": first.licence_id}
        )
        conn.execute(sa.text(change), {"id": first.licence_id})
    _, now = store.get_with_revision(first.licence_id)
    if change.startswith("DELETE"):
        assert now is None
    else:
        assert now is not None
        assert now.status is LicenceStatus.SUSPENDED


def test_a_new_licence_moves_the_revision(store: LicenceStore) -> None:
    engine = _engine_of(store)

    def revision() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT revision FROM licence_store_revision")).scalar_one()
            )

    before = revision()
    first = content(lid(9), store)
    store.publish(first, "sealed-9", department="market", operator="op", at=AT)
    assert revision() > before
