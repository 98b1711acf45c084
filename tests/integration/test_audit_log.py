"""The tamper-evident log over real HTTP, on both setups: checkpoints signed every second
while entries arrive, leaves, inclusion proofs for lookup answers, consistency between
checkpoints (all checked with joserfc and the RFC 9162 verifiers), the CLI's verify, and an
outside witness that notices a rewritten log.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwt as jose_jwt

from gateway.audit.tree import leaf_bytes
from gateway.audit.verify import verify_log
from gateway.core import merkle
from gateway.demo.population import companies
from gateway.storage.schema import audit_entries
from tests.inprocess import Gateway
from tests.support import (
    CommandResult,
    GatewayProcess,
    es256_key_set,
    gateway_command,
    running_gateway,
)
from tests.unit.test_audit_tamper import rebuild_tree

QUERY: dict[str, Any] = {
    "resource": "enterprise-registration",
    "fields": ["name", "status"],
    "item": "000201002000",
    "case": "AUD-2026-0001",
    "reason": "审计日志测试",
    "operator": "clerk-aud",
}


def lookups(gateway: Gateway, count: int) -> list[int]:
    """``count`` released lookups by the service centre; their audit indexes."""
    with gateway.client("service-centre") as client:
        return [
            client.lookup(subject=("uscc", companies()[n % 50].uscc), **QUERY).audit_index
            for n in range(count)
        ]


def checkpoint_covering(gateway: Gateway, index: int) -> dict[str, Any]:
    """The first signed checkpoint whose size reaches ``index`` (checked with joserfc)."""
    keys = es256_key_set(gateway.http.get(gateway.url + "/.well-known/jwks.json").json())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = gateway.http.get(gateway.url + "/v1/audit/checkpoint")
        if response.status_code == 200:
            token = jose_jwt.decode(response.text, keys, algorithms=["ES256"])
            assert token.header["typ"] == "yiwang-audit-checkpoint+jwt"
            if token.claims["size"] >= index:
                return {**token.claims, "token": response.text}
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint covered entry {index} within 5 s")


def auditor(gateway: Gateway) -> dict[str, str]:
    token = (gateway.keys_dir / "operators" / "auditor.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def test_every_answer_is_provably_in_the_signed_tree(gateway: Gateway) -> None:
    indexes = lookups(gateway, 5)
    first = checkpoint_covering(gateway, indexes[0])
    latest = checkpoint_covering(gateway, indexes[-1])
    size, root = latest["size"], bytes.fromhex(latest["root"])
    for index in indexes:
        leaf = gateway.http.get(
            f"{gateway.url}/v1/audit/entries/{index}/leaf", headers=auditor(gateway)
        )
        assert leaf.status_code == 200, leaf.text
        assert json.loads(leaf.content)["index"] == index
        assert json.loads(leaf.content)["event"] == "lookup:record:released"
        proof = gateway.http.get(
            gateway.url + "/v1/audit/proofs/inclusion", params={"index": index, "size": size}
        ).json()
        assert merkle.verify_inclusion(
            merkle.leaf_hash(leaf.content),
            index - 1,
            size,
            [bytes.fromhex(h) for h in proof["proof"]],
            root,
        )
        # the same proof does not vouch for another leaf
        assert not merkle.verify_inclusion(
            merkle.leaf_hash(leaf.content + b" "),
            index - 1,
            size,
            [bytes.fromhex(h) for h in proof["proof"]],
            root,
        )
    if first["size"] < size:
        consistency = gateway.http.get(
            gateway.url + "/v1/audit/proofs/consistency",
            params={"from": first["size"], "to": size},
        ).json()
        assert merkle.verify_consistency(
            first["size"],
            size,
            bytes.fromhex(first["root"]),
            root,
            [bytes.fromhex(h) for h in consistency["proof"]],
        )
    older = gateway.http.get(gateway.url + "/v1/audit/checkpoints", params={"limit": 5}).json()
    assert [c["size"] for c in older] == sorted((c["size"] for c in older), reverse=True)


def _leaf_token(gateway: Gateway, department: str, index: int) -> str:
    with gateway.client(department) as client:
        iat = int(time.time())
        return client.sign(
            {
                "iss": department,
                "aud": client.audience,
                "iat": iat,
                "exp": iat + 60,
                "jti": f"leaf-{index}-{iat}-{department}",
                "operator": "auditor-1",
                "index": index,
            },
            typ="yiwang-audit-leaf+jwt",
        )


def test_leaves_need_credentials_and_proofs_name_bad_sizes(gateway: Gateway) -> None:
    [index] = lookups(gateway, 1)
    url = f"{gateway.url}/v1/audit/entries/{index}/leaf"
    assert gateway.http.get(url).status_code == 401  # no auditor token, no department token
    by_owner = gateway.http.get(
        url, headers={"Request-Token": _leaf_token(gateway, "service-centre", index)}
    )
    assert by_owner.status_code == 200
    assert json.loads(by_owner.content)["index"] == index
    # Another department may not read it: the keyed subject would tell it whom the service
    # centre looked up. The refusal is on the record.
    by_other = gateway.http.get(url, headers={"Request-Token": _leaf_token(gateway, "tax", index)})
    assert by_other.status_code == 403
    assert by_other.json()["reason"] == "not-own-entry"
    refused = gateway.http.get(
        gateway.url + "/v1/audit/entries",
        params={"event": "audit:leaf:refused", "department": "tax"},
        headers=auditor(gateway),
    ).json()["entries"]
    assert [e["reason_code"] for e in refused] == ["not-own-entry"]
    assert by_other.json()["audit_index"] == refused[0]["index"]
    too_big = gateway.http.get(
        gateway.url + "/v1/audit/proofs/inclusion", params={"index": 1, "size": 10**9}
    )
    assert too_big.status_code == 400
    assert too_big.json()["field"] == "size"
    backwards = gateway.http.get(
        gateway.url + "/v1/audit/proofs/consistency", params={"from": index + 1, "to": index}
    )
    assert backwards.status_code == 400
    assert backwards.json()["field"] == "from"


def test_concurrent_requests_from_two_workers_make_one_gap_free_tree(
    server_gateway: GatewayProcess,
) -> None:
    with ThreadPoolExecutor(8) as pool:
        indexes = [
            i for batch in pool.map(lambda _: lookups(server_gateway, 10), range(8)) for i in batch
        ]
    assert len(set(indexes)) == 80
    checkpoint_covering(server_gateway, max(indexes))
    engine = sa.create_engine(server_gateway.database_url)
    try:
        jwks = server_gateway.http.get(server_gateway.url + "/.well-known/jwks.json").json()
        report = verify_log(engine, gateway_jwks=jwks, issuer="yiwang-gateway")
    finally:
        engine.dispose()
    assert report.ok, report.problems
    assert report.entries >= max(indexes)
    assert report.checkpoints >= 1


def _gateway_cli(gw: GatewayProcess, *args: str) -> CommandResult:
    env = {k: v for k, v in gw.environment().items() if k.startswith("GATEWAY_")}
    return gateway_command(*args, env=env)


@pytest.mark.long
def test_verify_and_an_outside_witness_catch_a_rewritten_log(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> None:
    with running_gateway(tmp_path_factory.mktemp("witnessed"), keys_dir, server=False) as gw:
        state = gw.data_dir / "witness.json"
        indexes = lookups(gw, 6)
        checkpoint_covering(gw, indexes[-1])
        first = _gateway_cli(gw, "audit", "witness", gw.url, "--state", str(state))
        assert first.returncode == 0, first.stderr
        assert "first checkpoint" in first.stdout
        more = lookups(gw, 3)
        checkpoint_covering(gw, more[-1])
        second = _gateway_cli(gw, "audit", "witness", gw.url, "--state", str(state))
        assert second.returncode == 0, second.stderr
        assert "consistent" in second.stdout
        verified = _gateway_cli(gw, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "OK" in verified.stdout

        # A forger edits an early entry and rewrites the stored tree to match, so the
        # gateway goes on signing checkpoints over the forged tree.
        engine = sa.create_engine(gw.database_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    audit_entries.update()
                    .where(audit_entries.c.idx == indexes[0])
                    .values(department="police")
                )
                rebuild_tree(conn)
                forged = (
                    conn.execute(sa.select(audit_entries).where(audit_entries.c.idx == indexes[0]))
                    .mappings()
                    .one()
                )
                assert json.loads(leaf_bytes(forged))["department"] == "police"
        finally:
            engine.dispose()
        later = lookups(gw, 2)
        checkpoint_covering(gw, later[-1])
        caught = _gateway_cli(gw, "audit", "witness", gw.url, "--state", str(state))
        assert caught.returncode == 1
        assert "INCONSISTENT" in caught.stdout
        report = _gateway_cli(gw, "audit", "verify")
        assert report.returncode == 1
        assert "checkpoint of size" in report.stdout


def test_an_answer_names_the_entry_its_proof_is_for(gateway: Gateway) -> None:
    with gateway.client("service-centre") as client:
        answer = client.lookup(subject=("uscc", companies()[3].uscc), **QUERY)
    checkpoint = checkpoint_covering(gateway, answer.audit_index)
    proof = gateway.http.get(
        gateway.url + "/v1/audit/proofs/inclusion",
        params={"index": answer.audit_index, "size": checkpoint["size"]},
    ).json()
    assert proof["root"] == checkpoint["root"]
    assert proof["leaf_index"] == answer.audit_index - 1
