"""The demo district's seals and licences (``gateway init``) on a real, migrated SQLite file:
what is issued, that a second run adds nothing, and that every demo case verifies to its
verdict — by identifier, QR payload and sealed document, and with joserfc."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from gmalglib.sm2 import SM2 as GmalglibSM2
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey

from gateway.app.bootstrap import initialise
from gateway.core.identifiers import LicenceId
from gateway.core.licences import (
    HolderIdType,
    LicenceContent,
    LicenceRecord,
    LicenceStatus,
    SealRefused,
    StatusAction,
    Verdict,
    canonical_bytes,
    check_issuance,
    qr_payload,
    verify_identifier,
    verify_presented,
    verify_qr,
)
from gateway.core.policy import DISTRICT_TZ, Department, PolicySet, load_policy_set
from gateway.core.seals import RevocationReason, SealRegistry, SealStatus
from gateway.demo.licences import (
    DEMO_SEALS,
    OPERATOR,
    DemoLicencesReport,
    demo_cases,
    ensure_demo_licences,
    plan_licences,
)
from gateway.errors import ConfigurationError
from gateway.licensing.store import LicenceStore
from gateway.registry import keystore
from gateway.registry.store import sync_registry
from gateway.settings import load_settings
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from tests.support import ROOT

POLICY = load_policy_set(ROOT / "policies")
CASES = demo_cases(POLICY.departments)
EXPECTED_LICENCES = 44  # 27 营业执照 (26 companies, one in two versions), 5 food permits, 12 certs


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _engine(path: Path, policy: PolicySet = POLICY) -> sa.Engine:
    engine = create_database_engine(f"sqlite:///{path}", busy_timeout_ms=2000)
    migrations.upgrade(engine)
    sync_registry(engine, department_list=policy.departments.values(), public_jwks={}, now=_now())
    return engine


def _ensure(engine: sa.Engine, keys_dir: Path) -> DemoLicencesReport:
    return ensure_demo_licences(
        engine, keys_dir=keys_dir, departments=POLICY.departments, now=_now()
    )


@pytest.fixture(scope="module")
def district(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[sa.Engine, Path, DemoLicencesReport]:
    root = tmp_path_factory.mktemp("demo-licences")
    engine = _engine(root / "gateway.sqlite3")
    report = _ensure(engine, root / "keys")
    return engine, root / "keys", report


@pytest.fixture(scope="module")
def store(district: tuple[sa.Engine, Path, DemoLicencesReport]) -> LicenceStore:
    return LicenceStore(district[0])


def _records(store: LicenceStore) -> dict[str, LicenceRecord]:
    records = {i: store.get(i) for i in store.licence_ids()}
    return {i: r for i, r in records.items() if r is not None}


# --- what is issued -----------------------------------------------------------------------


def test_demo_issuance_registers_the_seals_and_issues_every_licence(
    district: tuple[sa.Engine, Path, DemoLicencesReport], store: LicenceStore
) -> None:
    _, keys_dir, report = district
    assert report.skipped == []
    assert report.seals_registered == len(DEMO_SEALS) == 4
    assert report.licences_issued == EXPECTED_LICENCES
    assert report.status_changes == 3  # one suspended, one revoked (吊销), one cancelled (注销)
    assert report.seals_revoked == 1
    records = _records(store)
    assert len(records) == EXPECTED_LICENCES
    by_type: dict[str, int] = {}
    for record in records.values():
        by_type[record.content.type_name] = by_type.get(record.content.type_name, 0) + 1
    assert by_type == {"营业执照": 27, "食品经营许可证": 5, "不动产权证书": 12}
    statuses = sorted(
        str(r.status) for r in records.values() if r.status is not LicenceStatus.VALID
    )
    # 注销 and the superseded version 001 are cancelled
    assert statuses == ["cancelled", "cancelled", "revoked", "suspended"]
    _, registry = store.registry()
    assert {s.seal_id: (s.alg, s.status) for s in registry} == {
        "market-approval-1": ("ES256", SealStatus.ACTIVE),
        "market-approval-2": ("ES256", SealStatus.REVOKED),
        "market-food-1": ("EdDSA", SealStatus.ACTIVE),
        "realestate-registration-1": ("SM2", SealStatus.ACTIVE),
    }
    compromised = registry.by_id("market-approval-2")
    assert compromised is not None
    assert compromised.history[-1].revocation_reason is RevocationReason.KEY_COMPROMISE
    for seal in registry:
        path = keys_dir / "seals" / f"{seal.seal_id}.private.jwk.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert keystore.ensure_seal_key(keys_dir, seal.seal_id, alg=seal.alg)["kid"] == (
            SealRegistry.kid_of(seal)
        )
        assert "d" not in seal.jwk


def test_demo_licences_are_well_formed_and_dated_inside_their_seal(store: LicenceStore) -> None:
    _, registry = store.registry()
    today = dt.datetime.now(DISTRICT_TZ).date()
    items = set(POLICY.items)
    for record in _records(store).values():
        content = record.content
        lid = LicenceId.parse(content.licence_id)  # check character and structure
        assert lid.type_code == content.type_code
        assert (
            content.issuer_uscc
            == POLICY.departments[
                "market" if content.type_name != "不动产权证书" else "realestate"
            ].uscc
        )
        assert content.holder_id_type is (
            HolderIdType.RESIDENT_ID if content.type_name == "不动产权证书" else HolderIdType.USCC
        )
        assert content.service_item in items
        assert content.status == record.status_ref
        seal = registry.by_kid(_kid(record.sealed))
        assert seal is not None
        assert seal.valid_from <= content.issue_date <= min(today, seal.valid_until)
        assert all(
            isinstance(k, str) and isinstance(v, str) for k, v in content.type_fields.items()
        )
    expired = store.get(CASES["expired"].licence_id)
    assert expired is not None
    assert expired.content.valid_until is not None
    assert expired.content.valid_until < today


def _kid(sealed: str) -> str:
    return str(jwt.get_unverified_header(sealed)["kid"])


def test_demo_cases_name_each_kind_of_verdict() -> None:
    assert {name: case.verdict for name, case in CASES.items()} == {
        "business-licence": Verdict.VALID,
        "food-permit": Verdict.VALID,
        "real-estate-certificate": Verdict.VALID,
        "superseding": Verdict.VALID,
        "suspended": Verdict.SUSPENDED,
        "revoked": Verdict.REVOKED,
        "deregistered": Verdict.CANCELLED,
        "superseded": Verdict.CANCELLED,
        "expired": Verdict.EXPIRED,
        "seal-invalid": Verdict.SEAL_INVALID,
    }
    assert demo_cases(POLICY.departments) == CASES  # identifiers do not depend on the day
    superseded = LicenceId.parse(CASES["superseded"].licence_id)
    superseding = LicenceId.parse(CASES["superseding"].licence_id)
    assert (superseded.serial, superseded.version) == (superseding.serial, "001")
    assert superseding.version == "002"


# --- every case verifies to its verdict ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_demo_case_verifies_to_its_verdict_every_way(store: LicenceStore, name: str) -> None:
    case = CASES[name]
    record = store.get(case.licence_id)
    assert record is not None
    _, registry = store.registry()
    now = _now()
    by_id = verify_identifier(case.licence_id, record=record, registry=registry, now=now)
    by_qr = verify_qr(qr_payload(record.content), record=record, registry=registry, now=now)
    presented = verify_presented(record.sealed, record=record, registry=registry, now=now)
    assert (by_id.verdict, by_qr.verdict, presented.verdict) == (case.verdict,) * 3
    assert by_id.content == record.content


def test_every_live_demo_licence_passes_the_issuance_checks(store: LicenceStore) -> None:
    _, registry = store.registry()
    for record in _records(store).values():
        issuer = next(
            d for d in POLICY.departments.values() if d.uscc == record.content.issuer_uscc
        )

        def check(record: LicenceRecord = record, issuer: Department = issuer) -> LicenceContent:
            return check_issuance(
                record.sealed,
                sender_department=issuer.id,
                sender_uscc=issuer.uscc,
                registry=registry,
                now=_now(),
            )

        if record.content.licence_id == CASES["seal-invalid"].licence_id:
            with pytest.raises(SealRefused):  # its seal is revoked: it could not be published now
                check()
        else:
            assert check() == record.content


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jose_key(jwk: dict[str, Any]) -> Any:
    return (OKPKey if jwk["kty"] == "OKP" else ECKey).import_key(dict(jwk))


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc prefers "Ed25519" now
def test_sealed_demo_licences_verify_with_joserfc(store: LicenceStore) -> None:
    _, registry = store.registry()
    algs = set()
    for record in _records(store).values():
        seal = registry.by_kid(_kid(record.sealed))
        assert seal is not None
        if seal.alg == "SM2":  # joserfc has no SM2: gmalglib, C, nobody's here
            head, payload, signature = record.sealed.split(".")
            point = _b64decode(seal.jwk["x"]) + _b64decode(seal.jwk["y"])
            verifier = GmalglibSM2(pk=b"\x04" + point, uid=b"1234567812345678")
            assert verifier.verify(f"{head}.{payload}".encode(), _b64decode(signature))
            assert _b64decode(payload) == canonical_bytes(record.content)
            algs.add(seal.alg)
            continue
        verified = jose_jws.deserialize_compact(
            record.sealed, _jose_key(seal.jwk), algorithms=[seal.alg]
        )
        assert verified.payload == canonical_bytes(record.content)
        assert verified.headers()["typ"] == "yiwang-licence+jws"
        algs.add(seal.alg)
    assert algs == {"ES256", "EdDSA", "SM2"}


# --- idempotence --------------------------------------------------------------------------


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("seals", "seal_events", "licences", "licence_events", "status_entries")
    with engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))) for t in tables
        }


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "g.sqlite3")
    first = _ensure(engine, tmp_path / "keys")
    assert first.licences_issued == EXPECTED_LICENCES
    before = _snapshot(engine)
    keys_before = {p.name: p.read_bytes() for p in (tmp_path / "keys" / "seals").iterdir()}
    again = _ensure(engine, tmp_path / "keys")
    assert again == DemoLicencesReport()
    assert _snapshot(engine) == before
    assert {p.name: p.read_bytes() for p in (tmp_path / "keys" / "seals").iterdir()} == keys_before


def test_what_an_issuer_did_since_is_not_undone(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "g.sqlite3")
    _ensure(engine, tmp_path / "keys")
    store = LicenceStore(engine)
    suspended = CASES["suspended"].licence_id
    store.change_status(
        suspended,
        StatusAction.REINSTATE,
        department="market",
        operator="m-1",
        reason="整改合格",
        at=_now(),
    )
    store.change_status(
        CASES["food-permit"].licence_id,
        StatusAction.WITHDRAW,
        department="market",
        operator="m-1",
        reason="x",
        at=_now(),
    )
    assert _ensure(engine, tmp_path / "keys") == DemoLicencesReport()
    reinstated = store.get(suspended)
    assert reinstated is not None
    assert reinstated.status is LicenceStatus.VALID
    history = [(e.action, e.operator) for e in store.history(suspended)]
    assert history == [("issue", OPERATOR), ("suspend", OPERATOR), ("reinstate", "m-1")]


def test_a_licence_missing_from_a_partial_run_is_issued_later(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "g.sqlite3")
    keys_dir = tmp_path / "keys"
    _ensure(engine, keys_dir)
    gone = CASES["real-estate-certificate"].licence_id
    with engine.begin() as conn:  # as if init had stopped before publishing it
        conn.execute(sa.text("DELETE FROM licence_events WHERE licence_id = :i"), {"i": gone})
        conn.execute(sa.text("DELETE FROM licences WHERE licence_id = :i"), {"i": gone})
    report = _ensure(engine, keys_dir)
    assert (report.licences_issued, report.status_changes, report.skipped) == (1, 0, [])
    record = LicenceStore(engine).get(gone)
    assert record is not None
    assert record.status is LicenceStatus.VALID


def test_other_keys_than_the_registered_ones_are_reported_not_used(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "g.sqlite3")
    _ensure(engine, tmp_path / "keys")
    before = _snapshot(engine)
    report = _ensure(engine, tmp_path / "other-keys")  # new key files, same database
    assert report.seals_registered == report.licences_issued == 0
    assert len(report.skipped) == len(DEMO_SEALS)
    assert all("registered key is not the one" in reason for reason in report.skipped)
    assert _snapshot(engine) == before


def test_without_issuer_departments_nothing_is_made(tmp_path: Path) -> None:
    departments = {k: v for k, v in POLICY.departments.items() if k not in ("market", "realestate")}
    engine = _engine(tmp_path / "g.sqlite3")
    report = ensure_demo_licences(
        engine, keys_dir=tmp_path / "keys", departments=departments, now=_now()
    )
    assert report == DemoLicencesReport()
    assert not (tmp_path / "keys" / "seals").exists()


def test_plan_dates_never_lie_in_the_future_or_outside_the_seal(
    store: LicenceStore,
) -> None:
    _, registry = store.registry()
    for today in (dt.date(2026, 1, 1), dt.date(2027, 6, 30), dt.date(2029, 12, 31)):
        for planned in plan_licences(POLICY.departments, registry, today):
            seal = registry.by_id(planned.seal_id)
            assert seal is not None
            assert seal.valid_from <= planned.content.issue_date <= min(today, seal.valid_until)


# --- keys and bootstrap -------------------------------------------------------------------


def test_seal_keys_are_made_once_and_keep_their_algorithm(tmp_path: Path) -> None:
    jwk = keystore.ensure_seal_key(tmp_path, "s-1", alg="EdDSA")
    assert jwk["kty"] == "OKP"
    assert "d" not in jwk
    assert keystore.ensure_seal_key(tmp_path, "s-1", alg="EdDSA") == jwk
    assert keystore.load_seal_key(tmp_path, "s-1").algorithm_name == "EdDSA"
    private = json.loads((tmp_path / "seals" / "s-1.private.jwk.json").read_text())
    assert "d" in private
    with pytest.raises(ConfigurationError):
        keystore.ensure_seal_key(tmp_path, "s-1", alg="ES256")
    with pytest.raises(ConfigurationError):
        keystore.ensure_seal_key(tmp_path, "../escape", alg="ES256")


def test_gitignore_keeps_seal_private_keys_out() -> None:
    patterns = (ROOT / ".gitignore").read_text().splitlines()
    assert "keys/**/*.private.*" in patterns or "keys/seals/" in patterns


def test_init_reports_the_demo_licences_once(tmp_path: Path) -> None:
    settings = load_settings(
        {}, overrides={"data_dir": str(tmp_path / "data"), "keys_dir": str(tmp_path / "keys")}
    )
    first = initialise(settings, demo=True)
    assert (first.seals_registered, first.licences_issued) == (4, EXPECTED_LICENCES)
    assert first.licence_status_changes == 4  # three licences and one seal
    assert first.licences_skipped == []
    second = initialise(settings, demo=True)
    assert (second.seals_registered, second.licences_issued, second.licence_status_changes) == (
        0,
        0,
        0,
    )
    no_demo = initialise(settings, demo=False)
    assert no_demo.licences_issued == 0
