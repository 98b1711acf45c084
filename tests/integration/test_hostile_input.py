"""Hostile input over real HTTP, on both setups: correctly signed tokens whose claims or
headers no strict decoder accepts, parameters beyond any column's range, text no store takes.

Each is refused with its documented status, and each refusal is an audit entry (the answer
names its index, and the entry is read back from the database). The tokens are signed with
PyJWT and by hand, byte by byte — the standard library's JSON encoder happily writes ``NaN``,
``Infinity`` and lone surrogate escapes, which is exactly what an attacker sends.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.core.wire import UNSAFE_TEXT
from gateway.demo.population import companies
from gateway.registry.keystore import department_private_jwk
from tests.inprocess import Gateway

JWT = {"Content-Type": "application/jwt"}
LOOKUP_TYP = "yiwang-lookup+jwt"
PURPOSE = {"item": "000201002000", "case": "HOSTILE-0001", "reason": "敌意输入测试"}
QUERY = {
    "resource": "enterprise-registration",
    "fields": ["name", "status"],
}

# Who looks up what, legitimately: the three consumers of enterprise-registration.
HONEST = {
    "service-centre": ("000201002000", ["name", "status"]),
    "tax": ("000109001000", ["name", "status"]),
    "hrss": ("000111001000", ["name", "status"]),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Sender:
    """Signs whatever it is given with a real department key (as a JWS, or raw bytes)."""

    def __init__(self, gateway: Gateway, department: str) -> None:
        self.gateway = gateway
        self.department = department
        self.key = department_private_jwk(gateway.keys_dir, department)

    def claims(self, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.department,
            "aud": "yiwang-gateway",
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        }
        return base | extra

    def lookup_claims(self, subject: str, **extra: Any) -> dict[str, Any]:
        item, fields = HONEST[self.department]
        return (
            self.claims(
                purpose={**PURPOSE, "item": item},
                operator="clerk-x",
                query={
                    "resource": "enterprise-registration",
                    "subject": {"type": "uscc", "id": subject},
                    "fields": fields,
                },
            )
            | extra
        )

    def sign(self, claims: dict[str, Any], typ: str = LOOKUP_TYP, **header: Any) -> str:
        # In the key's algorithm: ES256, EdDSA, or SM2 (区税务局's key: every attack here is
        # tried against an SM2 department too).
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return self.key.sign(payload, headers={"typ": typ, **header})

    def sign_raw(self, header: str | bytes, payload: str | bytes) -> str:
        head = header.encode() if isinstance(header, str) else header
        body = payload.encode() if isinstance(payload, str) else payload
        signing_input = f"{_b64(head)}.{_b64(body)}".encode()
        return f"{signing_input.decode()}.{_b64(self.key.signature(signing_input))}"

    def header(self, typ: str = LOOKUP_TYP) -> str:
        return json.dumps({"alg": self.key.algorithm_name, "typ": typ, "kid": self.key.key_id})

    def post(self, path: str, token: str) -> httpx.Response:
        return self.gateway.http.post(
            self.gateway.url + path, content=token.encode(), headers=JWT, timeout=10
        )


def uscc(n: int = 0) -> str:
    return companies()[n % 40].uscc


def assert_refused_on_record(
    gateway: Gateway, response: httpx.Response, status: int, reason_code: str | None = None
) -> dict[str, Any]:
    """The documented refusal, and its audit entry — storable, and what it says."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    index = problem["audit_index"]
    entry = dict(gateway.audit_entry(index))
    assert entry["decision"] == "refused"
    if reason_code is not None:
        assert entry["reason_code"] == reason_code, entry
    for value in entry.values():
        if isinstance(value, str):
            assert not UNSAFE_TEXT.search(value), entry
    return problem


# --- 1, 2: time claims that are not finite whole seconds -----------------------------------

NON_FINITE = [float("nan"), float("inf"), -float("inf"), 10**400, 2**64, 1.8e9 + 0.5]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf", "10^400", "2^64", "frac"])
@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_lookups_with_non_finite_times_are_refused_and_never_replayable(
    gateway: Gateway, claim: str, value: float
) -> None:
    sender = Sender(gateway, "service-centre")
    claims = sender.lookup_claims(uscc(1))
    claims[claim] = value
    if claim == "iat":
        claims["exp"] = int(time.time()) + 10 * 365 * 86400  # would lift the lifetime cap
    token = sender.sign(claims)
    for _ in range(2):  # and the same again: never answered, never a 500
        response = sender.post("/v1/lookups", token)
        problem = assert_refused_on_record(gateway, response, 401)
        assert problem["title"] == "The request token was not accepted"


