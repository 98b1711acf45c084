"""`gateway seal` and `gateway licence` against a running embedded gateway: real HTTP, real keys.

The market department (an issuer) registers a seal and issues licences; the service centre's
clerks verify them online (by identifier, QR payload and sealed file) and offline (the sealed
file against the gateway's public documents). Receipts are checked with joserfc, a JOSE
library independent of the gateway's own.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import stat
from pathlib import Path

import httpx
import pytest
from joserfc import jwt as jose_jwt

from gateway.core.identifiers import licence_check_character
from gateway.core.policy import DISTRICT_TZ
from tests.support import CommandResult, GatewayProcess, es256_key_set, free_port, gateway_command

ISSUER = "market"
ISSUER_USCC = "11430600006122001T"  # policies/departments.toml
TYPE_CODE = "11100000000013338W011"
CLERK = "service-centre"
PURPOSE = ("--item", "000201002000", "--case", "BJ-2026-0042", "--reason", "核验食品经营许可证")


def _run(
    gw: GatewayProcess, *args: str, url: str | None = None, process: bool = False
) -> CommandResult:
    return gateway_command(
        *args,
        "--url",
        url or gw.url,
        env={"GATEWAY_KEYS_DIR": str(gw.keys_dir)},
        process=process,
    )


def _line(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(prefix))[len(prefix) :]


@pytest.fixture(scope="module")
def seal(embedded_gateway: GatewayProcess) -> dict[str, str]:
    """A seal of the market department, registered with a key the command creates."""
    seal_id = f"market-licence-{secrets.token_hex(3)}"
    today = dt.datetime.now(DISTRICT_TZ).date()
    result = _run(
        embedded_gateway,
        "seal",
        "register",
        "--as",
        ISSUER,
        "--seal-id",
        seal_id,
        "--name",
        "区市场监督管理局证照专用章",
        "--type",
        "licence",
        "--valid-from",
        str(today - dt.timedelta(days=30)),
        "--valid-until",
        str(today + dt.timedelta(days=365)),
        "--operator",
        "market-admin",
        process=True,  # the console script itself, once; the other commands run in process
    )
    assert result.returncode == 0, result.stderr
    assert f"seal {seal_id}: active" in result.stdout
    return {
        "id": seal_id,
        "kid": _line(result.stdout, "kid: "),
        "key": _line(result.stdout, "private key: "),
    }


def _issue(gw: GatewayProcess, seal: dict[str, str], tmp_path: Path) -> dict[str, str]:
    serial = f"{secrets.randbelow(10**11):011d}"
    check = licence_check_character(TYPE_CODE + ISSUER_USCC + serial + "001")
    licence_id = f"1.2.156.3005.2.{TYPE_CODE}.{ISSUER_USCC}.{serial}.001.{check}"
    today = dt.datetime.now(DISTRICT_TZ).date()
    content = {
        "licence_id": licence_id,
        "type_code": TYPE_CODE,
        "type_name": "食品经营许可证",
        "holder_name": "张三",
        "holder_id": "11010519491231002X",
        "holder_id_type": "resident-id",
        "issuer_uscc": ISSUER_USCC,
        "issuer_name": "区市场监督管理局",
        "issue_date": str(today),
        "valid_from": str(today),
        "valid_until": str(today + dt.timedelta(days=5 * 365)),
        "jurisdiction": "430602",
        "service_item": "000201002000",
        "type_fields": {"经营场所": "新港路1号"},
    }
    content_file = tmp_path / f"{serial}.json"
    content_file.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    sealed_file = tmp_path / f"{serial}.jws"
    result = _run(
        gw,
        "licence",
        "issue",
        "--as",
        ISSUER,
        "--seal-key",
        seal["key"],
        "--content",
        str(content_file),
        "--out",
        str(sealed_file),
        "--operator",
        "market-clerk",
    )
    assert result.returncode == 0, result.stderr
    assert _line(result.stdout, "licence: ") == licence_id
    assert _line(result.stdout, "status entry: ")
    return {"id": licence_id, "qr": _line(result.stdout, "QR payload: "), "file": str(sealed_file)}


def _verify(gw: GatewayProcess, *args: str) -> CommandResult:
    return _run(gw, "licence", "verify", *args, "--as", CLERK, *PURPOSE, "--operator", "clerk-7")


def _receipt_claims(gw: GatewayProcess, path: Path) -> dict[str, object]:
    """The receipt's claims once joserfc has verified it with the gateway's JWKS."""
    keys = es256_key_set(httpx.get(gw.url + "/.well-known/jwks.json").json())
    token = jose_jwt.decode(path.read_text().strip(), keys, algorithms=["ES256"])
    assert token.header["typ"] == "yiwang-verification-receipt+jwt"
    claims: dict[str, object] = token.claims
    assert claims["aud"] == CLERK
    return claims


def test_seal_register_keeps_the_key_private_and_lists_the_seal(
    embedded_gateway: GatewayProcess, seal: dict[str, str]
) -> None:
    key = Path(seal["key"])
    assert key == embedded_gateway.keys_dir / "seals" / f"{seal['id']}.private.jwk.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    listed = _run(embedded_gateway, "seal", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:5] == ["id", "owner", "status", "validity", "kid"]
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(seal["id"]))
    assert row[1:3] == [ISSUER, "active"]
    assert row[4] == seal["kid"]


def test_an_issued_licence_verifies_online_by_id_qr_and_file(
    embedded_gateway: GatewayProcess, seal: dict[str, str], tmp_path: Path
) -> None:
    issued = _issue(embedded_gateway, seal, tmp_path)
    for given in ([issued["id"]], [issued["qr"]], ["--file", issued["file"]]):
        receipt = tmp_path / "receipt.jwt"
        result = _verify(embedded_gateway, *given, "--receipt", str(receipt))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verdict: valid" in result.stdout
        assert "passed   the seal's signature verifies" in result.stdout
        assert "FAILED" not in result.stdout
        claims = _receipt_claims(embedded_gateway, receipt)
        assert claims["verdict"] == "valid"
        assert claims["licence_id"] == issued["id"]


def test_a_suspended_licence_verifies_as_suspended_with_exit_code_1(
    embedded_gateway: GatewayProcess, seal: dict[str, str], tmp_path: Path
) -> None:
    issued = _issue(embedded_gateway, seal, tmp_path)
    changed = _run(
        embedded_gateway,
        "licence",
        "status",
        issued["id"],
        "suspend",
        "--reason",
        "整改期间暂停",
        "--as",
        ISSUER,
        "--operator",
        "market-clerk",
    )
    assert changed.returncode == 0, changed.stderr
    assert "valid -> suspended" in changed.stdout
    receipt = tmp_path / "receipt.jwt"
    result = _verify(embedded_gateway, issued["id"], "--receipt", str(receipt))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: suspended" in result.stdout
    assert "FAILED   it is not suspended (suspended)" in result.stdout
    assert _receipt_claims(embedded_gateway, receipt)["verdict"] == "suspended"


def test_offline_verification_reads_the_status_list_it_fetched(
    embedded_gateway: GatewayProcess, seal: dict[str, str], tmp_path: Path
) -> None:
    issued = _issue(embedded_gateway, seal, tmp_path)
    saved = tmp_path / "documents"
    offline = ("licence", "verify", "--offline", "--file", issued["file"])

    first = _run(embedded_gateway, *offline, "--documents", str(saved))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verdict: valid" in first.stdout
    assert {p.name for p in saved.iterdir()} >= {"jwks.json", "seal-registry.jwt"}

    # The saved documents suffice: nothing listens at this address.
    no_network = f"http://127.0.0.1:{free_port()}"
    again = _run(embedded_gateway, *offline, "--documents", str(saved), url=no_network)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "verdict: valid" in again.stdout

    revoked = _run(
        embedded_gateway,
        "licence",
        "status",
        issued["id"],
        "revoke",
        "--reason",
        "违法经营吊销",
        "--as",
        ISSUER,
        "--operator",
        "market-clerk",
    )
    assert revoked.returncode == 0, revoked.stderr
    fresh = _run(embedded_gateway, *offline)
    assert fresh.returncode == 1, fresh.stdout + fresh.stderr
    assert "verdict: revoked" in fresh.stdout
    assert "FAILED   it is not revoked, withdrawn or cancelled (revoked)" in fresh.stdout


def test_a_tampered_sealed_file_is_forged_offline(
    embedded_gateway: GatewayProcess, seal: dict[str, str], tmp_path: Path
) -> None:
    issued = _issue(embedded_gateway, seal, tmp_path)
    header, payload, signature = Path(issued["file"]).read_text().strip().split(".")
    i = len(signature) // 2
    forged = tmp_path / "forged.jws"
    swapped = "A" if signature[i] != "A" else "B"
    forged.write_text(f"{header}.{payload}.{signature[:i]}{swapped}{signature[i + 1 :]}")
    result = _run(embedded_gateway, "licence", "verify", "--offline", "--file", str(forged))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: forged" in result.stdout


def test_a_refusal_prints_the_problem_with_exit_code_1(
    embedded_gateway: GatewayProcess, seal: dict[str, str], tmp_path: Path
) -> None:
    issued = _issue(embedded_gateway, seal, tmp_path)
    # police is no issuer: it may not change the status of anyone's licence
    result = _run(
        embedded_gateway,
        "licence",
        "status",
        issued["id"],
        "revoke",
        "--reason",
        "r",
        "--as",
        "police",
        "--operator",
        "p-1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stderr)["reason"] == "not-issuer"


@pytest.mark.parametrize(
    "args",
    [
        ["licence", "verify", "--as", CLERK, *PURPOSE],  # no input
        ["licence", "verify", "X", "--file", "README.md", "--as", CLERK, *PURPOSE],  # two
        ["licence", "verify", "X", "--offline"],  # offline needs the sealed file
        ["licence", "verify", "X"],  # online needs the purpose
    ],
)
def test_usage_errors_exit_with_code_2(embedded_gateway: GatewayProcess, args: list[str]) -> None:
    result = _run(embedded_gateway, *args)
    assert result.returncode == 2, result.stdout + result.stderr
