"""The console script against a running embedded gateway: `gateway lookup` and `gateway demo`."""

from __future__ import annotations

import json

from gateway.demo.population import companies
from tests.support import CommandResult, GatewayProcess, gateway_command


def _run(gw: GatewayProcess, *args: str, process: bool = False) -> CommandResult:
    return gateway_command(
        *args, "--url", gw.url, env={"GATEWAY_KEYS_DIR": str(gw.keys_dir)}, process=process
    )


def test_lookup_prints_the_verified_answer(embedded_gateway: GatewayProcess) -> None:
    company = companies()[3]
    result = _run(
        embedded_gateway,
        "lookup",
        "--as",
        "tax",
        "--resource",
        "enterprise-registration",
        "--subject",
        f"uscc:{company.uscc}",
        "--fields",
        "name,registered_capital",
        "--item",
        "000109001000",
        "--case",
        "BJ-7",
        "--reason",
        "开业登记核验",
        "--operator",
        "clerk-3",
        process=True,  # the console script itself, once; the other commands run in process
    )
    assert result.returncode == 0, result.stderr
    claims = json.loads(result.stdout)
    assert claims["data"] == {
        "name": company.name,
        "registered_capital": company.registered_capital,
    }


def test_lookup_refusal_prints_the_problem(embedded_gateway: GatewayProcess) -> None:
    result = _run(
        embedded_gateway,
        "lookup",
        "--as",
        "police",
        "--resource",
        "enterprise-registration",
        "--subject",
        f"uscc:{companies()[0].uscc}",
        "--fields",
        "name",
        "--item",
        "000201002000",
        "--case",
        "X",
        "--reason",
        "r",
        "--operator",
        "o",
    )
    assert result.returncode == 1
    assert json.loads(result.stderr)["reason"] == "no-grant"


def test_demo_walkthrough_shows_the_four_cases(embedded_gateway: GatewayProcess) -> None:
    result = _run(embedded_gateway, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verdict: released" in out
    assert "refused 403 (field-not-granted)" in out
    assert "refused 403 (no-grant)" in out
    assert "refused 409" in out
    assert out.count("audit index") == 4


def test_demo_walkthrough_verifies_the_demo_licences(served_gateway: GatewayProcess) -> None:
    # On both setups: `init` made the demo seals and licences in this gateway's database.
    result = _run(served_gateway, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "UNEXPECTED" not in out
    verdicts = [line.split()[1] for line in out.splitlines() if line.startswith("   verdict: ")]
    assert verdicts[4:] == [
        "valid",  # 5. 营业执照 by identifier
        "valid",  # 6. a food permit issued now, by its QR payload
        "valid",  # 7. 不动产权证书 read through a lookup, as the sealed document
        "suspended",
        "revoked",
        "cancelled",  # version 001, superseded by 002
        "expired",
        "seal-invalid",  # sealed with a seal revoked for key compromise
        "forged",  # one byte changed
        "valid",  # offline: public documents only
    ]
    assert out.count("decisive") == 10
    assert "checked here; no request named the licence" in out
