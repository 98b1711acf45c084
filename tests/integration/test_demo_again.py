"""`gateway demo` is not the only actor: it runs again and again, also after an issuer has
changed the licences `gateway init` made and a clerk has closed cases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.policy import load_policy_set
from gateway.demo.licences import demo_cases
from tests.support import ROOT, GatewayProcess, gateway_command, running_gateway


@pytest.fixture(scope="module")
def own_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """A gateway of this module's own: the test changes the demo licences' state."""
    with running_gateway(tmp_path_factory.mktemp("demo-again"), keys_dir, server=False) as gw:
        yield gw


def _demo(gw: GatewayProcess) -> str:
    result = gateway_command("demo", "--url", gw.url, env={"GATEWAY_KEYS_DIR": str(gw.keys_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "UNEXPECTED" not in result.stdout
    return result.stdout


def test_the_demo_runs_again_after_others_changed_what_init_made(
    own_gateway: GatewayProcess,
) -> None:
    first = _demo(own_gateway)
    # Case 7 is 国密 end to end: an SM2 request, an SM2 answer, an SM2-sealed certificate
    # (the algorithms read from the tokens themselves).
    assert (
        "区税务局 signed its request with SM2; the gateway's answer is signed SM2, the "
        "certificate sealed SM2"
    ) in first
    # Another actor: the issuer suspends the valid 营业执照 and reinstates the suspended food
    # permit that `gateway init` made — the facts an earlier demo relied on.
    cases = demo_cases(load_policy_set(ROOT / "policies").departments)
    with own_gateway.client("market") as market:
        for name, action in (("business-licence", "suspend"), ("suspended", "reinstate")):
            market.change_licence_status(
                licence_id=cases[name].licence_id,
                action=action,
                reason="另一位办事员的操作",
                operator="market-clerk-09",
            )
    second = _demo(own_gateway)
    third = _demo(own_gateway)
    for out in (first, second, third):
        verdicts = [line.split()[1] for line in out.splitlines() if line.startswith("   verdict: ")]
        assert verdicts[4:] == [
            "valid",
            "valid",
            "valid",
            "suspended",
            "revoked",
            "cancelled",
            "expired",
            "seal-invalid",
            "forged",
            "valid",
        ]

    # Each run verified licences of its own; only the one sealed with the compromised seal
    # (whose revocation is final) comes from `gateway init` every time.
    def shown(out: str) -> set[str]:
        return {line.strip() for line in out.splitlines() if line.startswith("   1.2.156.3005.2.")}

    assert shown(first) & shown(second) == {cases["seal-invalid"].licence_id}
    assert shown(second) & shown(third) == {cases["seal-invalid"].licence_id}
