"""Sealed licences: issuance checks, status, QR payload and every verification verdict."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey

from gateway.core.identifiers import LicenceId, licence_check_character
from gateway.core.keyring import GatewaySigner, PrivateKey, public_jwk
from gateway.core.licences import (
    STATUS_VALUES,
    CheckOutcome,
    HolderIdType,
    IssuerMismatch,
    LicenceContent,
    LicenceRecord,
    LicenceStatus,
    SealRefused,
    SignatureInvalid,
    StatusAction,
    StatusTransitionRefused,
    Verdict,
    Verification,
    canonical_bytes,
    check_issuance,
    parse_qr_payload,
    qr_payload,
    seal_licence,
    supersedes,
    transition,
    verify_identifier,
    verify_qr,
    verify_sealed,
)
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.core.seals import (
    RevocationReason,
    Seal,
    SealRegistry,
    SealStatus,
    SealTransitionRefused,
    change_seal_status,
    registry_from_snapshot,
    registry_snapshot_claims,
)
from gateway.core.status_lists import StatusList, StatusRef
from gateway.errors import InvalidIdentifier, InvalidInput

ISSUER_USCC = "11430000006122244L"
OTHER_USCC = "91350100M000100Y43"
TYPE_CODE = "11100000000013338W011"
HOLDER = "11010519491231002X"
NOW = dt.datetime(2024, 6, 1, 10, 0, tzinfo=DISTRICT_TZ)
LIST_ID = "https://gateway.example/status-lists/1"
GATEWAY = "https://gateway.example"


def licence_id(serial: str = "20230000403", version: str = "001", issuer: str = ISSUER_USCC) -> str:
    check = licence_check_character(TYPE_CODE + issuer + serial + version)
    return f"1.2.156.3005.2.{TYPE_CODE}.{issuer}.{serial}.{version}.{check}"


def make_content(**changes: Any) -> LicenceContent:
    content = LicenceContent(
        licence_id=licence_id(),
        type_code=TYPE_CODE,
        type_name="食品经营许可证",
        holder_name="张三",
        holder_id=HOLDER,
        holder_id_type=HolderIdType.RESIDENT_ID,
        issuer_uscc=ISSUER_USCC,
        issuer_name="某某区行政审批局",
        issue_date=dt.date(2024, 5, 20),
        valid_from=dt.date(2024, 5, 20),
        valid_until=dt.date(2029, 5, 19),
        jurisdiction="430102",
        service_item="11430102MB1234567X4000117001",
        type_fields={"经营场所": "某某路1号", "主体业态": "餐饮服务经营者"},
        status=StatusRef(LIST_ID, 4242),
    )
    return msgspec.structs.replace(content, **changes)


def make_seal(
    key: PrivateKey,
    *,
    seal_id: str = "seal-1",
    owner: str = "approval-bureau",
    uscc: str = ISSUER_USCC,
    valid_from: dt.date = dt.date(2024, 1, 1),
    valid_until: dt.date = dt.date(2026, 12, 31),
) -> Seal:
    alg = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"
    return Seal(
        seal_id=seal_id,
        name="某某区行政审批局行政审批专用章",
        type="administrative-approval",
        owner=owner,
        owner_uscc=uscc,
        jwk=public_jwk(key, alg=alg),
        alg=alg,
        valid_from=valid_from,
        valid_until=valid_until,
    )


KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
SEAL = make_seal(KEY)
ED_SEAL = make_seal(ED_KEY, seal_id="seal-ed")
OTHER_SEAL = make_seal(OTHER_KEY, seal_id="seal-other", owner="market-bureau", uscc=OTHER_USCC)
REGISTRY = SealRegistry([SEAL, ED_SEAL, OTHER_SEAL])


def status_lists(status: LicenceStatus = LicenceStatus.VALID) -> dict[str, StatusList]:
    sl = StatusList(LIST_ID)
    sl.set(4242, STATUS_VALUES[status])
    return {LIST_ID: sl}


def verify(jws: str, registry: SealRegistry = REGISTRY, **kw: Any) -> Verification:
    kw.setdefault("now", NOW)
    kw.setdefault("status_lists", status_lists())
    return verify_sealed(jws, registry=registry, **kw)


def failed(v: Verification) -> str:
    return next(c.name for c in v.checks if c.outcome is CheckOutcome.FAILED)


def flip(jws: str, part: int) -> str:
    """Change one character of one JWS part, keeping it base64url."""
    parts = jws.split(".")
    text = parts[part]
    i = len(text) // 2
    parts[part] = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    return ".".join(parts)


# --- sealing and issuance -----------------------------------------------------------------


def test_seal_payload_is_canonical_content() -> None:
    jws = seal_licence(make_content(), private_key=KEY, seal=SEAL)
    content = check_issuance(
        jws,
        sender_department="approval-bureau",
        sender_uscc=ISSUER_USCC,
        registry=REGISTRY,
        now=NOW,
    )
    assert content == make_content()
    assert canonical_bytes(content).startswith(b'{"holder_id":')  # keys sorted (RFC 8785)
    assert b"document_sha256" not in canonical_bytes(content)  # unset optional left out


# joserfc warns that RFC 9864 deprecates "EdDSA"; the gateway still registers it (keyring).
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("key", "seal", "jwk_type"), [(KEY, SEAL, ECKey), (ED_KEY, ED_SEAL, OKPKey)]
)
def test_sealed_licence_verifies_with_joserfc(key: PrivateKey, seal: Seal, jwk_type: Any) -> None:
    content = make_content()
    jws = seal_licence(content, private_key=key, seal=seal)
    compact = jose_jws.deserialize_compact(
        jws, jwk_type.import_key(dict(seal.jwk)), algorithms=[seal.alg]
    )
    assert compact.payload == canonical_bytes(content)
    assert compact.headers()["typ"] == TokenType.LICENCE
    assert compact.headers()["kid"] == seal.jwk["kid"]


def issue(jws: str, dept: str = "approval-bureau", uscc: str = ISSUER_USCC, **kw: Any) -> Any:
    kw.setdefault("now", NOW)
    kw.setdefault("registry", REGISTRY)
    return check_issuance(jws, sender_department=dept, sender_uscc=uscc, **kw)


def test_issuance_refuses_a_seal_of_another_department() -> None:
    jws = seal_licence(make_content(), private_key=OTHER_KEY, seal=OTHER_SEAL)
    with pytest.raises(SealRefused, match="another department"):
        issue(jws)


def test_issuance_refuses_identifier_of_another_issuer() -> None:
    content = make_content(licence_id=licence_id(issuer=OTHER_USCC), issuer_uscc=OTHER_USCC)
    with pytest.raises(IssuerMismatch):
        issue(seal_licence(content, private_key=KEY, seal=SEAL))


def test_issuance_refuses_wrong_check_characters() -> None:
    bad_id = licence_id()[:-1] + ("A" if licence_id()[-1] != "A" else "B")
    with pytest.raises(InvalidIdentifier) as info:
        issue(seal_licence(make_content(licence_id=bad_id), private_key=KEY, seal=SEAL))
    assert info.value.field == "content.licence-id"
    bad_holder = HOLDER[:-1] + "1"
    with pytest.raises(InvalidIdentifier) as info:
        issue(seal_licence(make_content(holder_id=bad_holder), private_key=KEY, seal=SEAL))
    assert info.value.field == "content.holder_id"


def test_issuance_refuses_seal_outside_validity_and_bad_signature() -> None:
    early = make_content(issue_date=dt.date(2023, 12, 31))
    with pytest.raises(SealRefused, match="not on 2023-12-31"):
        issue(seal_licence(early, private_key=KEY, seal=SEAL))
    with pytest.raises(SignatureInvalid):
        issue(flip(seal_licence(make_content(), private_key=KEY, seal=SEAL), 1))
    suspended = change_seal_status(
        SEAL, SealStatus.SUSPENDED, at=NOW - dt.timedelta(hours=1), by="admin", reason="audit"
    )
    with pytest.raises(SealRefused, match="not usable now"):
        issue(
            seal_licence(make_content(), private_key=KEY, seal=SEAL),
            registry=SealRegistry([suspended]),
        )


def test_supersession_needs_a_newer_version() -> None:
    v1, v2 = LicenceId.parse(licence_id()), LicenceId.parse(licence_id(version="002"))
    assert supersedes(v2, v1)
    assert not supersedes(v1, None)
    with pytest.raises(InvalidInput):
        supersedes(v1, v2)
    with pytest.raises(InvalidInput):
        supersedes(LicenceId.parse(licence_id(serial="99", version="003")), v2)


# --- status -------------------------------------------------------------------------------

V, S, R, W, C = (
    LicenceStatus.VALID,
    LicenceStatus.SUSPENDED,
    LicenceStatus.REVOKED,
    LicenceStatus.WITHDRAWN,
    LicenceStatus.CANCELLED,
)


@pytest.mark.parametrize(
    ("current", "action", "after"),
    [
        (V, StatusAction.SUSPEND, S),
        (S, StatusAction.REINSTATE, V),
        (V, StatusAction.REVOKE, R),
        (S, StatusAction.REVOKE, R),
        (V, StatusAction.WITHDRAW, W),
        (S, StatusAction.CANCEL, C),
    ],
)
def test_allowed_transitions(
    current: LicenceStatus, action: StatusAction, after: LicenceStatus
) -> None:
    assert transition(current, action) is after


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (V, StatusAction.REINSTATE),
        (S, StatusAction.SUSPEND),
        (R, StatusAction.REINSTATE),
        (W, StatusAction.CANCEL),
        (C, StatusAction.SUSPEND),
        (R, StatusAction.REVOKE),
    ],
)
def test_refused_transitions(current: LicenceStatus, action: StatusAction) -> None:
    with pytest.raises(StatusTransitionRefused):
        transition(current, action)


def test_seal_status_changes_are_checked_and_kept() -> None:
    t = NOW
    s1 = change_seal_status(SEAL, SealStatus.SUSPENDED, at=t, by="admin", reason="audit")
    s2 = change_seal_status(
        s1, SealStatus.ACTIVE, at=t + dt.timedelta(days=1), by="admin", reason="ok"
    )
    s3 = change_seal_status(
        s2,
        SealStatus.REVOKED,
        at=t + dt.timedelta(days=2),
        by="admin",
        reason="rotated",
        revocation_reason=RevocationReason.SUPERSEDED,
    )
    assert [e.status for e in s3.history] == ["suspended", "active", "revoked"]
    assert s3.status_at(t + dt.timedelta(hours=1)) is SealStatus.SUSPENDED
    with pytest.raises(SealTransitionRefused):
        change_seal_status(s3, SealStatus.ACTIVE, at=t + dt.timedelta(days=3), by="a", reason="")
    with pytest.raises(SealTransitionRefused):
        change_seal_status(SEAL, SealStatus.REVOKED, at=t, by="a", reason="no reason given")


# --- verification of a sealed licence (offline) -------------------------------------------


def test_valid_licence_passes_every_check() -> None:
    v = verify(seal_licence(make_content(), private_key=KEY, seal=SEAL))
    assert v.verdict is Verdict.VALID
    assert all(c.outcome is CheckOutcome.PASSED for c in v.checks)
    assert [c.name for c in v.checks][:3] == ["structure", "seal-known", "signature"]
    assert v.licence_id == licence_id()


@pytest.mark.parametrize("part", [1, 2])
def test_one_changed_byte_is_forged(part: int) -> None:
    v = verify(flip(seal_licence(make_content(), private_key=KEY, seal=SEAL), part))
    assert v.verdict is Verdict.FORGED
    assert failed(v) == "signature"
    assert v.checks[-1].outcome is CheckOutcome.SKIPPED


def test_unknown_seal_is_forged_and_garbage_is_malformed() -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    v = verify(seal_licence(make_content(), private_key=stranger, seal=make_seal(stranger)))
    assert (v.verdict, failed(v)) == (Verdict.FORGED, "seal-known")
    assert verify("not.a-jws").verdict is Verdict.MALFORMED
    assert verify("hello").verdict is Verdict.MALFORMED


def test_wrong_check_character_is_malformed() -> None:
    bad_id = licence_id()[:-1] + ("A" if licence_id()[-1] != "A" else "B")
    v = verify(seal_licence(make_content(licence_id=bad_id), private_key=KEY, seal=SEAL))
    assert (v.verdict, failed(v)) == (Verdict.MALFORMED, "identifier")
    v = verify(seal_licence(make_content(holder_id=HOLDER[:-1] + "1"), private_key=KEY, seal=SEAL))
    assert (v.verdict, failed(v)) == (Verdict.MALFORMED, "holder-id")


def test_non_canonical_payload_is_malformed() -> None:
    from jwt.api_jws import PyJWS

    payload = msgspec.json.encode(make_content())  # valid JSON, not RFC 8785 key order
    jws = PyJWS().encode(
        payload, KEY, algorithm="ES256", headers={"kid": SEAL.jwk["kid"], "typ": TokenType.LICENCE}
    )
    v = verify(jws)
    assert (v.verdict, failed(v)) == (Verdict.MALFORMED, "content")


def test_seal_outside_its_validity_is_seal_invalid() -> None:
    for day in (dt.date(2023, 12, 31), dt.date(2027, 1, 1)):
        content = make_content(issue_date=day, valid_from=day)
        v = verify(seal_licence(content, private_key=KEY, seal=SEAL), now=NOW.replace(year=2027))
        assert (v.verdict, failed(v)) == (Verdict.SEAL_INVALID, "seal-validity"), day


def test_seal_of_another_department_is_seal_invalid() -> None:
    v = verify(seal_licence(make_content(), private_key=OTHER_KEY, seal=OTHER_SEAL))
    assert (v.verdict, failed(v)) == (Verdict.SEAL_INVALID, "seal-owner")


def revoked(reason: RevocationReason, at: dt.datetime) -> SealRegistry:
    seal = change_seal_status(
        SEAL, SealStatus.REVOKED, at=at, by="admin", reason="x", revocation_reason=reason
    )
    return SealRegistry([seal])


def test_revoked_seal_rules() -> None:
    jws = seal_licence(make_content(), private_key=KEY, seal=SEAL)  # dated 2024-05-20
    after = dt.datetime(2024, 5, 25, 9, tzinfo=DISTRICT_TZ)
    # Revoked after the issue date for a benign reason: older licences stay valid ...
    assert verify(jws, revoked(RevocationReason.SUPERSEDED, after)).verdict is Verdict.VALID
    # ... but not for key compromise: a stolen key can back-date anything.
    v = verify(jws, revoked(RevocationReason.KEY_COMPROMISE, after))
    assert (v.verdict, failed(v)) == (Verdict.SEAL_INVALID, "seal-validity")
    # Revoked before (or during) the issue date: invalid whatever the reason.
    during = dt.datetime(2024, 5, 20, 15, tzinfo=DISTRICT_TZ)
    v = verify(jws, revoked(RevocationReason.SUPERSEDED, during))
    assert (v.verdict, failed(v)) == (Verdict.SEAL_INVALID, "seal-validity")


def test_seal_suspended_on_the_issue_date_is_seal_invalid() -> None:
    jws = seal_licence(make_content(), private_key=KEY, seal=SEAL)
    start = dt.datetime(2024, 5, 19, 9, tzinfo=DISTRICT_TZ)
    suspended = change_seal_status(SEAL, SealStatus.SUSPENDED, at=start, by="a", reason="audit")
    assert verify(jws, SealRegistry([suspended])).verdict is Verdict.SEAL_INVALID
    back = change_seal_status(
        suspended, SealStatus.ACTIVE, at=start + dt.timedelta(hours=3), by="a", reason="ok"
    )
    assert verify(jws, SealRegistry([back])).verdict is Verdict.VALID
    assert SealRegistry.was_valid_at(back, start + dt.timedelta(hours=1)) is False


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(S, Verdict.SUSPENDED), (R, Verdict.REVOKED), (W, Verdict.WITHDRAWN), (C, Verdict.CANCELLED)],
)
def test_status_list_verdicts(status: LicenceStatus, verdict: Verdict) -> None:
    v = verify(
        seal_licence(make_content(), private_key=KEY, seal=SEAL), status_lists=status_lists(status)
    )
    assert v.verdict is verdict


def test_expired_not_yet_valid_and_not_found() -> None:
    jws = seal_licence(make_content(valid_until=dt.date(2024, 5, 31)), private_key=KEY, seal=SEAL)
    v = verify(jws, status_lists=status_lists(S))
    assert (v.verdict, failed(v)) == (Verdict.EXPIRED, "validity")  # expiry outranks suspension
    jws = seal_licence(make_content(valid_from=dt.date(2024, 7, 1)), private_key=KEY, seal=SEAL)
    assert verify(jws).verdict is Verdict.NOT_YET_VALID
    jws = seal_licence(make_content(status=None), private_key=KEY, seal=SEAL)
    v = verify(jws)
    assert (v.verdict, failed(v)) == (Verdict.NOT_FOUND, "status-entry")
    assert verify(jws, status_ref=StatusRef(LIST_ID, 4242)).verdict is Verdict.VALID
    assert (
        verify(jws, status_ref=StatusRef(LIST_ID, 4242), status_lists={}).verdict
        is Verdict.NOT_FOUND
    )


def test_offline_verification_from_signed_registry_snapshot() -> None:
    signer = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer=GATEWAY)
    claims = registry_snapshot_claims(REGISTRY, issuer=GATEWAY, now=NOW, ttl=dt.timedelta(days=1))
    token = signer.sign(claims, typ=TokenType.SEAL_REGISTRY)
    registry = registry_from_snapshot(token, gateway_jwk=signer.public_jwk, issuer=GATEWAY, now=NOW)
    assert registry.by_id("seal-1") == SEAL
    assert (
        verify(seal_licence(make_content(), private_key=KEY, seal=SEAL), registry).verdict
        is Verdict.VALID
    )


# --- verification by identifier and by QR (online, against the stored record) -------------


def record(content: LicenceContent | None = None, status: LicenceStatus = V) -> LicenceRecord:
    content = content or make_content()
    return LicenceRecord(
        content=content,
        sealed=seal_licence(content, private_key=KEY, seal=SEAL),
        status=status,
        status_ref=StatusRef(LIST_ID, 4242),
    )


def test_verify_by_identifier() -> None:
    rec = record()
    assert (
        verify_identifier(licence_id(), record=rec, registry=REGISTRY, now=NOW).verdict
        is Verdict.VALID
    )
    v = verify_identifier(licence_id()[:-1] + "0", record=None, registry=REGISTRY, now=NOW)
    assert (v.verdict, failed(v)) == (Verdict.MALFORMED, "identifier-format")
    v = verify_identifier(licence_id(version="002"), record=None, registry=REGISTRY, now=NOW)
    assert (v.verdict, failed(v)) == (Verdict.NOT_FOUND, "record")
    tampered = msgspec.structs.replace(rec, content=make_content(holder_name="李四"))
    v = verify_identifier(licence_id(), record=tampered, registry=REGISTRY, now=NOW)
    assert (v.verdict, failed(v)) == (Verdict.FORGED, "record-matches")
    revoked_rec = msgspec.structs.replace(rec, status=R)
    assert (
        verify_identifier(licence_id(), record=revoked_rec, registry=REGISTRY, now=NOW).verdict
        is Verdict.REVOKED
    )


def test_qr_payload_round_trip_and_tamper_detection() -> None:
    content = make_content()
    text = qr_payload(content)
    prefix, lid, digest = text.split(":")
    assert (prefix, lid, len(digest)) == ("YWL1", licence_id(), 22)
    assert parse_qr_payload(text).licence_id.value == licence_id()
    rec = record(content)
    assert verify_qr(text, record=rec, registry=REGISTRY, now=NOW).verdict is Verdict.VALID
    # A QR printed for other content (e.g. an altered paper copy) does not match the record.
    other = qr_payload(make_content(holder_name="李四"))
    v = verify_qr(other, record=rec, registry=REGISTRY, now=NOW)
    assert (v.verdict, failed(v)) == (Verdict.FORGED, "qr-digest")
    for bad in (
        "YWL2:" + text[5:],
        text + ":x",
        text[:-1] + "!",
        text.replace(lid, lid[:-1] + "0"),
    ):
        v = verify_qr(bad, record=rec, registry=REGISTRY, now=NOW)
        assert v.verdict is Verdict.MALFORMED, bad
    with pytest.raises(InvalidInput):
        parse_qr_payload(text[:-1] + ("B" if text[-1] != "B" else "C"))  # non-canonical bits
    v = verify_qr(text, record=None, registry=REGISTRY, now=NOW)
    assert v.verdict is Verdict.NOT_FOUND


def test_every_verdict_is_reachable() -> None:
    # Collected from the tests above, asserted here so a new verdict cannot go untested.
    reached = {
        Verdict.VALID,
        Verdict.SUSPENDED,
        Verdict.REVOKED,
        Verdict.WITHDRAWN,
        Verdict.CANCELLED,
        Verdict.EXPIRED,
        Verdict.NOT_YET_VALID,
        Verdict.NOT_FOUND,
        Verdict.FORGED,
        Verdict.SEAL_INVALID,
        Verdict.MALFORMED,
    }
    assert reached == set(Verdict)


# Keys of every kind: ASCII, CJK, private use (U+E000…, where UTF-16 and code-point order
# part), astral (stored as surrogate pairs in UTF-16), and characters JSON escapes.
_KEY_CHARS = st.one_of(
    st.sampled_from(["a", "B", "经", "营", "\ue000", "\uffef", "\U0001f600", "\U00020000"]),
    st.characters(exclude_categories=["Cs"]),
)
_FIELD_VALUES = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.sampled_from([2**53, -(2**53), 2**53 - 1]),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.text(_KEY_CHARS, min_size=1, max_size=4), _FIELD_VALUES, max_size=6),
    holder_name=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
    until=st.one_of(st.none(), st.dates()),
    status=st.one_of(st.none(), st.builds(StatusRef, st.just(LIST_ID), st.integers(0, 2**20))),
)
def test_canonical_bytes_are_rfc8785_for_any_content(
    fields: dict[str, Any], holder_name: str, until: dt.date | None, status: StatusRef | None
) -> None:
    # The oracle is the rfc8785 library on the plain JSON value: the fast encoder must give
    # exactly its bytes (the bytes a seal signs), whichever path it takes.
    content = make_content(
        type_fields=fields, holder_name=holder_name, valid_until=until, status=status
    )
    try:
        expected = rfc8785.dumps(msgspec.to_builtins(content))
    except rfc8785.CanonicalizationError:  # ±2⁵³: no canonical form, refused either way
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_bytes(content)
        return
    assert canonical_bytes(content) == expected


def test_keys_whose_utf16_order_differs_are_sorted_as_rfc8785_sorts_them() -> None:
    # Code points put U+E000 before U+1F600; UTF-16 (D83D DE00) puts the emoji first.
    content = make_content(type_fields={"\ue000": "a", "\U0001f600": "b"})
    raw = canonical_bytes(content)
    assert raw.index("\U0001f600".encode()) < raw.index("\ue000".encode())
    assert raw == rfc8785.dumps(msgspec.to_builtins(content))