def test_nan_exp_is_refused_on_every_signed_endpoint(gateway: Gateway) -> None:
    sender = Sender(gateway, "service-centre")
    nan = {"exp": float("nan")}
    batch = sender.claims(
        purpose=PURPOSE,
        operator="clerk-x",
        queries=[{**QUERY, "subject": {"type": "uscc", "id": uscc(2)}}],
    )
    verification = sender.claims(purpose=PURPOSE, operator="clerk-x", licence_id="x")
    for path, claims, typ in [
        ("/v1/lookups:batch", batch, "yiwang-lookup-batch+jwt"),
        ("/v1/verifications", verification, "yiwang-verification+jwt"),
        ("/v1/manifests", sender.claims(purpose=PURPOSE, operator="c"), "yiwang-manifest+jwt"),
        ("/v1/cases:close", sender.claims(case="C-1", operator="c"), "yiwang-case-close+jwt"),
    ]:
        response = sender.post(path, sender.sign(claims | nan, typ=typ))
        assert_refused_on_record(gateway, response, 401)
    leaf = sender.sign(sender.claims(operator="c", index=1) | nan, typ="yiwang-audit-leaf+jwt")
    response = gateway.http.get(
        f"{gateway.url}/v1/audit/entries/1/leaf", headers={"Request-Token": leaf}, timeout=10
    )
    assert_refused_on_record(gateway, response, 401)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_time_literals_written_by_hand_are_refused(gateway: Gateway, literal: str) -> None:
    sender = Sender(gateway, "tax")
    claims = json.dumps(sender.lookup_claims(uscc(3)), ensure_ascii=False)
    payload = claims.replace('"exp": ', f'"exp": {literal}, "_": ', 1)
    response = sender.post("/v1/lookups", sender.sign_raw(sender.header(), payload))
    assert_refused_on_record(gateway, response, 401)


# --- 3: headers of the wrong JSON types, or nested deep ---------------------------------------


@pytest.mark.parametrize(
    "alg",
    [["ES256"], {"alg": "ES256"}, None, 256, True],
    ids=["list", "object", "null", "int", "bool"],
)
def test_alg_of_the_wrong_type_is_refused(gateway: Gateway, alg: Any) -> None:
    sender = Sender(gateway, "tax")
    header = json.dumps({"alg": alg, "typ": LOOKUP_TYP, "kid": sender.key.key_id})
    token = sender.sign_raw(header, json.dumps(sender.lookup_claims(uscc(4))))
    assert_refused_on_record(gateway, sender.post("/v1/lookups", token), 401)


def test_deeply_nested_header_and_batch_payload_are_refused(gateway: Gateway) -> None:
    sender = Sender(gateway, "tax")
    deep = "[" * 1200 + "]" * 1200
    header = f'{{"alg":"ES256","typ":"{LOOKUP_TYP}","kid":"{sender.key.key_id}","x":{deep}}}'
    token = sender.sign_raw(header, json.dumps(sender.lookup_claims(uscc(5))))
    assert_refused_on_record(gateway, sender.post("/v1/lookups", token), 401)
    deeper = "[" * 10_000 + "]" * 10_000
    claims = json.dumps(sender.claims(purpose=PURPOSE, operator="c"))
    payload = claims[:-1] + f', "queries": {deeper}}}'
    token = sender.sign_raw(sender.header("yiwang-lookup-batch+jwt"), payload)
    response = sender.post("/v1/lookups:batch", token)
    assert_refused_on_record(gateway, response, 401, "token:payload-malformed")


def test_header_member_names_never_reach_the_log(gateway: Gateway) -> None:
    # No key is needed for this one: the header is read before any signature.
    header = '{"alg":"ES256","typ":"yiwang-lookup+jwt","kid":"k","\\u0000":"x","\\u202e":1}'
    token = f"{_b64(header.encode())}.{_b64(b'{}')}.{_b64(b'sig')}"
    response = gateway.http.post(
        gateway.url + "/v1/lookups", content=token, headers=JWT, timeout=10
    )
    problem = assert_refused_on_record(gateway, response, 401, "token:header-not-allowed:other")
    entry = gateway.audit_entry(problem["audit_index"])
    assert "\x00" not in str(entry)


