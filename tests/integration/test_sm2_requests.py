"""A department whose system signs with SM2 (国密, docs/sm2.md) looks up like any other: its
SM2 key is registered, its SM2-signed request is verified, and the attack cases of the other
algorithms are refused for SM2 keys too, with the same opaque 401 and the precise reason in
the log. The gateway's answer is ES256 (SM2 answers are the next step of issue 16)."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from gateway.core import sm2
from gateway.core.algorithms import sign_compact
from gateway.core.protocol import TokenType
from gateway.demo.population import companies
from gateway.registry.store import sync_registry
from tests.inprocess import InProcessGateway, in_process_gateway

COMPANY = companies()[11]
CONSUMER = "tax"  # the demo's tax bureau holds a grant on enterprise records


@pytest.fixture(scope="module")
def sm2_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[tuple[InProcessGateway, sm2.SM2PrivateKey]]:
    """A gateway where the tax bureau has registered an SM2 key beside its demo key."""
    with in_process_gateway(tmp_path_factory.mktemp("sm2"), keys_dir) as gw:
        key = sm2.generate_private_key()
        runtime = gw.runtime
        sync_registry(
            runtime.engine,
            department_list=runtime.policy.current.departments.values(),
            public_jwks={CONSUMER: [key.public_key.jwk()]},
            now=dt.datetime.now(dt.UTC),
        )
        deadline = time.monotonic() + 10
        while runtime.exchanges.verifier.keyring.get(key.kid) is None:
            assert time.monotonic() < deadline, "the key watcher did not load the SM2 key"
            time.sleep(0.05)
        yield gw, key


def claims(gw: InProcessGateway, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": CONSUMER,
        "aud": gw.settings.gateway_id,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        "purpose": {"item": "000109001000", "case": "SM2-2026-0001", "reason": "国密核验"},
        "operator": "tax-clerk-9",
        "query": {
            "resource": "enterprise-registration",
            "subject": {"type": "uscc", "id": COMPANY.uscc},
            "fields": ["name", "status"],
        },
        **changes,
    }


def signed(key: sm2.SM2PrivateKey, body: dict[str, Any]) -> str:
    return sign_compact(
        msgspec.json.encode(body),
        key=key,
        alg="SM2",
        headers={"kid": key.kid, "typ": TokenType.LOOKUP},
    )


def post(gw: InProcessGateway, token: str | bytes) -> httpx.Response:
    return gw.http.post(
        gw.url + "/v1/lookups",
        content=token.encode() if isinstance(token, str) else token,
        headers={"Content-Type": "application/jwt"},
    )


def test_an_sm2_department_looks_up(
    sm2_gateway: tuple[InProcessGateway, sm2.SM2PrivateKey],
) -> None:
    gw, key = sm2_gateway
    token = signed(key, claims(gw))
    response = post(gw, token)
    assert response.status_code == 200, response.text
    with gw.client(CONSUMER) as client:
        answer = client.verify_answer(response.text, request_token=token)
    assert answer.data == {"name": COMPANY.name, "status": COMPANY.status}
    entry = gw.audit_entry(answer.audit_index)
    assert entry["event"] == "lookup:record:released"
    assert entry["department"] == CONSUMER


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refusal(gw: InProcessGateway, token: str | bytes) -> str:
    response = post(gw, token)
    assert response.status_code == 401, response.text
    problem = response.json()
    assert problem["type"] == "urn:yiwang:problem:token-rejected"
    entry = gw.audit_entry(problem["audit_index"])
    assert entry["decision"] == "refused"
    return str(entry["reason_code"])


def test_sm2_attack_cases_are_refused_like_any_token_failure(
    sm2_gateway: tuple[InProcessGateway, sm2.SM2PrivateKey],
) -> None:
    gw, key = sm2_gateway
    good = signed(key, claims(gw))
    head, payload, signature = good.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    # A signature that does not verify, one of the wrong length, one of zeros.
    assert _refusal(gw, f"{head}.{payload}.{_b64(flipped)}") == "token:bad-signature"
    assert _refusal(gw, f"{head}.{payload}.{_b64(raw[:63])}") == "token:bad-signature"
    assert _refusal(gw, f"{head}.{payload}.{_b64(bytes(64))}") == "token:bad-signature"
    # An SM2 key named under an ES256 header, and an ES256 key under an SM2 header.
    es_header = _b64(msgspec.json.encode({"alg": "ES256", "kid": key.kid, "typ": TokenType.LOOKUP}))
    assert _refusal(gw, f"{es_header}.{payload}.{signature}") == "token:alg-not-allowed-for-key"
    with gw.client("service-centre") as client:  # an ES256 department
        assert client.algorithm == "ES256"
        es_kid = client.key_id
    sm2_header = _b64(msgspec.json.encode({"alg": "SM2", "kid": es_kid, "typ": TokenType.LOOKUP}))
    assert _refusal(gw, f"{sm2_header}.{payload}.{signature}") == "token:alg-not-allowed-for-key"
    # Another department's claims under the SM2 key: the key's owner decides who sent it.
    other = signed(key, claims(gw, iss="police"))
    assert _refusal(gw, other) == "token:iss-not-key-owner"
    # The same token twice: the second is a replay.
    assert post(gw, good).status_code == 200
    assert post(gw, good).status_code == 409


def test_a_point_off_the_curve_is_never_registered() -> None:
    """An SM2 JWK whose point is not on the curve is refused when the registry parses it."""
    from gateway.core.keyring import DepartmentKey, KeyStatus
    from gateway.errors import ConfigurationError

    jwk = sm2.generate_private_key().public_key.jwk()
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 1
    bad = {**jwk, "y": _b64(bytes(y))}
    bad.pop("kid")
    with pytest.raises(ConfigurationError, match="key of tax"):
        DepartmentKey.from_jwk(bad, department="tax", status=KeyStatus.ACTIVE)
