"""E-licences and e-seals over real HTTP, on both setups: seal registration, issuance checks,
status changes, every verification verdict, status lists, sharing through lookups.

Requests are built here from the wire contract (``gateway.licensing.claims``) with the
department keys, not through the SDK's licence helpers, and every signed document the gateway
returns is checked with joserfc — a JOSE library the gateway does not use.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws as jose_jws
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from gateway.core.identifiers import licence_check_character, uscc_check_character
from gateway.core.keyring import public_jwk
from gateway.core.licences import (
    HolderIdType,
    LicenceContent,
    Verdict,
    qr_payload,
    seal_licence,
    verify_sealed,
)
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.core.seals import Seal, registry_from_snapshot
from gateway.core.status_lists import StatusRef, verify_status_list_token
from gateway.sdk import Forbidden, GatewayClient
from tests.inprocess import Gateway
from tests.support import es256_key_set, es256_only

MARKET_USCC = "11430600006122001T"
REALESTATE_USCC = "114306000061220057"
BUSINESS = "11100000000013338W001"
PURPOSE = {"item": "000201002000", "case": "YW-2026-LIC-1", "reason": "核验营业执照"}


def _today() -> dt.date:
    return dt.datetime.now(DISTRICT_TZ).date()


def _company() -> str:
    body = "91430600MA" + "".join(secrets.choice("0123456789") for _ in range(7))
    return body + uscc_check_character(body)


def _licence_id(type_code: str, issuer: str, serial: str, version: str = "001") -> str:
    check = licence_check_character(type_code + issuer + serial + version)
    return f"1.2.156.3005.2.{type_code}.{issuer}.{serial}.{version}.{check}"


def _call(client: GatewayClient, path: str, claims: dict[str, Any], typ: str) -> httpx.Response:
    iat = int(dt.datetime.now(dt.UTC).timestamp())
    token = client.sign(
        {
            "iss": client.department,
            "aud": client.audience,
            "iat": iat,
            "exp": iat + 60,
            "jti": secrets.token_hex(16),
            **claims,
        },
        typ=typ,
    )
    return client._http.post(
        path,  # the test drives the wire itself
        content=token,
        headers={"Content-Type": "application/jwt"},
        timeout=10,
    )


def _jose_claims(gateway: Gateway, token: str, typ: str) -> dict[str, Any]:
    """Verify a gateway JWT with joserfc and the published JWKS; its claims."""
    keys = es256_key_set(gateway.http.get(gateway.url + "/.well-known/jwks.json").json())
    decoded = jose_jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == typ
    return dict(decoded.claims)


@dataclass
class Issuer:
    """An issuer department with a freshly registered seal."""

    gateway: Gateway
    client: GatewayClient
    uscc: str
    seal: Seal
    key: ec.EllipticCurvePrivateKey

    def content(self, **changes: Any) -> LicenceContent:
        serial = "".join(secrets.choice("0123456789") for _ in range(11))
        today = _today()
        content = LicenceContent(
            licence_id=_licence_id(BUSINESS, self.uscc, serial),
            type_code=BUSINESS,
            type_name="营业执照",
            holder_name="新港示范贸易有限公司",
            holder_id=_company(),
            holder_id_type=HolderIdType.USCC,
            issuer_uscc=self.uscc,
            issuer_name="区市场监督管理局",
            issue_date=today,
            valid_from=today,
            valid_until=None,
            jurisdiction="430602",
            service_item="000201001000",
            type_fields={"registered_capital": "100万元"},
        )
        return msgspec.structs.replace(content, **changes)

    def reserve(self, licence_id: str) -> httpx.Response:
        return _call(
            self.client,
            "/v1/licences:reserve",
            {"operator": "issuer-01", "licence_id": licence_id},
            TokenType.LICENCE_RESERVE,
        )

    def sealed(self, content: LicenceContent) -> str:
        reserved = self.reserve(content.licence_id)
        assert reserved.status_code == 200, reserved.text
        status = self.client.verify_answer(reserved.text, typ=TokenType.LICENCE_RESERVED).claims[
            "status"
        ]
        content = msgspec.structs.replace(content, status=StatusRef(**status))
        return seal_licence(content, private_key=self.key, seal=self.seal)

    def publish(self, sealed: str) -> httpx.Response:
        return _call(
            self.client,
            "/v1/licences",
            {"operator": "issuer-01", "licence": sealed},
            TokenType.LICENCE_ISSUE,
        )

    def issue(self, **changes: Any) -> tuple[LicenceContent, str]:
        content = self.content(**changes)
        sealed = self.sealed(content)
        answer = self.publish(sealed)
        assert answer.status_code == 200, answer.text
        self.client.verify_answer(answer.text, typ=TokenType.LICENCE_ISSUED)
        stored = msgspec.json.decode(jose_jws.extract_compact(sealed.encode()).payload)
        return msgspec.convert(stored, LicenceContent), sealed

    def status(self, licence_id: str, action: str) -> httpx.Response:
        return _call(
            self.client,
            f"/v1/licences/{licence_id}/status",
            {"operator": "issuer-01", "licence_id": licence_id, "action": action, "reason": "测试"},
            TokenType.LICENCE_STATUS,
        )


def register_seal(
    gateway: Gateway,
    department: str,
    *,
    valid_from: dt.date = dt.date(2020, 1, 1),
    valid_until: dt.date = dt.date(2035, 12, 31),
    proof_jti: str | None = None,
) -> tuple[httpx.Response, Seal, ec.EllipticCurvePrivateKey]:
    """Register a new ES256 seal of ``department`` (with its proof of possession)."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key, alg="ES256")
    seal_id = f"seal-{department}-{secrets.token_hex(4)}"
    client = gateway.client(department)
    jti = secrets.token_hex(16)
    proof = jwt.encode(
        {"seal_id": seal_id, "jti": proof_jti or jti},
        key,
        algorithm="ES256",
        headers={"typ": TokenType.SEAL_PROOF},
    )
    iat = int(dt.datetime.now(dt.UTC).timestamp())
    token = client.sign(
        {
            "iss": department,
            "aud": client.audience,
            "iat": iat,
            "exp": iat + 60,
            "jti": jti,
            "operator": "admin-01",
            "seal": {
                "seal_id": seal_id,
                "name": "区市场监督管理局行政审批专用章",
                "type": "administrative-approval",
                "jwk": jwk,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
            },
            "proof": proof,
        },
        typ=TokenType.SEAL_REGISTER,
    )
    response = gateway.http.post(
        gateway.url + "/v1/seals", content=token, headers={"Content-Type": "application/jwt"}
    )
    uscc = MARKET_USCC if department == "market" else REALESTATE_USCC
    seal = Seal(
        seal_id=seal_id,
        name="区市场监督管理局行政审批专用章",
        type="administrative-approval",
        owner=department,
        owner_uscc=uscc,
        jwk={k: v for k, v in jwk.items() if k not in ("alg", "kid")},
        alg="ES256",
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return response, seal, key


@pytest.fixture
def issuer(gateway: Gateway) -> Iterator[Issuer]:
    response, seal, key = register_seal(gateway, "market")
    assert response.status_code == 200, response.text
    with gateway.client("market") as client:
        yield Issuer(gateway, client, MARKET_USCC, seal, key)


def verify(gateway: Gateway, department: str = "service-centre", **given: str) -> dict[str, Any]:
    """Verify as a clerk; the receipt's claims, checked with joserfc."""
    with gateway.client(department) as client:
        response = _call(
            client,
            "/v1/verifications",
            {"operator": "clerk-007", "purpose": PURPOSE, **given},
            TokenType.VERIFICATION,
        )
        assert response.status_code == 200, response.text
        client.verify_answer(response.text, typ=TokenType.VERIFICATION_RECEIPT)
    return _jose_claims(gateway, response.text, TokenType.VERIFICATION_RECEIPT)


def _admin(gateway: Gateway) -> dict[str, str]:
    token = (gateway.keys_dir / "operators" / "admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


# --- seals --------------------------------------------------------------------------------


def test_seal_registration_needs_an_issuer_and_a_proof_of_the_key(gateway: Gateway) -> None:
    response, seal, _ = register_seal(gateway, "market")
    assert response.status_code == 200, response.text
    claims = _jose_claims(gateway, response.text, TokenType.SEAL_REGISTERED)
    assert claims["seal_id"] == seal.seal_id
    assert claims["status"] == "active"
    listed = {s["seal_id"]: s for s in gateway.http.get(gateway.url + "/v1/seals").json()}
    assert listed[seal.seal_id]["owner"] == "market"
    assert gateway.audit_entry(int(response.headers["Audit-Index"]))["event"] == (
        "seal:registry:registered"
    )

    # police is not an issuer department
    refused, _, _ = register_seal(gateway, "police")
    assert refused.status_code == 403
    assert refused.json()["reason"] == "not-issuer"
    # a proof made for another request (another jti) does not show possession now
    stale, _, _ = register_seal(gateway, "market", proof_jti="0" * 32)
    assert stale.status_code == 400
    assert stale.json()["field"] == "proof"
    entry = gateway.audit_entry(int(stale.json()["audit_index"]))
    assert entry["event"] == "seal:registry:refused"
    assert entry["decision"] == "refused"


def test_an_administrator_suspends_and_revokes_seals_keeping_history(
    gateway: Gateway,
) -> None:
    response, seal, _ = register_seal(gateway, "market")
    assert response.status_code == 200
    url = f"{gateway.url}/v1/seals/{seal.seal_id}/status"
    assert gateway.http.post(url, json={"action": "suspend", "reason": "x"}).status_code == 401
    suspended = gateway.http.post(
        url, json={"action": "suspend", "reason": "印章遗失"}, headers=_admin(gateway)
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    no_reason = gateway.http.post(
        url, json={"action": "revoke", "reason": "泄露"}, headers=_admin(gateway)
    )
    assert no_reason.status_code == 400
    assert no_reason.json()["field"] == "revocation_reason"
    revoked = gateway.http.post(
        url,
        json={"action": "revoke", "reason": "密钥泄露", "revocation_reason": "key-compromise"},
        headers=_admin(gateway),
    )
    assert revoked.status_code == 200
    history = revoked.json()["history"]
    assert [e["status"] for e in history] == ["suspended", "revoked"]
    again = gateway.http.post(
        url, json={"action": "reinstate", "reason": "x"}, headers=_admin(gateway)
    )
    assert again.status_code == 400  # revoked is final
    listed = {s["seal_id"]: s for s in gateway.http.get(gateway.url + "/v1/seals").json()}
    assert listed[seal.seal_id]["status"] == "revoked"


# --- issuance -----------------------------------------------------------------------------


def test_issuance_stores_the_licence_and_answers_its_qr_and_status_entry(issuer: Issuer) -> None:
    content = issuer.content()
    sealed = issuer.sealed(content)
    response = issuer.publish(sealed)
    assert response.status_code == 200, response.text
    claims = _jose_claims(issuer.gateway, response.text, TokenType.LICENCE_ISSUED)
    assert claims["licence_id"] == content.licence_id
    assert claims["qr"].startswith(f"YWL1:{content.licence_id}:")
    assert claims["supersedes"] is None
    entry = issuer.gateway.audit_entry(claims["audit"]["index"])
    assert entry["event"] == "licence:issuance:published"
    assert entry["operator"] == "issuer-01"
    # the same licence again is refused, and nothing changes
    twice = issuer.publish(sealed)
    assert twice.status_code == 400
    assert twice.json()["field"] == "licence_id"
    # reserving again for the same identifier gives the same entry
    again = issuer.client.verify_answer(
        issuer.reserve(content.licence_id).text, typ=TokenType.LICENCE_RESERVED
    )
    assert again.claims["status"] == claims["status"]


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("check-character", "licence_id"),
        ("issuer-not-sender", "licence_id"),
        ("holder-check-character", "content.holder_id"),
        ("changed-byte", "licence"),
        ("not-reserved", "content.status"),
    ],
)
def test_issuance_refuses_what_does_not_check(issuer: Issuer, case: str, field: str) -> None:
    content = issuer.content()
    if case == "check-character":
        bad = content.licence_id[:-1] + ("A" if content.licence_id[-1] != "A" else "B")
        response = issuer.reserve(bad)
    elif case == "issuer-not-sender":
        response = issuer.reserve(_licence_id(BUSINESS, REALESTATE_USCC, "12345678901"))
    elif case == "holder-check-character":
        holder = content.holder_id[:-1] + ("0" if content.holder_id[-1] != "0" else "1")
        response = issuer.publish(issuer.sealed(issuer.content(holder_id=holder)))
    elif case == "changed-byte":
        sealed = issuer.sealed(content)
        head, payload, signature = sealed.split(".")
        flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
        response = issuer.publish(f"{head}.{flipped}.{signature}")
    else:
        response = issuer.publish(
            seal_licence(
                msgspec.structs.replace(content, status=StatusRef("0001", 7)),
                private_key=issuer.key,
                seal=issuer.seal,
            )
        )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert issuer.gateway.audit_entry(int(response.json()["audit_index"]))["decision"] == "refused"


def test_a_seal_of_another_department_or_outside_its_validity_is_refused(
    gateway: Gateway, issuer: Issuer
) -> None:
    registered, other_seal, other_key = register_seal(gateway, "realestate")
    assert registered.status_code == 200
    content = issuer.content()
    borrowed = issuer.sealed(content)
    # re-seal the same (reserved) content with realestate's seal
    payload = jose_jws.extract_compact(borrowed.encode()).payload
    forged = seal_licence(
        msgspec.json.decode(payload, type=LicenceContent), private_key=other_key, seal=other_seal
    )
    response = issuer.publish(forged)
    assert response.status_code == 400
    assert response.json()["field"] == "licence.kid"
    assert "another department" in response.json()["reason"]

    old = issuer.content(issue_date=dt.date(2019, 6, 1), valid_from=dt.date(2019, 6, 1))
    response = issuer.publish(issuer.sealed(old))
    assert response.status_code == 400
    assert response.json()["field"] == "licence.kid"
    assert "not on 2019-06-01" in response.json()["reason"]


def test_a_new_version_supersedes_the_old_one(issuer: Issuer) -> None:
    first, _ = issuer.issue()
    v2_id = _licence_id(BUSINESS, issuer.uscc, first.licence_id.split(".")[-3], "002")
    content = msgspec.structs.replace(first, licence_id=v2_id, status=None)
    response = issuer.publish(issuer.sealed(content))
    assert response.status_code == 200, response.text
    assert _jose_claims(issuer.gateway, response.text, TokenType.LICENCE_ISSUED)["supersedes"] == (
        first.licence_id
    )
    assert verify(issuer.gateway, licence_id=first.licence_id)["verdict"] == "cancelled"
    assert verify(issuer.gateway, licence_id=v2_id)["verdict"] == "valid"
    # an older version after a newer one is refused
    v1_again = _licence_id(BUSINESS, issuer.uscc, first.licence_id.split(".")[-3], "001")
    assert issuer.reserve(v1_again).status_code == 200  # same id, same entry
    older = issuer.publish(issuer.sealed(msgspec.structs.replace(first, status=None)))
    assert older.status_code == 400


# --- status -------------------------------------------------------------------------------


def test_status_changes_follow_the_rules_and_only_the_issuer_may_make_them(
    gateway: Gateway, issuer: Issuer
) -> None:
    content, _ = issuer.issue()
    lid = content.licence_id
    suspended = issuer.status(lid, "suspend")
    assert suspended.status_code == 200, suspended.text
    claims = _jose_claims(gateway, suspended.text, TokenType.LICENCE_STATUS_CHANGED)
    assert (claims["previous"], claims["status"]) == ("valid", "suspended")
    assert issuer.status(lid, "suspend").status_code == 400  # already suspended
    assert issuer.status(lid, "reinstate").status_code == 200
    with gateway.client("realestate") as other:
        response = _call(
            other,
            f"/v1/licences/{lid}/status",
            {"operator": "x", "licence_id": lid, "action": "revoke", "reason": "越权"},
            TokenType.LICENCE_STATUS,
        )
    assert response.status_code == 400
    assert response.json()["field"] == "licence_id"
    with gateway.client("police") as police:
        response = _call(
            police,
            f"/v1/licences/{lid}/status",
            {"operator": "x", "licence_id": lid, "action": "revoke", "reason": "越权"},
            TokenType.LICENCE_STATUS,
        )
    assert response.status_code == 403
    assert verify(gateway, licence_id=lid)["verdict"] == "valid"


# --- verification: every verdict ---------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "verdict"),
    [
        (None, "valid"),
        ("suspend", "suspended"),
        ("revoke", "revoked"),
        ("withdraw", "withdrawn"),
        ("cancel", "cancelled"),
    ],
)
def test_status_verdicts_by_identifier_qr_and_document(
    issuer: Issuer, action: str | None, verdict: str
) -> None:
    content, sealed = issuer.issue()
    if action is not None:
        assert issuer.status(content.licence_id, action).status_code == 200
    for given in (
        {"licence_id": content.licence_id},
        {"qr": qr_payload(content)},
        {"licence": sealed},
    ):
        receipt = verify(issuer.gateway, **given)
        assert receipt["verdict"] == verdict, (given, receipt["checks"])
        assert receipt["licence_id"] == content.licence_id
        assert receipt["licence"]["holder_name"].startswith("新")
        assert receipt["licence"]["holder_name"] != content.holder_name  # masked
        entry = issuer.gateway.audit_entry(receipt["audit"]["index"])
        assert entry["event"] == "licence:verification:performed"
        assert entry["operator"] == "clerk-007"
        assert entry["reason_code"] == verdict
        assert entry["case_number"] == PURPOSE["case"]


