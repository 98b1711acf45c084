"""A department learns the precise reason of its own refusals (``POST /v1/refusals``) while
every token failure stays one opaque 401: forged, expired and replayed tokens are refused,
then the department's signed refusals request names each by its token's hash with the
reason the log recorded; another department sees none of them; the read is audited; the
request is bounded and paginated. In process, both setups; the CLI against a served gateway."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import jwt
import pytest

from gateway.core.protocol import TokenType
from gateway.oversight.refusals import REFUSAL_EVENTS, explain
from gateway.sdk import BadRequest, Replayed, SignedAnswer, Unauthorized
from tests.inprocess import ALSO_ON_CLUSTER, Gateway
from tests.integration.test_lookups import QUERY, post_raw
from tests.support import GatewayProcess, gateway_command

OPAQUE_TITLE = "The request token was not accepted"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _by_request(answer: SignedAnswer) -> dict[str, dict[str, Any]]:
    return {r["request_sha256"]: r for r in answer.claims["refusals"]}


def _forged(token: str) -> str:
    """``token`` with its payload changed after signing (same header, same signature)."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["query"]["fields"] = ["name", "legal_representative"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


@ALSO_ON_CLUSTER
def test_opaque_401_then_the_department_reads_the_precise_reasons(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        forged = _forged(c.lookup_token(fields=["name"], **QUERY))
        now = time.time()
        expired = c.lookup_token(fields=["name"], **QUERY, now=now - 400, lifetime=60)
        replayed = c.lookup_token(fields=["name"], **QUERY)
        c.send_lookup(replayed)

        answers = []
        for token in (forged, expired):
            response = post_raw(gateway, token.encode())
            assert response.status_code == 401
            problem = response.json()
            assert problem["title"] == OPAQUE_TITLE
            answers.append({k: v for k, v in problem.items() if k != "audit_index"})
        # One opaque answer: a forged and an expired token get the same problem.
        assert answers[0] == answers[1]
        assert "expired" not in json.dumps(answers[0])
        with pytest.raises(Replayed):
            c.send_lookup(replayed)

        answer = c.refusals(operator="dev-ops-1")

    assert answer.claims["department"] == "service-centre"
    seen = _by_request(answer)
    assert seen[_sha256(forged)]["reason_code"] == "token:bad-signature"
    assert "签名验证失败" in seen[_sha256(forged)]["reason"]
    assert seen[_sha256(expired)]["reason_code"] == "token:expired"
    assert "已过期" in seen[_sha256(expired)]["reason"]
    replay = seen[_sha256(replayed)]
    assert replay["reason_code"] == "replay"
    assert replay["event"] == "lookup:record:refused"
    # Each refusal names its own audit entry, and that entry says the same.
    for token in (forged, expired, replayed):
        shown = seen[_sha256(token)]
        entry = gateway.audit_entry(shown["audit_index"])
        assert entry["reason_code"] == shown["reason_code"]
        assert entry["department"] == "service-centre"
    # Newest first.
    indexes = [r["audit_index"] for r in answer.claims["refusals"]]
    assert indexes == sorted(indexes, reverse=True)


def test_another_department_does_not_see_them(gateway: Gateway) -> None:
    with gateway.client("service-centre") as centre:
        forged = _forged(centre.lookup_token(fields=["name"], **QUERY))
        assert post_raw(gateway, forged.encode()).status_code == 401
        assert _sha256(forged) in _by_request(centre.refusals(operator="dev-ops-1"))
    with gateway.client("market") as market:
        answer = market.refusals(operator="dev-ops-2")
    assert answer.claims["department"] == "market"
    assert _sha256(forged) not in _by_request(answer)
    assert all(r["request_sha256"] != _sha256(forged) for r in answer.claims["refusals"])


def test_a_token_naming_no_registered_key_is_nobodys(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        token = c.sign(
            {"iss": "service-centre", "aud": "yiwang-gateway"}, headers={"kid": "no-such-key"}
        )
        response = post_raw(gateway, token.encode())
        assert response.status_code == 401
        assert gateway.audit_entry(response.json()["audit_index"])["department"] is None
        assert _sha256(token) not in _by_request(c.refusals(operator="dev-ops-1"))


def test_the_read_is_audited_and_signed_for_the_department(gateway: Gateway) -> None:
    with gateway.client("tax") as c:
        answer = c.refusals(operator="dev-ops-3", limit=5)
    assert jwt.get_unverified_header(answer.token)["typ"] == TokenType.REFUSALS_RESULT
    assert answer.claims["aud"] == "tax"
    entry = gateway.audit_entry(answer.claims["audit"]["index"])
    assert entry["event"] == "audit:refusals:read"
    assert entry["decision"] == "allowed"
    assert entry["department"] == "tax"
    assert entry["operator"] == "dev-ops-3"


def test_pages_follow_one_another(gateway: Gateway) -> None:
    with gateway.client("police") as c:
        tokens = []
        for _ in range(3):
            token = _forged(c.lookup_token(fields=["name"], **QUERY))
            assert post_raw(gateway, token.encode()).status_code == 401
            tokens.append(_sha256(token))
        first = c.refusals(operator="dev-ops-4", limit=2)
        assert len(first.claims["refusals"]) == 2
        assert first.claims["next"] == first.claims["refusals"][-1]["audit_index"]
        second = c.refusals(operator="dev-ops-4", limit=2, before=first.claims["next"])
    listed = [*first.claims["refusals"], *second.claims["refusals"]]
    indexes = [r["audit_index"] for r in listed]
    assert indexes == sorted(set(indexes), reverse=True)  # no entry twice, none skipped back
    assert set(tokens) <= {r["request_sha256"] for r in listed}


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"since": lambda: int(time.time()) - 8 * 86400}, "since"),
        ({"since": lambda: int(time.time()) + 3600}, "since"),
        ({"before": "12"}, "before"),
        ({"operator": ""}, "operator"),
    ],
)
def test_a_bad_request_is_400_naming_the_claim_and_is_itself_listed(
    gateway: Gateway, claims: dict[str, Any], field: str
) -> None:
    values = {k: v() if callable(v) else v for k, v in claims.items()}
    with gateway.client("civil-affairs") as c:
        token = c.sign(
            {**c._request_claims(60, None), "operator": "dev-ops-5", **values},
            typ=TokenType.REFUSALS,
        )
        with pytest.raises(BadRequest) as err:
            c._send("/v1/refusals", token, TokenType.REFUSALS_RESULT)
        assert err.value.problem["field"] == field
        listed = _by_request(c.refusals(operator="dev-ops-5"))
    assert listed[_sha256(token)]["event"] == "audit:refusals:refused"
    assert listed[_sha256(token)]["reason_code"] == "invalid-input"
    assert field in listed[_sha256(token)]["detail"]


