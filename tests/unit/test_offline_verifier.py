"""OfflineVerifier: sealed licences checked against the gateway's signed public documents.

The documents are built here with the gateway's own core functions and a real GatewaySigner,
exactly as the gateway publishes them; nothing is mocked.
"""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.identifiers import licence_check_character
from gateway.core.keyring import GatewaySigner, public_jwk
from gateway.core.licences import (
    STATUS_MESSAGES,
    STATUS_VALUES,
    CheckOutcome,
    HolderIdType,
    LicenceContent,
    LicenceStatus,
    Verdict,
    seal_licence,
)
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.core.seals import Seal, SealRegistry, registry_snapshot_claims
from gateway.core.status_lists import StatusList, StatusListRejected, StatusRef, status_list_claims
from gateway.sdk import OfflineVerifier, sealed_status_list_id

GATEWAY = "yiwang-gateway"
ISSUER_USCC = "11430600006122001T"
TYPE_CODE = "11100000000013338W011"
SERIAL, VERSION = "20240000001", "001"
NOW = dt.datetime(2024, 6, 1, 10, 0, tzinfo=DISTRICT_TZ)
TTL = dt.timedelta(hours=1)
LIST_ID = "0001"
INDEX = 4242

SIGNER = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer=GATEWAY)
SEAL_KEY = ec.generate_private_key(ec.SECP256R1())
SEAL = Seal(
    seal_id="market-licence-1",
    name="区市场监督管理局证照专用章",
    type="licence",
    owner="market",
    owner_uscc=ISSUER_USCC,
    jwk=public_jwk(SEAL_KEY, alg="ES256"),
    alg="ES256",
    valid_from=dt.date(2024, 1, 1),
    valid_until=dt.date(2026, 12, 31),
)


def _licence_id() -> str:
    check = licence_check_character(TYPE_CODE + ISSUER_USCC + SERIAL + VERSION)
    return f"1.2.156.3005.2.{TYPE_CODE}.{ISSUER_USCC}.{SERIAL}.{VERSION}.{check}"


CONTENT = LicenceContent(
    licence_id=_licence_id(),
    type_code=TYPE_CODE,
    type_name="食品经营许可证",
    holder_name="张三",
    holder_id="11010519491231002X",
    holder_id_type=HolderIdType.RESIDENT_ID,
    issuer_uscc=ISSUER_USCC,
    issuer_name="区市场监督管理局",
    issue_date=dt.date(2024, 5, 20),
    valid_from=dt.date(2024, 5, 20),
    valid_until=dt.date(2029, 5, 19),
    jurisdiction="430602",
    service_item="11430602MB1234567X4000117001",
    status=StatusRef(LIST_ID, INDEX),
)
SEALED = seal_licence(CONTENT, private_key=SEAL_KEY, seal=SEAL)


def registry_token(signer: GatewaySigner = SIGNER, *, now: dt.datetime = NOW) -> str:
    claims = registry_snapshot_claims(SealRegistry([SEAL]), issuer=GATEWAY, now=now, ttl=TTL)
    return signer.sign(claims, typ=TokenType.SEAL_REGISTRY)


def list_token(
    status: LicenceStatus = LicenceStatus.VALID,
    *,
    signer: GatewaySigner = SIGNER,
    now: dt.datetime = NOW,
    messages: dict[int, str] | None = None,
) -> str:
    status_list = StatusList(LIST_ID)
    status_list.set(INDEX, STATUS_VALUES[status])
    claims = status_list_claims(
        status_list,
        issuer=GATEWAY,
        now=now,
        ttl=TTL,
        status_messages=messages or dict(STATUS_MESSAGES),
    )
    return signer.sign(claims, typ=TokenType.STATUS_LIST)


def verifier(
    *,
    registry: str | None = None,
    lists: tuple[str, ...] | None = None,
    jwks: dict[str, object] | None = None,
    now: dt.datetime = NOW,
) -> OfflineVerifier:
    return OfflineVerifier(
        jwks=jwks or SIGNER.jwks(),
        registry=registry or registry_token(),
        status_lists=lists if lists is not None else (list_token(),),
        issuer=GATEWAY,
        now=now,
    )