def test_expired_and_not_yet_valid(issuer: Issuer) -> None:
    expired, _ = issuer.issue(
        issue_date=dt.date(2021, 3, 1),
        valid_from=dt.date(2021, 3, 1),
        valid_until=dt.date(2024, 2, 29),
    )
    assert verify(issuer.gateway, licence_id=expired.licence_id)["verdict"] == "expired"
    later, _ = issuer.issue(valid_from=_today() + dt.timedelta(days=30))
    assert verify(issuer.gateway, licence_id=later.licence_id)["verdict"] == "not-yet-valid"


def test_not_found_forged_and_malformed(issuer: Issuer) -> None:
    content, sealed = issuer.issue()
    unknown = _licence_id(BUSINESS, issuer.uscc, "99999999999")
    assert verify(issuer.gateway, licence_id=unknown)["verdict"] == "not-found"
    wrong_check = content.licence_id[:-1] + ("A" if content.licence_id[-1] != "A" else "B")
    receipt = verify(issuer.gateway, licence_id=wrong_check)
    assert receipt["verdict"] == "malformed"
    assert receipt["checks"][0] == {
        "name": "identifier-format",
        "outcome": "failed",
        "detail": "check character is wrong",
    }
    assert verify(issuer.gateway, licence="not-a-jws")["verdict"] == "malformed"
    head, payload, signature = sealed.split(".")
    flipped = payload[:20] + ("A" if payload[20] != "A" else "B") + payload[21:]
    forged = verify(issuer.gateway, licence=f"{head}.{flipped}.{signature}")
    assert forged["verdict"] == "forged"
    assert [c["outcome"] for c in forged["checks"]][:3] == ["passed", "passed", "failed"]
    other, _ = issuer.issue()
    qr_of_other = f"YWL1:{content.licence_id}:{qr_payload(other).rsplit(':', 1)[1]}"
    assert verify(issuer.gateway, qr=qr_of_other)["verdict"] == "forged"
    # a well-sealed licence the issuer never published
    unpublished = issuer.sealed(issuer.content())
    assert verify(issuer.gateway, licence=unpublished)["verdict"] == "not-found"


