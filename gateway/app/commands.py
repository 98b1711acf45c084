"""The ``gateway`` command: serve, init, lookup, demo — and each feature's command group,
imported only when it is invoked (``gateway licence verify`` loads the licensing commands,
not the database layer of the accounts)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import click

from gateway.cli.support import open_client, settings_or_exit
from gateway.errors import Error

__all__ = ["main"]

#: Each feature's command group: its name and where it is defined (``module:attribute``).
FEATURE_COMMANDS = {
    "audit": "gateway.app.commands:audit_commands",
    "licence": "gateway.licensing.commands:licence",
    "policy": "gateway.policy.commands:policy",
    "refusals": "gateway.oversight.commands:refusals",
    "seal": "gateway.licensing.commands:seal",
    "upload": "gateway.uploads.commands:upload",
    "users": "gateway.accounts.commands:users",
}


class _FeatureGroup(click.Group):
    """The main group: its own commands, plus the features' groups loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *FEATURE_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = FEATURE_COMMANDS.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = where.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        command: click.Command = found() if not isinstance(found, click.Command) else found
        return command


def audit_commands() -> click.Group:
    """``gateway audit``: the log's tools, and the officers' alerts beside them."""
    from gateway.audit.commands import audit
    from gateway.oversight.commands import alerts

    if "alerts" not in audit.commands:
        audit.add_command(alerts)
    return audit


@click.group(cls=_FeatureGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yiwang-gateway")
def main() -> None:
    """Yiwang Gateway: signed, policy-bound, audited lookups between departments."""


@main.command()
@click.option(
    "--demo/--no-demo",
    default=True,
    show_default=True,
    help="Create demo department keys and the demo providers' source databases.",
)
def init(demo: bool) -> None:
    """Create keys, database schema and registry where missing (safe to repeat)."""
    from gateway.app.bootstrap import initialise

    settings = settings_or_exit()
    try:
        report = initialise(settings, demo=demo)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"database: {report.database_url}")
    click.echo(f"policy version: {report.policy_version}")
    click.echo(f"keys registered now: {report.keys_registered}")
    for path in report.sources_written:
        click.echo(f"demo source written: {path}")
    if demo:
        click.echo(
            f"demo seals registered now: {report.seals_registered}; demo licences issued now:"
            f" {report.licences_issued}, status changes: {report.licence_status_changes}"
        )
    for reason in report.licences_skipped:
        click.echo(f"demo licence skipped: {reason}", err=True)


@main.command()
@click.option("--host", default=None, help="Address to bind [GATEWAY_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [GATEWAY_PORT, 8080].")
@click.option("--workers", type=int, default=None, help="Worker processes [GATEWAY_WORKERS, 1].")
@click.option(
    "--init/--no-init",
    "run_init",
    default=True,
    show_default=True,
    help="Run `gateway init` first (creates only what is missing).",
)
def serve(host: str | None, port: int | None, workers: int | None, run_init: bool) -> None:
    """Start the gateway."""
    import uvicorn

    settings = settings_or_exit(host=host, port=port, workers=workers)
    if run_init:
        from gateway.app.bootstrap import initialise

        try:
            initialise(settings, demo=True)
        except Error as exc:
            raise click.ClickException(str(exc)) from None
    # Worker processes read settings from the environment: hand the flags down that way.
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"GATEWAY_{name}"] = str(value)
    click.echo(
        f"Yiwang Gateway on http://{settings.host}:{settings.port}  "
        f"(API docs: /docs, JWKS: /.well-known/jwks.json; "
        f"{'embedded: SQLite + in-process caches' if settings.embedded else 'server setup'})"
    )
    uvicorn.run(
        "gateway.app.factory:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        # A worker that does not answer the supervisor's ping this long is killed and
        # replaced; uvicorn's 5 s default killed workers that were only busy.
        timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
        loop="uvloop",
        http="httptools",
    )


def _parse_subject(_: click.Context, __: click.Parameter, value: str) -> tuple[str, str]:
    kind, sep, ident = value.partition(":")
    if not sep or kind not in ("uscc", "resident-id"):
        raise click.BadParameter("use uscc:<code> or resident-id:<number>")
    return kind, ident


@main.command()
@click.option("--as", "department", required=True, help="Consumer department id (signs).")
@click.option("--resource", required=True, help="Catalogued resource id.")
@click.option(
    "--subject", required=True, callback=_parse_subject, help="uscc:<code> or resident-id:<number>."
)
@click.option("--fields", required=True, help="Comma-separated field names.")
@click.option("--item", required=True, help="Service item code (事项编码).")
@click.option("--case", "case", required=True, help="Case number (办件编号).")
@click.option("--reason", required=True, help="Reason for use (用证事由).")
@click.option("--operator", required=True, help="The clerk's id.")
@click.option("--url", default=None, help="Gateway base URL [http://HOST:PORT from settings].")
def lookup(  # noqa: PLR0917 - click passes every option positionally by name
    department: str,
    resource: str,
    subject: tuple[str, str],
    fields: str,
    item: str,
    case: str,
    reason: str,
    operator: str,
    url: str | None,
) -> None:
    """Send one signed lookup as DEPARTMENT (key from keys/) and print the verified answer."""
    from gateway.sdk import GatewayProblem

    settings = settings_or_exit()
    try:
        with open_client(settings, department, url) as c:
            answer = c.lookup(
                resource=resource,
                subject=subject,
                fields=[f.strip() for f in fields.split(",") if f.strip()],
                item=item,
                case=case,
                reason=reason,
                operator=operator,
            )
    except GatewayProblem as exc:
        click.echo(json.dumps(exc.problem, ensure_ascii=False, indent=2), err=True)
        sys.exit(1)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(answer.claims, ensure_ascii=False, indent=2))


@main.command()
@click.option("--url", default=None, help="Gateway base URL [http://HOST:PORT from settings].")
def demo(url: str | None) -> None:
    """Walk through lookups (allowed, three refusals) and licence verifications of every
    kind (by identifier, QR code, sealed document, offline) against a running gateway."""
    from gateway.demo.walkthrough import run_walkthrough

    settings = settings_or_exit()
    base_url = url or f"http://{settings.host}:{settings.port}"
    try:
        surprises = run_walkthrough(
            base_url=base_url,
            keys_dir=Path(settings.keys_dir),
            audience=settings.gateway_id,
            echo=click.echo,
        )
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the gateway at {base_url}: {exc}") from None
    sys.exit(1 if surprises else 0)


if __name__ == "__main__":
    main()
