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

from gateway.cli.support import database, settings_or_exit
from gateway.core.keyring import GatewayKeyRefused, verify_gateway_jws
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
    from gateway.registry.gateway_keys import load_gateway_keys

    settings = settings_or_exit()
    started = time.perf_counter()
    with database(settings) as engine:
        keys = load_gateway_keys(engine)
        # Every key of the set, as the JWKS publishes them (a database from before key sets
        # has none: its one key file then).
        jwks = (
            {"keys": [k.published() for k in keys]}
            if keys
            else {
                "keys": [
                    public_jwk(keystore.ensure_gateway_key(Path(settings.keys_dir)), alg="ES256")
                ]
            }
        )
        report = verify_log(engine, gateway_jwks=jwks, issuer=settings.gateway_id)
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


def _verified_checkpoint(token: str, jwks: dict[str, Any], issuer: str | None) -> dict[str, Any]:
    """The claims of checkpoint ``token``, its signature checked with the gateway key its
    ``kid`` names in ``jwks`` — a key that was in force when it was signed: the witness
    learns a newly active key from the JWKS, and a retired key still vouches for what it
    signed before its retirement."""
    try:
        _, claims = verify_gateway_jws(token, jwks=jwks, typ=TokenType.AUDIT_CHECKPOINT)
    except GatewayKeyRefused as exc:
        raise click.ClickException(f"checkpoint refused: {exc}") from None
    missing = [name for name in ("iss", "iat", "size", "root") if name not in claims]
    if missing:
        raise click.ClickException(f"checkpoint refused: no {', '.join(missing)}")
    if issuer is not None and claims["iss"] != issuer:
        raise click.ClickException(f"checkpoint refused: issued by {claims['iss']!r}")
    return claims


def _checkpoint(
    http: httpx.Client, issuer: str | None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    jwks: dict[str, Any] = http.get("/.well-known/jwks.json").raise_for_status().json()
    token = http.get("/v1/audit/checkpoint").raise_for_status().text.strip()
    return _verified_checkpoint(token, jwks, issuer), token, jwks


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
                claims, token, jwks = _checkpoint(http, issuer)
            except (httpx.HTTPError, ValueError) as exc:
                raise click.ClickException(f"no verifiable checkpoint from {url}: {exc}") from None
            size, root = int(claims["size"]), str(claims["root"])
            seen = json.loads(state.read_text(encoding="utf-8")) if state.exists() else None
            if seen is not None:
                old_size, old_root = int(seen["size"]), str(seen["root"])
                # The checkpoint remembered must still verify with the JWKS as served now
                # (across a rotation too): a gateway that dropped the key it was signed with
                # could no longer be held to it.
                try:
                    remembered = _verified_checkpoint(str(seen["token"]), jwks, issuer)
                except click.ClickException as exc:
                    remembered = {"error": exc.message}
                if (remembered.get("size"), remembered.get("root")) != (old_size, old_root):
                    click.echo(
                        f"UNVERIFIABLE: the checkpoint of {old_size} entries seen before no "
                        f"longer verifies with the gateway's JWKS ({remembered.get('error')})"
                    )
                    sys.exit(1)
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