def test_a_seal_revoked_for_key_compromise_invalidates_its_licences(
    gateway: Gateway, issuer: Issuer
) -> None:
    content, sealed = issuer.issue()
    assert verify(gateway, licence=sealed)["verdict"] == "valid"
    response = gateway.http.post(
        f"{gateway.url}/v1/seals/{issuer.seal.seal_id}/status",
        json={"action": "revoke", "reason": "私钥泄露", "revocation_reason": "key-compromise"},
        headers=_admin(gateway),
    )
    assert response.status_code == 200
    for given in ({"licence": sealed}, {"licence_id": content.licence_id}):
        receipt = verify(gateway, **given)
        assert receipt["verdict"] == "seal-invalid"
        failed = next(c for c in receipt["checks"] if c["outcome"] == "failed")
        assert failed["name"] == "seal-validity"
        assert "key compromise" in failed["detail"]
    # and the revoked seal can no longer publish
    assert issuer.publish(issuer.sealed(issuer.content())).status_code == 400


def test_a_verification_request_must_name_exactly_one_licence(gateway: Gateway) -> None:
    with gateway.client("service-centre") as client:
        response = _call(
            client,
            "/v1/verifications",
            {"operator": "clerk-007", "purpose": PURPOSE},
            TokenType.VERIFICATION,
        )
    assert response.status_code == 400
    assert "exactly one" in response.json()["reason"]