def flip(token: str, part: int) -> str:
    """Change one character of one part of a compact JWS, keeping it base64url."""
    parts = token.split(".")
    i = len(parts[part]) // 2
    parts[part] = parts[part][:i] + ("A" if parts[part][i] != "A" else "B") + parts[part][i + 1 :]
    return ".".join(parts)


def test_a_published_licence_is_valid_offline() -> None:
    result = verifier().verify(SEALED, now=NOW)
    assert result.verdict is Verdict.VALID
    assert result.licence_id == CONTENT.licence_id
    assert all(c.outcome is CheckOutcome.PASSED for c in result.checks)
    assert [c.detail for c in result.checks if c.name == "status-entry"] == [f"{LIST_ID}#{INDEX}"]


def test_the_sealed_licence_names_the_list_to_fetch() -> None:
    assert sealed_status_list_id(SEALED) == LIST_ID
    assert sealed_status_list_id("not a jws") is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (LicenceStatus.REVOKED, Verdict.REVOKED),
        (LicenceStatus.SUSPENDED, Verdict.SUSPENDED),
        (LicenceStatus.CANCELLED, Verdict.CANCELLED),
    ],
)
def test_status_comes_from_the_signed_list(status: LicenceStatus, verdict: Verdict) -> None:
    result = verifier(lists=(list_token(status),)).verify(SEALED, now=NOW)
    assert result.verdict is verdict


def test_without_its_status_list_the_licence_is_not_found() -> None:
    result = verifier(lists=()).verify(SEALED, now=NOW)
    assert result.verdict is Verdict.NOT_FOUND


def test_a_tampered_registry_snapshot_is_rejected() -> None:
    with pytest.raises(StatusListRejected, match="signature"):
        verifier(registry=flip(registry_token(), 1))


def test_a_tampered_status_list_is_rejected() -> None:
    with pytest.raises(StatusListRejected, match="signature"):
        verifier(lists=(flip(list_token(LicenceStatus.REVOKED), 1),))


def test_an_expired_status_list_is_rejected() -> None:
    stale = list_token(now=NOW - TTL - dt.timedelta(seconds=1))
    with pytest.raises(StatusListRejected, match="expired"):
        verifier(lists=(stale,))


def test_documents_that_expire_after_construction_are_not_used() -> None:
    v = verifier()
    assert v.expires_at == NOW + TTL
    with pytest.raises(StatusListRejected, match="fetch them again"):
        v.verify(SEALED, now=NOW + TTL)


def test_documents_of_another_gateway_key_are_rejected() -> None:
    impostor = GatewaySigner(private_key=ec.generate_private_key(ec.SECP256R1()), issuer=GATEWAY)
    # Signed by a key the JWKS does not hold: no key is chosen for it.
    with pytest.raises(StatusListRejected, match="no gateway key"):
        verifier(registry=registry_token(impostor))
    # The right documents checked against someone else's JWKS fail the same way.
    with pytest.raises(StatusListRejected, match="no gateway key"):
        verifier(jwks=impostor.jwks())


def test_a_list_signed_by_another_key_under_the_gateway_kid_is_rejected() -> None:
    # The gateway's own list, signed again by another key that claims the gateway's kid.
    claims = jwt.decode(list_token(LicenceStatus.VALID), options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": SIGNER.kid, "typ": TokenType.STATUS_LIST},
    )
    with pytest.raises(StatusListRejected, match="signature"):
        verifier(lists=(forged,))


def test_a_list_giving_values_other_meanings_is_rejected() -> None:
    swapped = {**STATUS_MESSAGES, 1: "revoked", 2: "suspended"}
    with pytest.raises(StatusListRejected, match="meanings"):
        verifier(lists=(list_token(messages=swapped),))