def test_a_refusals_request_with_a_bad_token_is_an_opaque_401(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        token = c.sign(
            {**c._request_claims(60, time.time() - 400), "operator": "dev-ops-1"},
            typ=TokenType.REFUSALS,
        )
        with pytest.raises(Unauthorized) as err:
            c._send("/v1/refusals", token, TokenType.REFUSALS_RESULT)
        assert err.value.problem["title"] == OPAQUE_TITLE
        assert _by_request(c.refusals(operator="dev-ops-1"))[_sha256(token)]["event"] == (
            "audit:refusals:refused"
        )


def test_every_refused_event_of_a_department_request_is_listed_or_deliberately_not() -> None:
    from gateway.core.protocol import AuditEvent

    operators_own = {
        AuditEvent.KEY_REFUSED,
        AuditEvent.POLICY_REFUSED,
        AuditEvent.CONSOLE_CSRF_REFUSED,
    }
    refused = {e for e in AuditEvent if e.endswith(":refused")}
    assert refused - operators_own == set(REFUSAL_EVENTS) - {AuditEvent.INTERNAL_ERROR}
    assert explain("token:missing-jti") == "令牌缺少必需的声明 jti"
    assert explain("no-such-code") is None


def test_the_command_prints_the_reasons(embedded_gateway: GatewayProcess) -> None:
    with embedded_gateway.client("market") as c:
        forged = _forged(c.lookup_token(fields=["name"], **QUERY))
    response = embedded_gateway.http.post(
        embedded_gateway.url + "/v1/lookups",
        content=forged.encode(),
        headers={"Content-Type": "application/jwt"},
    )
    assert response.status_code == 401
    env = {"GATEWAY_KEYS_DIR": str(embedded_gateway.keys_dir)}
    url = ("--url", embedded_gateway.url)
    shown = gateway_command("refusals", "--as", "market", "--operator", "ops", *url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"request_sha256 {_sha256(forged)}" in shown.stdout
    assert "签名验证失败" in shown.stdout
    as_json = gateway_command(
        "refusals", "--as", "market", "--operator", "ops", "--json", *url, env=env
    )
    assert as_json.returncode == 0, as_json.stderr
    claims = json.loads(as_json.stdout)
    assert any(r["request_sha256"] == _sha256(forged) for r in claims["refusals"])
