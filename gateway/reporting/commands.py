"""``gateway report``: the once-only report of a quarter or a date range, from the audit log
at a signed checkpoint, and the verification of a published report."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.support import database, settings_or_exit
from gateway.errors import Error, InvalidInput

if TYPE_CHECKING:
    from gateway.reporting.figures import Period
    from gateway.reporting.service import ReportService
    from gateway.settings import Settings

__all__ = ["report"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def report() -> None:
    """The quarterly once-only report (一网通办"免提交"通报), provable from the audit log."""


def _outputs(command: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option(
            "--size",
            type=click.IntRange(min=1),
            default=None,
            help="Compute at the signed checkpoint of SIZE entries [the latest].",
        ),
        click.option("--office", default=None, help="The issuing office [区政务服务管理办公室]."),
        click.option(
            "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
            default=None, help="Write the full report (JSON) here.",
        ),
        click.option(
            "--public", "public_path", type=click.Path(dir_okay=False, path_type=Path),
            default=None, help="Write the public JSON (small counts as \"<5\") here.",
        ),
        click.option(
            "--threshold", type=click.IntRange(min=1, max=1000), default=None,
            help="Counts below it are suppressed in the public forms [5].",
        ),
        click.option(
            "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
            default=None, help="Write the public tables as CSV (UTF-8 with BOM) here.",
        ),
        click.option(
            "--xlsx", "xlsx_path", type=click.Path(dir_okay=False, path_type=Path),
            default=None, help="Write the public tables as an Excel workbook here.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _service(settings: Settings, engine: Any) -> ReportService:
    from gateway.core.keyring import public_jwk
    from gateway.core.policy import load_policy_set
    from gateway.registry import keystore
    from gateway.registry.gateway_keys import load_gateway_keys
    from gateway.reporting.service import ReportService

    policy = load_policy_set(Path(settings.policies_dir))
    # Every key of the set, as the JWKS publishes them (as `gateway audit verify` reads them).
    keys = load_gateway_keys(engine)
    jwks = (
        {"keys": [k.published() for k in keys]}
        if keys
        else {
            "keys": [public_jwk(keystore.ensure_gateway_key(Path(settings.keys_dir)), alg="ES256")]
        }
    )
    return ReportService(
        engine=engine, gateway_id=settings.gateway_id, gateway_jwks=lambda: jwks,
        policy=lambda: policy,
    )  # fmt: skip


def _run(period: Period, options: dict[str, Any]) -> None:
    from gateway.reporting.render import summary_lines, write_outputs
    from gateway.reporting.report import DEFAULT_THRESHOLD

    settings = settings_or_exit()
    with database(settings) as engine:
        try:
            made = _service(settings, engine).report(
                period, now=dt.datetime.now(dt.UTC), size=options["size"],
                office=options["office"],
            )  # fmt: skip
        except Error as exc:
            raise click.ClickException(str(exc)) from None
    for line in summary_lines(made):
        click.echo(line)
    threshold = options["threshold"] or DEFAULT_THRESHOLD
    for written in write_outputs(
        made,
        threshold=threshold,
        json_path=options["json_path"],
        public_path=options["public_path"],
        csv_path=options["csv_path"],
        xlsx_path=options["xlsx_path"],
    ):
        click.echo(f"written: {written}")


def _period(parse: Callable[[], Period]) -> Period:
    try:
        return parse()
    except InvalidInput as exc:
        raise click.BadParameter(exc.reason, param_hint=exc.field) from None


@report.command()
@click.argument("quarter")
@_outputs
def quarter(quarter: str, **options: Any) -> None:
    """The report of QUARTER (e.g. 2026Q4: Beijing time, 1 Oct to 31 Dec)."""
    from gateway.reporting.report import parse_quarter

    _run(_period(lambda: parse_quarter(quarter)), options)


@report.command(name="range")
@click.argument("first", metavar="FROM")
@click.argument("last", metavar="UNTIL")
@_outputs
def date_range(first: str, last: str, **options: Any) -> None:
    """The report of the days FROM to UNTIL, both included (YYYY-MM-DD, Beijing time)."""
    from gateway.reporting.report import parse_range

    _run(_period(lambda: parse_range(first, last)), options)


@report.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(path: Path) -> None:
    """Recompute the published report at PATH (full or public JSON) from the stored entries
    at the checkpoint it names. Exit status 1 if anything differs: its signed checkpoint,
    the entries' root, or any figure."""
    try:
        published = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.ClickException(f"{path} is not a JSON report: {exc}") from None
    if not isinstance(published, dict):
        raise click.ClickException(f"{path} is not a JSON report: not an object")
    settings = settings_or_exit()
    with database(settings) as engine:
        result = _service(settings, engine).verify(published, now=dt.datetime.now(dt.UTC))
    if result.ok:
        click.echo(
            f"OK: the report matches the entries 1..{result.checkpoint_size} of the signed "
            "checkpoint it names; every figure recomputes to the published value."
        )
        return
    click.echo(f"DIFFERS: the report does not match the log ({len(result.problems)} problems)")
    if result.first_changed_entry is not None:
        click.echo(f"FIRST ENTRY THAT DIFFERS: {result.first_changed_entry}")
    for problem in result.problems[:50]:
        click.echo(f"  - {problem}")
    sys.exit(1)
