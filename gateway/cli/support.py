"""What the ``gateway`` sub-commands share: settings or a clear exit, a signing client, and
the small factory commands build their services from (the database, a started audit log)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.errors import ConfigurationError
from gateway.sdk import GatewayClient, GatewayProblem
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:  # commands that only sign and send never load the database layer
    import sqlalchemy as sa

    from gateway.audit import GroupCommitAuditLog

__all__ = [
    "audit_log",
    "base_url",
    "database",
    "department_client",
    "open_client",
    "settings_or_exit",
]


def settings_or_exit(**overrides: Any) -> Settings:
    """The validated settings; every unusable one listed and exit status 2 otherwise."""
    try:
        return load_settings(overrides=overrides)
    except ConfigurationError as exc:
        click.echo("The gateway's settings are not usable:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(2)


def base_url(settings: Settings, url: str | None) -> str:
    """``url`` if given, else the gateway these settings serve."""
    return url or f"http://{settings.host}:{settings.port}"


def open_client(settings: Settings, department: str, url: str | None) -> GatewayClient:
    """A client signing as ``department`` with its key from the key store."""
    return GatewayClient.from_key_file(
        base_url=base_url(settings, url),
        department=department,
        key_path=Path(settings.keys_dir) / "departments" / f"{department}.private.jwk.json",
        audience=settings.gateway_id,
    )


@contextmanager
def department_client(department: str, url: str | None) -> Iterator[GatewayClient]:
    """:func:`open_client` whose refusals end the command: the problem on stderr, exit 1."""
    try:
        with open_client(settings_or_exit(), department, url) as client:
            yield client
    except GatewayProblem as exc:
        click.echo(json.dumps(exc.problem, ensure_ascii=False, indent=2), err=True)
        sys.exit(1)


@contextmanager
def database(settings: Settings) -> Iterator[sa.Engine]:
    """The configured database for one command, released when it ends."""
    from gateway.storage.database import create_database_engine

    engine = create_database_engine(
        settings.effective_database_url, busy_timeout_ms=settings.db_busy_timeout_ms
    )
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def audit_log(engine: sa.Engine) -> Iterator[GroupCommitAuditLog]:
    """A started audit log on ``engine`` for a command that writes entries; flushed at the
    end (every entry the command made is durable before it exits)."""
    from gateway.audit import GroupCommitAuditLog

    log = GroupCommitAuditLog(engine=engine)
    log.start()
    try:
        yield log
    finally:
        log.stop()
