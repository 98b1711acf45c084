"""``gateway audit``: verify the stored log, witness a gateway's log from outside."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import jwt

from gateway.cli.support import database, settings_or_exit
from gateway.core.protocol import TokenType
from gateway.sdk import http_client

__all__ = ["audit"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def audit() -> None:
    """The tamper-evident audit log: verify it, witness it."""


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(as_json: bool) -> None:
    """Recompute the Merkle tree from every stored entry and check it against the stored
    leaves and every signed checkpoint. Exit status 1 if anything differs."""
    from gateway.audit.verify import report_json, verify_log
    from gateway.core.keyring import public_jwk
    from gateway.registry import keystore

    settings = settings_or_exit()
    key = keystore.ensure_gateway_key(Path(settings.keys_dir))
    started = time.perf_counter()
    with database(settings) as engine:
        report = verify_log(
            engine, gateway_jwk=public_jwk(key, alg="ES256"), issuer=settings.gateway_id
        )
    seconds = time.perf_counter() - started
    if as_json:
        click.echo(report_json(report, at=dt.datetime.now(dt.UTC)).decode())
    else:
        click.echo(
            f"entries {report.entries}, tree {report.tree_size} leaves, "
            f"checkpoints {report.checkpoints} ({seconds:.1f} s)"
        )
        if report.ok:
            click.echo("OK: every entry is the leaf written with it; every checkpoint matches.")
        else:
            if report.first_bad_entry is not None:
                click.echo(f"FIRST ENTRY THAT DIFFERS: {report.first_bad_entry}")
            for problem in report.problems:
                click.echo(f"  - {problem}")
    sys.exit(0 if report.ok else 1)


def _gateway_key(http: httpx.Client, kid: str) -> Any:
    for jwk in http.get("/.well-known/jwks.json").raise_for_status().json().get("keys", []):
        if jwk.get("kid") == kid and jwk.get("alg") == "ES256":
            return jwt.PyJWK(jwk, algorithm="ES256").key
    raise click.ClickException(f"the gateway publishes no ES256 key {kid!r}")


def _checkpoint(http: httpx.Client, issuer: str | None) -> tuple[dict[str, Any], str]:

    token = http.get("/v1/audit/checkpoint").raise_for_status().text.strip()
    header = jwt.get_unverified_header(token)
    if header.get("typ") != TokenType.AUDIT_CHECKPOINT:
        raise click.ClickException(f"not a checkpoint: typ {header.get('typ')!r}")
    claims: dict[str, Any] = jwt.decode(
        token,
        _gateway_key(http, str(header.get("kid"))),
        algorithms=["ES256"],
        options={"require": ["iss", "iat", "size", "root"]},
        issuer=issuer,
    )
    return claims, token


@audit.command()
@click.argument("url")
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("witness-state.json"),
    show_default=True,
    help="Where the last checkpoint seen is kept between runs.",
)
@click.option("--issuer", default=None, help="Expected `iss` of checkpoints (the gateway id).")
@click.option(
    "--watch", type=float, default=None, metavar="SECONDS", help="Check again every SECONDS."
)
def witness(url: str, state: Path, issuer: str | None, watch: float | None) -> None:
    """Follow the log of the gateway at URL from outside, with no credentials: check that
    each new signed checkpoint is consistent with the last one seen (RFC 9162 consistency
    proof), then remember it. Exit status 1 the moment the log was rewritten."""
    from gateway.core import merkle

    with http_client(url, timeout=10.0) as http:
        while True:
            try:
                claims, token = _checkpoint(http, issuer)
            except (httpx.HTTPError, jwt.PyJWTError) as exc:
                raise click.ClickException(f"no verifiable checkpoint from {url}: {exc}") from None
            size, root = int(claims["size"]), str(claims["root"])
            seen = json.loads(state.read_text(encoding="utf-8")) if state.exists() else None
            if seen is not None:
                old_size, old_root = int(seen["size"]), str(seen["root"])
                if size < old_size:
                    click.echo(f"INCONSISTENT: the log shrank from {old_size} to {size} entries")
                    sys.exit(1)
                if size == old_size:
                    consistent = root == old_root
                else:
                    proof = (
                        http.get(
                            "/v1/audit/proofs/consistency",
                            params={"from": old_size, "to": size},
                        )
                        .raise_for_status()
                        .json()["proof"]
                    )
                    consistent = merkle.verify_consistency(
                        old_size,
                        size,
                        bytes.fromhex(old_root),
                        bytes.fromhex(root),
                        [bytes.fromhex(h) for h in proof],
                    )
                if not consistent:
                    click.echo(
                        f"INCONSISTENT: checkpoint {size} ({root}) does not extend "
                        f"checkpoint {old_size} ({old_root}): the log was rewritten"
                    )
                    sys.exit(1)
                click.echo(f"consistent: {old_size} -> {size} entries, root {root}")
            else:
                click.echo(f"first checkpoint: {size} entries, root {root}")
            state.write_text(
                json.dumps({"size": size, "root": root, "token": token}), encoding="utf-8"
            )
            if watch is None:
                return
            time.sleep(watch)
