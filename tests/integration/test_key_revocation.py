"""Revoking a department key is an administrator's audited act, and the key stops verifying
requests in every worker within a second (each watches the registry)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.demo.population import companies, people
from gateway.sdk import GatewayProblem, Unauthorized
from tests.support import GatewayProcess, running_gateway

QUERY = {
    "resource": "resident-identity",
    "subject": ("resident-id", people()[0].id_number),
    "fields": ["name"],
    "item": "000105001000",
    "case": "KEY-2026-0001",
    "reason": "最低生活保障申请：核验身份",
    "operator": "clerk-ca",
}


@pytest.fixture(params=["embedded", "server"])
def own_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """A gateway of this test's own: revoking a key must not touch the shared ones."""
    data_dir = tmp_path_factory.mktemp(f"revocation-{request.param}")
    with running_gateway(data_dir, keys_dir, server=request.param == "server") as gw:
        yield gw


def _admin(gw: GatewayProcess) -> dict[str, str]:
    token = (gw.keys_dir / "operators" / "admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def _allowed(client: object) -> bool:
    try:
        client.lookup(**QUERY)  # type: ignore[attr-defined]
    except Unauthorized:
        return False
    except GatewayProblem as exc:  # anything else is a failure of the test's premise
        raise AssertionError(exc.problem) from None
    return True


def test_a_revoked_key_is_refused_everywhere_within_seconds(own_gateway: GatewayProcess) -> None:
    gw = own_gateway
    with gw.client("civil-affairs") as client:
        assert _allowed(client)
        url = f"{gw.url}/v1/departments/civil-affairs/keys/{client.key_id}/revoke"
        assert httpx.post(url, json={"reason": "x"}).status_code == 401
        revoked = httpx.post(url, json={"reason": "密钥疑似泄露"}, headers=_admin(gw))
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["previous"] == "active"
        # every worker must refuse it within a few seconds, and then keep refusing
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_allowed(client) for _ in range(6)):
            time.sleep(0.2)
        assert not any(_allowed(client) for _ in range(10))
    revocation = None
    for index in range(gw.audit_count(), 0, -1):
        entry = gw.audit_entry(index)
        if entry["event"] == "key:department:revoked":
            revocation = entry
            break
    assert revocation is not None
    assert revocation["department"] == "civil-affairs"
    assert revocation["reason"] == "密钥疑似泄露"
    unknown = httpx.post(
        f"{gw.url}/v1/departments/civil-affairs/keys/nope/revoke",
        json={"reason": "x"},
        headers=_admin(gw),
    )
    assert unknown.status_code == 400
    assert unknown.json()["field"] == "kid"
    # other departments' keys are untouched
    with gw.client("service-centre") as centre:
        answer = centre.lookup(
            resource="enterprise-registration",
            subject=("uscc", companies()[0].uscc),
            fields=["name"],
            item="000201002000",
            case="KEY-2026-0002",
            reason="企业变更登记：核验营业执照",
            operator="clerk-1",
        )
    assert answer.data["name"] == companies()[0].name
