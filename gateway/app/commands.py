"""The ``gateway`` command: serve, init, lookup, demo — and each feature's command group,
imported only when it is invoked (``gateway licence verify`` loads the licensing commands,
not the database layer of the accounts)."""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli.support import open_client, settings_or_exit
from gateway.errors import ConfigurationError, Error
from gateway.settings import Settings

if TYPE_CHECKING:
    import uvicorn

__all__ = ["main"]

#: Each feature's command group: its name and where it is defined (``module:attribute``).
FEATURE_COMMANDS = {
    "audit": "gateway.app.commands:audit_commands",
    "backup": "gateway.backup.commands:backup",
    "keys": "gateway.registry.commands:keys",
    "licence": "gateway.licensing.commands:licence",
    "policy": "gateway.policy.commands:policy",
    "refusals": "gateway.oversight.commands:refusals",
    "report": "gateway.reporting.commands:report",
    "restore": "gateway.backup.commands:restore",
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
@click.option(
    "--home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The gateway's home: policies/, keys/ and data/ are under it [GATEWAY_HOME; else"
    " the current directory or the source checkout, whichever holds policies/].",
)
def main(home: Path | None) -> None:
    """Yiwang Gateway: signed, policy-bound, audited lookups between departments."""
    if home is not None:
        # Through the environment, as every setting: the server's workers inherit it.
        os.environ["GATEWAY_HOME"] = str(home.resolve())


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
    settings = settings_or_exit(host=host, port=port, workers=workers)
    # Before anything imports prometheus-client: its mode is chosen when it is imported.
    _metrics_directory(settings)
    from gateway.telemetry.logs import configure_logging

    configure_logging(
        level=settings.log_level, fmt=settings.log_format, access_log=settings.access_log
    )
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
    listening = _bind(settings.host, settings.port)
    if settings.metrics_port:
        _serve_metrics(settings)
    import uvicorn  # here, not above: the other commands start without it

    config = uvicorn.Config(
        "gateway.app.factory:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # The gateway writes its own access log (gateway.telemetry.access); in JSON mode
        # uvicorn's lines go through the gateway's handler too, so every line is JSON.
        access_log=False,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        # A worker that does not answer the supervisor's ping this long is killed and
        # replaced; uvicorn's 5 s default killed workers that were only busy.
        timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
        loop="uvloop",
        http="httptools",
    )
    if settings.workers == 1:
        server = _announcing_server(config, _banner(settings, "ready"), settings.log_format)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[listening])
        if not server.started:
            sys.exit(3)  # the app did not start (its reason is in the log): as uvicorn.run
        return
    from uvicorn.supervisors import Multiprocess

    # Each worker starts the app itself; the port is bound already, the supervisor says so.
    _announce(
        f"{_banner(settings, 'listening')}\n  {settings.workers} workers starting",
        settings.log_format,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[listening]).run()