# --- 4: text no store takes -----------------------------------------------------------------


def test_a_lone_surrogate_in_a_claim_is_refused(gateway: Gateway) -> None:
    sender = Sender(gateway, "service-centre")
    claims = sender.lookup_claims(uscc(6))
    claims["purpose"]["reason"] = "\ud800"  # json.dumps writes it as the escape \ud800
    assert_refused_on_record(gateway, sender.post("/v1/lookups", sender.sign(claims)), 401)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("purpose.reason", "a\x00b"),
        ("purpose.reason", "\u202e反向"),
        ("purpose.reason", "line\nbreak"),
        ("purpose.case", "C\x00"),
        ("operator", "clerk\x00"),
        ("query.subject.id", "\x00"),
    ],
)
def test_control_characters_are_refused_by_field(gateway: Gateway, where: str, value: str) -> None:
    sender = Sender(gateway, "service-centre")
    claims = sender.lookup_claims(uscc(7))
    target: dict[str, Any] = claims
    *path, last = where.split(".")
    for part in path:
        target = target[part]
    target[last] = value
    problem = assert_refused_on_record(
        gateway, sender.post("/v1/lookups", sender.sign(claims)), 400, "invalid-input"
    )
    assert problem["field"] == where


def test_one_poisoned_request_among_fifty_fails_only_itself(gateway: Gateway) -> None:
    senders = [Sender(gateway, d) for d in HONEST]
    honest = [s.sign(s.lookup_claims(uscc(10 + n))) for n, s in enumerate(senders * 17)][:50]
    poisoner = Sender(gateway, "service-centre")
    poisoned = [
        poisoner.sign(poisoner.lookup_claims(uscc(1), purpose={**PURPOSE, "reason": bad}))
        for bad in ("\ud800", "\x00", "a\udfff")
    ]

    def send(token: str) -> int:
        return gateway.http.post(
            gateway.url + "/v1/lookups", content=token, headers=JWT, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=26) as pool:
        mixed = honest[:25] + poisoned + honest[25:]
        statuses = list(pool.map(send, mixed))
    assert statuses[:25] + statuses[28:] == [200] * 50
    assert all(s in (400, 401) for s in statuses[25:28])


# --- 6: parameters beyond any column's range --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (
            "/v1/audit/checkpoints",
            {"limit": 990, "before": 145056495256919301966266368000},
            "before",
        ),
        ("/v1/audit/checkpoints", {"before": 2**63}, "before"),
        ("/v1/audit/proofs/inclusion", {"index": 2**64, "size": 1}, "index"),
        ("/v1/audit/proofs/inclusion", {"index": 1, "size": -(2**70)}, "size"),
        ("/v1/audit/proofs/consistency", {"from": 1, "to": 10**30}, "to"),
        ("/v1/audit/checkpoints", {"limit": "NaN"}, "limit"),
        ("/v1/audit/checkpoints", {"limit": "1e3"}, "limit"),
    ],
)
def test_integer_parameters_beyond_range_name_the_parameter(
    gateway: Gateway, path: str, params: dict[str, Any], field: str
) -> None:
    response = gateway.http.get(gateway.url + path, params=params, timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/entries/99999999999999999999999/leaf",
        "/v1/uploads/x/versions/99999999999999999999999/rejections",
    ],
)
def test_path_integers_beyond_range_are_refused(gateway: Gateway, path: str) -> None:
    response = gateway.http.get(gateway.url + path, timeout=10)
    assert response.status_code in (400, 404), response.text
    assert response.status_code < 500


@pytest.mark.parametrize("raw", ["%00", "%ED%A0%80", "a%C0%80", "%E2%80%AE"])
def test_unsafe_text_in_query_and_path_is_refused(gateway: Gateway, raw: str) -> None:
    auditor = (gateway.keys_dir / "operators" / "auditor.token").read_text().strip()
    bearer = {"Authorization": f"Bearer {auditor}"}
    url = f"{gateway.url}/v1/audit/entries?department={raw}"
    response = gateway.http.get(url, headers=bearer, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "department"
    seal = gateway.http.get(f"{gateway.url}/v1/status-lists/{raw}", timeout=10)
    assert 400 <= seal.status_code < 500, seal.text
