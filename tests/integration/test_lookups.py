"""Signed lookups over real HTTP against both setups: embedded (SQLite, in-process caches) and
server (PostgreSQL, Redis, two workers). Every refusal is checked in the audit log itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.identifiers import uscc_check_character
from gateway.demo.population import companies, people
from gateway.registry.keystore import department_private_jwk
from gateway.sdk import (
    AnswerRejected,
    BadRequest,
    Forbidden,
    GatewayProblem,
    NotFound,
    Replayed,
    Unauthorized,
)
from tests.inprocess import ALSO_ON_CLUSTER, Gateway
from tests.support import es256_key_set

COMPANY = next(c for c in companies() if c.status == "存续")
QUERY: dict[str, Any] = {
    "resource": "enterprise-registration",
    "subject": ("uscc", COMPANY.uscc),
    "item": "000201002000",
    "case": "BJ-2026-000001",
    "reason": "企业变更登记核验营业执照",
    "operator": "clerk-001",
}


def post_raw(gw: Gateway, body: bytes, content_type: str = "application/jwt") -> httpx.Response:
    return gw.http.post(
        gw.url + "/v1/lookups", content=body, headers={"Content-Type": content_type}, timeout=10
    )


def assert_refusal_audited(gw: Gateway, problem: dict[str, Any], reason_code: str) -> None:
    index = problem["audit_index"]
    entry = gw.audit_entry(index)
    assert entry["decision"] == "refused"
    assert entry["event"] == "lookup:record:refused"
    assert entry["reason_code"] == reason_code


@ALSO_ON_CLUSTER
def test_permitted_lookup_releases_only_granted_fields(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        answer = c.lookup(fields=["name", "status"], **QUERY)
    assert answer.data == {"name": COMPANY.name, "status": COMPANY.status}
    assert answer.claims["grant"] == "g-centre-enterprise"
    assert answer.claims["aud"] == "service-centre"
    assert answer.claims["provenance"]["provider"] == "market"
    assert answer.claims["policy_version"].startswith("sha256:")
    entry = gateway.audit_entry(answer.audit_index)
    assert entry["event"] == "lookup:record:released"
    assert entry["decision"] == "allowed"
    assert entry["department"] == "service-centre"
    assert entry["grant_id"] == "g-centre-enterprise"
    assert entry["request_hash"] == answer.claims["request"]["sha256"]
    # The log keys the subject: the identifier itself is nowhere in the entry.
    assert COMPANY.uscc not in str(entry)
    assert len(str(entry["subject_hmac"])) == 64


def test_resident_lookup_with_eddsa_consumer_key(gateway: Gateway) -> None:
    person = people()[0]
    with gateway.client("hrss") as c:  # the demo gives hrss an EdDSA key
        answer = c.lookup(
            resource="resident-identity",
            subject=("resident-id", person.id_number),
            fields=["name", "birth_date"],
            item="000111003000",
            case="BJ-2",
            reason="退休审批核验身份",
            operator="clerk-9",
        )
    assert answer.data == {"name": person.name, "birth_date": person.birth_date.isoformat()}


@pytest.mark.parametrize(
    ("department", "fields", "item", "reason"),
    [
        ("service-centre", ["name", "registered_capital"], "000201002000", "field-not-granted"),
        ("service-centre", ["name"], "000109001000", "purpose-not-granted"),
        ("police", ["name"], "000201002000", "no-grant"),
    ],
)
def test_policy_refusals_are_403_and_audited(
    gateway: Gateway, department: str, fields: list[str], item: str, reason: str
) -> None:
    with gateway.client(department) as c, pytest.raises(Forbidden) as err:
        c.lookup(**{**QUERY, "fields": fields, "item": item})
    assert err.value.reason == reason
    assert_refusal_audited(gateway, err.value.problem, reason)


def test_refusal_body_does_not_depend_on_record_existence(gateway: Gateway) -> None:
    body = "91430602MA4L00000"
    absent = body + uscc_check_character(body)
    bodies = []
    with gateway.client("police") as c:
        for uscc in (COMPANY.uscc, absent):
            with pytest.raises(Forbidden) as err:
                c.lookup(**{**QUERY, "subject": ("uscc", uscc), "fields": ["name"]})
            bodies.append({k: v for k, v in err.value.problem.items() if k != "audit_index"})
    assert bodies[0] == bodies[1]
    # Allowed but absent: 404, and audited as allowed-not-found.
    with gateway.client("service-centre") as c, pytest.raises(NotFound) as nf:
        c.lookup(**{**QUERY, "subject": ("uscc", absent), "fields": ["name"]})
    assert (
        gateway.audit_entry(nf.value.problem["audit_index"])["event"] == "lookup:record:not-found"
    )


@pytest.mark.parametrize(
    ("subject", "field"),
    [
        (
            ("uscc", COMPANY.uscc[:17] + ("0" if COMPANY.uscc[17] != "0" else "1")),
            "query.subject.id",
        ),
        (("passport", "E1234567"), "query.subject.type"),
        (("resident-id", "11010519491231002X"), "query.subject.type"),  # resource keyed by uscc
    ],
)
def test_bad_subject_is_400_naming_the_field(
    gateway: Gateway, subject: tuple[str, str], field: str
) -> None:
    with gateway.client("service-centre") as c, pytest.raises(BadRequest) as err:
        c.lookup(**{**QUERY, "subject": subject, "fields": ["name"]})
    assert err.value.problem["field"] == field
    assert_refusal_audited(gateway, err.value.problem, "invalid-input")


def test_unknown_item_and_resource_are_400(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        with pytest.raises(BadRequest) as err:
            c.lookup(**{**QUERY, "item": "999999999999", "fields": ["name"]})
        assert err.value.problem["field"] == "purpose.item"
        with pytest.raises(BadRequest) as err:
            c.lookup(**{**QUERY, "resource": "nope", "fields": ["name"]})
        assert err.value.problem["field"] == "query.resource"
        with pytest.raises(BadRequest) as err:
            c.lookup(**{**QUERY, "fields": ["name", "shoe_size"]})
        assert err.value.problem["field"] == "query.fields"


def test_missing_claim_is_400_naming_it(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        now = int(time.time())
        token = c.sign(
            {
                "iss": "service-centre",
                "aud": "yiwang-gateway",
                "iat": now,
                "exp": now + 60,
                "jti": uuid.uuid4().hex,
                "operator": "x",
                "query": {
                    "resource": "enterprise-registration",
                    "subject": {"type": "uscc", "id": COMPANY.uscc},
                    "fields": ["name"],
                },
            }
        )
        with pytest.raises(BadRequest) as err:
            c.send_lookup(token)
    assert err.value.problem["field"] == "purpose"


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "service-centre",
        "aud": "yiwang-gateway",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        "purpose": {"item": "000201002000", "case": "C1", "reason": "r"},
        "operator": "o",
        "query": {
            "resource": "enterprise-registration",
            "subject": {"type": "uscc", "id": COMPANY.uscc},
            "fields": ["name"],
        },
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (lambda: _claims(exp=int(time.time()) - 120, iat=int(time.time()) - 200), "token:expired"),
        (
            lambda: _claims(iat=int(time.time()) + 120, exp=int(time.time()) + 200),
            "token:issued-in-future",
        ),
        (lambda: _claims(nbf=int(time.time()) + 120), "token:not-yet-valid"),
        (lambda: _claims(exp=int(time.time()) + 400), "token:lifetime-too-long"),
        (lambda: _claims(aud="other-gateway"), "token:wrong-aud"),
        (lambda: _claims(jti=None), "token:missing-jti"),
        (lambda: _claims(iss="market"), "token:iss-not-key-owner"),
    ],
)
def test_token_failures_are_opaque_401_and_audited(
    gateway: Gateway, claims: Any, reason: str
) -> None:
    with gateway.client("service-centre") as c, pytest.raises(Unauthorized) as err:
        c.send_lookup(c.sign(claims()))
    problem = err.value.problem
    assert problem["title"] == "The request token was not accepted"
    assert reason.split(":")[1] not in str(problem)  # the precise reason stays in the log
    assert_refusal_audited(gateway, problem, reason)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _header(**members: str) -> str:
    return _b64(json.dumps({"typ": "yiwang-lookup+jwt", **members}).encode())


def test_alg_none_hs256_unknown_kid_bad_signature_oversize(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        kid = c.key_id
        head, payload, sig = c.sign(_claims()).split(".")
    private = department_private_jwk(gateway.keys_dir, "service-centre").key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # HS256 keyed with the department's public key (the algorithm-confusion attack).
    hs_head = _header(alg="HS256", kid=kid)
    mac = hmac.new(public_pem, f"{hs_head}.{payload}".encode(), hashlib.sha256).digest()
    with gateway.client("service-centre") as c:
        oversized = c.sign(_claims(pad="x" * 9000))
    cases = [
        ("token:alg-not-allowed", f"{_header(alg='none', kid=kid)}.{payload}."),
        ("token:alg-not-allowed", f"{hs_head}.{payload}.{_b64(mac)}"),
        ("token:unknown-kid", f"{_header(alg='ES256', kid='nope')}.{payload}.{sig}"),
        ("token:bad-signature", f"{head}.{_b64(json.dumps(_claims()).encode())}.{sig}"),
        ("token:token-too-large", oversized),
    ]
    for reason, token in cases:
        response = post_raw(gateway, token.encode())
        assert response.status_code == 401, reason
        assert_refusal_audited(gateway, response.json(), reason)


def test_another_departments_kid_is_refused(gateway: Gateway) -> None:
    with gateway.client("service-centre") as centre, gateway.client("market") as market:
        # service-centre's claims, market's kid in the header, service-centre's signature.
        token = centre.sign(_claims(), headers={"kid": market.key_id})
    response = post_raw(gateway, token.encode())
    assert response.status_code == 401
    entry = gateway.audit_entry(response.json()["audit_index"])
    assert entry["reason_code"] in ("token:bad-signature", "token:alg-not-allowed-for-key")


@ALSO_ON_CLUSTER
def test_replay_of_fifty_concurrent_copies_releases_once(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        token = c.lookup_token(fields=["name"], **QUERY).encode()
    before = gateway.audit_count()

    barrier = threading.Barrier(50)

    def fire(_: int) -> tuple[int, str]:
        barrier.wait()  # all fifty leave together
        response = gateway.http.post(
            "/v1/lookups", content=token, headers={"Content-Type": "application/jwt"}
        )
        detail = "" if response.status_code in (200, 409) else response.text[:300]
        return response.status_code, detail

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(fire, range(50)))
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 1, answers
    assert statuses.count(409) == 49, [a for a in answers if a[0] not in (200, 409)]
    # Exactly one entry per request, under concurrency.
    assert gateway.audit_count() - before == 50


def test_body_limits_and_media_type(gateway: Gateway) -> None:
    response = post_raw(gateway, b"x" * (70 * 1024))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    response = post_raw(gateway, b"abc", content_type="application/json")
    assert response.status_code == 415


def test_client_rejects_an_answer_altered_by_one_byte(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        token = c.lookup_token(fields=["name"], **QUERY)
        raw = post_raw(gateway, token.encode())
        assert raw.status_code == 200
        genuine = raw.text
        assert c.verify_answer(genuine, request_token=token).data["name"] == COMPANY.name
        head, payload, sig = genuine.split(".")
        for part in ("payload", "signature"):
            if part == "payload":
                # Flip one byte of the decoded payload, re-encode: the data changed.
                data = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                data[len(data) // 2] ^= 0x01
                altered = (
                    f"{head}.{base64.urlsafe_b64encode(bytes(data)).rstrip(b'=').decode()}.{sig}"
                )
            else:
                i = len(sig) // 2
                altered = f"{head}.{payload}.{sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1 :]}"
            with pytest.raises(AnswerRejected):
                c.verify_answer(altered, request_token=token)
        # An answer to another request is refused too.
        with pytest.raises(AnswerRejected):
            c.verify_answer(genuine, request_token=c.lookup_token(fields=["name"], **QUERY))


def test_answers_verify_with_an_independent_jose_library(gateway: Gateway) -> None:
    from joserfc import jwt as jose_jwt

    jwks = gateway.http.get(gateway.url + "/.well-known/jwks.json").json()
    with gateway.client("service-centre") as c:
        answer = c.lookup(fields=["name"], **QUERY)
    token = jose_jwt.decode(answer.token, es256_key_set(jwks), algorithms=["ES256"])
    assert token.header["typ"] == "yiwang-lookup-result+jwt"
    assert token.claims["data"] == {"name": COMPANY.name}


@ALSO_ON_CLUSTER
def test_health_and_readiness(gateway: Gateway) -> None:
    assert gateway.http.get(gateway.url + "/healthz").json() == {"status": "ok"}
    ready = gateway.http.get(gateway.url + "/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"database": True, "cache": True, "keys": True}
    assert (
        gateway.http.get(gateway.url + "/docs/openapi.json").json()["info"]["title"]
        == "Yiwang Gateway"
    )


def test_browsable_docs_need_no_outside_network(gateway: Gateway) -> None:
    page = gateway.http.get(gateway.url + "/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = gateway.http.get(f"{gateway.url}/docs/assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 10_000


def test_unknown_route_is_a_problem(gateway: Gateway) -> None:
    response = gateway.http.get(gateway.url + "/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_problem_typed_errors(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        token = c.lookup_token(fields=["name"], **QUERY)
        c.send_lookup(token)
        with pytest.raises(Replayed) as err:
            c.send_lookup(token)
    assert isinstance(err.value, GatewayProblem)
    assert err.value.audit_index is not None