def _metrics_directory(settings: Settings) -> str | None:
    """With several workers (or metrics on a port of their own, served by this process),
    the metrics of every worker go to files in a fresh directory that the exposition merges:
    prometheus-client's multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR`` set by the operator
    is used as it is. Returns the directory this command made (removed when it exits)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    if settings.workers == 1 and not settings.metrics_port:
        return None
    made = tempfile.mkdtemp(prefix="yiwang-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    atexit.register(shutil.rmtree, made, ignore_errors=True)  # this process's exit only
    return made


def _serve_metrics(settings: Settings) -> None:
    """The metrics of every worker on ``GATEWAY_METRICS_PORT`` (no token: a port operators
    expose to their monitoring network only), from this process."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
    except OSError as exc:
        raise click.ClickException(
            f"metrics port {settings.metrics_port} cannot be bound ({exc.strerror});"
            " choose another (GATEWAY_METRICS_PORT)"
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced; a clear exit if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        busy = exc.errno == errno.EADDRINUSE
        why = "is in use by another process" if busy else f"cannot be bound ({exc.strerror})"
        raise click.ClickException(
            f"{host}:{port} {why}; stop that process or choose another port"
            " (--port or GATEWAY_PORT)"
        ) from None
    listening.listen(2048)
    listening.set_inheritable(True)  # the workers of a multi-process server accept on it
    return listening


def _banner(settings: Settings, state: str) -> str:
    """Where everything is: the addresses a person opens and the operator token files."""
    base = f"http://{settings.host}:{settings.port}"
    operators = Path(settings.keys_dir) / "operators"
    setup = "embedded: SQLite + in-process caches" if settings.embedded else "server setup"
    return "\n".join(
        (
            f"Yiwang Gateway {state} on {base}  ({setup}; home {settings.home})",
            f"  console:   {base}/console",
            f"  API docs:  {base}/docs   JWKS: {base}/.well-known/jwks.json",
            f"  operator tokens: {operators / 'admin.token'} (administrators),",
            f"                   {operators / 'auditor.token'} (security officers)",
        )
    )


def _announce(banner: str, log_format: str) -> None:
    """The banner on the terminal; with JSON logs, one log line like every other."""
    if log_format == "json":
        from gateway.telemetry.logs import BANNER_LOGGER

        logging.getLogger(BANNER_LOGGER).info(banner)
    else:
        click.echo(banner)


def _announcing_server(config: uvicorn.Config, banner: str, log_format: str) -> uvicorn.Server:
    """uvicorn's server that prints ``banner`` once the app has started and the port
    listens — never before a failed start."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit and self.started:
                _announce(banner, log_format)

    return AnnouncingServer(config)


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


@main.group(name="id")
def identifier() -> None:
    """Complete an identifier with its check character, or check one (exit 1 if wrong).

    Give the identifier without its last character to have it computed, or whole to have it
    checked: a USCC (统一社会信用代码, 17 + 1), a resident ID number (17 digits + 1), or an
    e-licence identifier (1.2.156.3005.2.<type code>.<issuer USCC>.<serial>.<version>, then
    .<check>).
    """


def _complete(kind: str, text: str, *, whole: bool, check: Callable[[str], str]) -> None:
    """Print ``text`` completed by ``check`` (body -> whole identifier), or, when ``text`` is
    ``whole`` already, whether its check character is right (exit 1 if not)."""
    from gateway.errors import InvalidIdentifier

    body = (text.rsplit(".", 1)[0] if "." in text else text[:-1]) if whole else text
    try:
        completed = check(body)
    except InvalidIdentifier as exc:
        raise click.ClickException(f"not a {kind}: {exc.reason}") from None
    if not whole:
        click.echo(completed)
    elif completed == text:
        click.echo(f"{text}: the check character is right")
    else:
        click.echo(f"{text}: the check character is wrong; the right one gives {completed}")
        sys.exit(1)


@identifier.command("uscc")
@click.argument("code")
def identifier_uscc(code: str) -> None:
    """A Unified Social Credit Code: its first 17 characters, or all 18."""
    from gateway.core.identifiers import Uscc, uscc_check_character

    def complete(body: str) -> str:
        return Uscc.parse(body + uscc_check_character(body)).value

    _complete("USCC", code.upper(), whole=len(code) == 18, check=complete)


@identifier.command("resident-id")
@click.argument("number")
def identifier_resident_id(number: str) -> None:
    """A resident ID number (居民身份证号码): its first 17 digits, or all 18."""
    from gateway.core.identifiers import ResidentId, resident_id_check_character

    def complete(body: str) -> str:
        return ResidentId.parse(body + resident_id_check_character(body)).value

    _complete("resident ID number", number.upper(), whole=len(number) == 18, check=complete)


@identifier.command("licence")
@click.argument("licence_id")
def identifier_licence(licence_id: str) -> None:
    """An e-licence identifier (GB/T 36904): root.type.issuer.serial.version[.check]."""
    from gateway.core.identifiers import LICENCE_ROOT, LicenceId, licence_check_character

    def complete(body: str) -> str:
        parts = body.removeprefix(LICENCE_ROOT + ".").split(".")
        return LicenceId.parse(f"{body}.{licence_check_character(''.join(parts))}").value

    # The root has four dots; type, issuer, serial and version add four, the check a ninth.
    _complete("licence identifier", licence_id, whole=licence_id.count(".") == 9, check=complete)


@main.command()
@click.option("--url", default=None, help="Gateway base URL [http://HOST:PORT from settings].")
@click.option(
    "--history",
    is_flag=True,
    help="Instead: write a quarter and a half of synthetic demo service into the audit log "
    "and sign a checkpoint over it (for `gateway report quarter`); needs no running "
    "gateway, done once.",
)
def demo(url: str | None, history: bool) -> None:
    """Walk through lookups (allowed, three refusals) and licence verifications of every
    kind (by identifier, QR code, sealed document, offline) against a running gateway."""
    from gateway.demo.walkthrough import run_walkthrough

    settings = settings_or_exit()
    if history:
        _demo_history(settings)
        return
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


def _demo_history(settings: Settings) -> None:
    """``gateway demo --history``: the synthetic history, once per database."""
    import asyncio
    import datetime as dt

    import sqlalchemy as sa

    from gateway.app.runtime import sign_checkpoint_now
    from gateway.audit import SubjectHasher
    from gateway.cli.support import audit_log, database
    from gateway.core.policy import load_policy_set
    from gateway.demo.history import OPERATOR, history_entries
    from gateway.registry import keystore
    from gateway.storage.schema import audit_entries

    key = (
        bytes.fromhex(settings.audit_hmac_key)
        if settings.audit_hmac_key
        else keystore.ensure_audit_hmac_key(Path(settings.keys_dir))
    )
    policy = load_policy_set(Path(settings.policies_dir))
    with database(settings) as engine:
        with engine.connect() as conn:
            done = conn.execute(
                sa.select(sa.func.count()).where(audit_entries.c.operator == OPERATOR)
            ).scalar_one()
        entries = (
            []
            if done
            else history_entries(
                policy, now=dt.datetime.now(dt.UTC), hash_subject=SubjectHasher(key)
            )
        )

        async def append_all() -> None:
            for entry in entries:
                await audit.append(entry)

        with audit_log(engine) as audit:
            asyncio.run(append_all())
            if done:
                click.echo(f"demo history already written ({done} entries); nothing to do")
            else:
                click.echo(
                    f"demo history written: {len(entries)} audit entries (operator {OPERATOR}), "
                    f"from {entries[0].at:%Y-%m-%d} to {entries[-1].at:%Y-%m-%d}"
                    if entries
                    else "no history"
                )
            # Signed as the gateway's checkpoint loop signs (its key set, its answer
            # algorithm): a report covers the history with no gateway running. Also on a
            # second run, if the first signed none (a running gateway signs one as well).
            try:
                signed = sign_checkpoint_now(settings, engine, audit, dt.datetime.now(dt.UTC))
            except ConfigurationError as exc:
                raise click.ClickException("; ".join(exc.problems)) from None
    if signed is not None:
        click.echo(
            f"signed checkpoint: size {signed.size} root {signed.root}: "
            "now `gateway report quarter`"
        )


if __name__ == "__main__":
    main()
