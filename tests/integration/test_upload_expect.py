"""An upload that will be refused sends none of its file: the SDK (and `gateway upload`) ask
with `Expect: 100-continue`, and the gateway checks the Upload-Token's claims, the provider
rule and the declared size before it reads the body, over real HTTP on both setups."""

from __future__ import annotations

from pathlib import Path

from gateway.sdk import GatewayProblem, SignedAnswer
from tests.support import ROOT, GatewayProcess

RESOURCE = "employment-registration"  # the demo district's uploaded resource, 64 MiB cap
CAP = 64 * 1024 * 1024


def _large_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # sparse: large to send, cheap to make
    return path


def _upload(
    gw: GatewayProcess, department: str, path: Path
) -> tuple[list[int], SignedAnswer | GatewayProblem]:
    """The sizes of the chunks sent, and the receipt or the refusal."""
    sent: list[int] = []
    with gw.client(department) as client:
        try:
            outcome: SignedAnswer | GatewayProblem = client.upload(
                resource=RESOURCE, path=path, operator="clerk-1", progress=sent.append
            )
        except GatewayProblem as exc:
            outcome = exc
    return sent, outcome


def test_a_department_that_is_not_the_provider_sends_nothing(
    served_gateway: GatewayProcess, tmp_path: Path
) -> None:
    sent, outcome = _upload(served_gateway, "civil-affairs", _large_file(tmp_path / "x.csv", CAP))
    assert isinstance(outcome, GatewayProblem)
    assert outcome.status == 403
    assert outcome.reason == "not-provider"
    assert sum(sent) == 0  # not one chunk of the file left this process


def test_a_file_over_the_cap_is_refused_before_it_is_sent(
    served_gateway: GatewayProcess, tmp_path: Path
) -> None:
    sent, outcome = _upload(served_gateway, "hrss", _large_file(tmp_path / "x.csv", CAP + 1))
    assert isinstance(outcome, GatewayProblem)
    assert outcome.status == 413
    assert sum(sent) == 0


def test_an_accepted_upload_sends_the_whole_file_after_the_go_ahead(
    served_gateway: GatewayProcess,
) -> None:
    sample = ROOT / "docs" / "examples" / f"{RESOURCE}.csv"
    sent, outcome = _upload(served_gateway, "hrss", sample)
    assert isinstance(outcome, SignedAnswer), outcome
    assert sum(sent) == sample.stat().st_size
    assert outcome.claims["rows"] == {"accepted": 11, "rejected": 1}
