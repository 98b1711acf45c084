"""The ``gateway upload`` command: a provider department uploads a file of its records.

Registered on the main command by ``gateway.app.commands``. Signs with the department's key from
``keys/departments/<dept>.private.jwk.json``, as ``gateway lookup`` does; hashes the file and
streams it with progress bars (on stderr, so that stdout carries only the receipt).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.support import base_url, open_client, settings_or_exit
from gateway.errors import Error

__all__ = ["upload"]


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _sha256(path: Path, progress: Any) -> str:
    task = progress.add_task("hashing", total=path.stat().st_size)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            progress.advance(task, len(chunk))
    return digest.hexdigest()


@click.command()
@click.argument("resource")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "department", required=True, help="Provider department id (signs).")
@click.option("--operator", default=None, help="The clerk's id [the login name].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default=None,
    help="File format [jsonl for .jsonl/.ndjson files, else csv].",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Save the rejection report (CSV) here, if any row was rejected.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole receipt as JSON.")
@click.option("--url", default=None, help="Gateway base URL [http://HOST:PORT from settings].")
def upload(  # noqa: PLR0917 - click passes every option positionally by name
    resource: str,
    file: Path,
    department: str,
    operator: str | None,
    fmt: str | None,
    report: Path | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Upload FILE (CSV or JSON Lines) as the new version of RESOURCE, as its provider.

    Prints the signed receipt the gateway answers: the version, how many rows were accepted
    and rejected, and where the rejection report is.
    """
    from gateway.sdk import GatewayProblem

    settings = settings_or_exit()
    gateway_url = base_url(settings, url)
    clerk = operator or getpass.getuser()
    try:
        with (
            open_client(settings, department, url) as client,
            _progress() as progress,
        ):
            digest = _sha256(file, progress)
            sending = progress.add_task("uploading", total=file.stat().st_size)
            receipt = client.upload(
                resource=resource,
                path=file,
                operator=clerk,
                fmt=fmt,
                sha256=digest,
                progress=lambda n: progress.advance(sending, n),
            )
            claims = receipt.claims
            rejected = int(claims["rows"]["rejected"])
            if report is not None and rejected:
                report.write_bytes(
                    client.upload_rejections(
                        resource=resource, version=int(claims["version"]), operator=clerk
                    )
                )
    except GatewayProblem as exc:
        click.echo(json.dumps(exc.problem, ensure_ascii=False, indent=2), err=True)
        sys.exit(1)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot upload to {gateway_url}: {exc}") from None
    if as_json:
        click.echo(json.dumps(claims, ensure_ascii=False, indent=2))
        return
    previous = claims.get("previous_version")
    state = (
        f"is current (replaced version {previous})"
        if claims["current"] and previous is not None
        else "is current"
        if claims["current"]
        else f"was accepted but is not current: version {previous} is newer"
    )
    click.echo(f"version {claims['version']} of {resource} {state}")
    click.echo(f"rows accepted: {claims['rows']['accepted']}")
    click.echo(f"rows rejected: {rejected}")
    click.echo(f"sha256: {claims['sha256']}")
    click.echo(f"audit index: {claims['audit']['index']}")
    if rejected:
        link = gateway_url.rstrip("/") + claims["rejections"]["url"]
        where = f"saved to {report}" if report is not None else f"{link} (or rerun with --report)"
        click.echo(f"rejection report: {where}")