# --- offline: status lists and the registry snapshot --------------------------------------


def test_offline_verification_from_public_documents(issuer: Issuer) -> None:
    gateway = issuer.gateway
    content, sealed = issuer.issue()
    revoked, revoked_sealed = issuer.issue()
    assert issuer.status(revoked.licence_id, "revoke").status_code == 200
    assert content.status is not None
    assert revoked.status is not None

    jwks = gateway.http.get(gateway.url + "/.well-known/jwks.json").json()
    gateway_jwk = es256_only(jwks)["keys"][0]  # the answer algorithm's key signs documents
    now = dt.datetime.now(dt.UTC)
    snapshot = gateway.http.get(gateway.url + "/v1/seals/registry")
    assert snapshot.headers["content-type"].startswith("application/jwt")
    _jose_claims(gateway, snapshot.text, "yiwang-seal-registry+jwt")
    registry = registry_from_snapshot(
        snapshot.text, gateway_jwk=gateway_jwk, issuer="yiwang-gateway", now=now
    )
    lists = {}
    for ref in (content.status, revoked.status):
        token = gateway.http.get(f"{gateway.url}/v1/status-lists/{ref.list_id}").text
        claims = _jose_claims(gateway, token, "yiwang-status-list+jwt")
        assert claims["vc"]["credentialSubject"]["statusSize"] == 3
        status_list, messages = verify_status_list_token(
            token, gateway_jwk=gateway_jwk, issuer="yiwang-gateway", now=now
        )
        assert status_list.size >= 131_072
        lists[ref.list_id] = status_list
    assert messages[lists[revoked.status.list_id].get(revoked.status.index)] == "revoked"
    assert verify_sealed(sealed, registry=registry, now=now, status_lists=lists).verdict is (
        Verdict.VALID
    )
    assert (
        verify_sealed(revoked_sealed, registry=registry, now=now, status_lists=lists).verdict
        is Verdict.REVOKED
    )
    assert gateway.http.get(f"{gateway.url}/v1/status-lists/nope").status_code == 404


def test_sealed_licences_verify_with_an_independent_jose_library(issuer: Issuer) -> None:
    content, sealed = issuer.issue()
    key = ECKey.import_key({**issuer.seal.jwk})
    verified = jose_jws.deserialize_compact(sealed, key, algorithms=["ES256"])
    assert msgspec.json.decode(verified.payload)["licence_id"] == content.licence_id


# --- sharing through the lookup path ------------------------------------------------------


def test_licences_are_shared_through_signed_lookups(issuer: Issuer) -> None:
    content, sealed = issuer.issue()
    query = {
        "resource": "licence-business",
        "subject": ("uscc", content.holder_id),
        "fields": ["licence_id", "status", "sealed", "qr"],
        "item": "000201002000",
        "case": "YW-2026-LIC-2",
        "reason": "企业变更登记：核验营业执照",
        "operator": "clerk-008",
    }
    with issuer.gateway.client("service-centre") as centre:
        answer = centre.lookup(**query)
        assert answer.data["licence_id"] == content.licence_id
        assert answer.data["sealed"] == sealed
        assert answer.data["status"] == "valid"
        key = ECKey.import_key({**issuer.seal.jwk})
        jose_jws.deserialize_compact(answer.data["sealed"], key, algorithms=["ES256"])
        assert issuer.status(content.licence_id, "suspend").status_code == 200
        assert centre.lookup(**query).data["status"] == "suspended"  # no stale cache
    with issuer.gateway.client("police") as police, pytest.raises(Forbidden):
        police.lookup(**query)
