"""``gateway users``: the web console's accounts — add, disable, enable, reset, list.

Each change is audited (``console:account:added|disabled|enabled|reset``) through the
gateway's audit log on the configured database, before it is made. Passwords are read with a
hidden prompt (typed twice) or, for scripts, as one line on standard input
(``--password-stdin``); never from the command line, where other users could see them.

Exit status: 0 done; 1 refused (the value and why on stderr); 2 settings unusable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from gateway.accounts.model import Account
from gateway.accounts.service import AccountService
from gateway.cli.support import audit_log, database, settings_or_exit
from gateway.errors import Error

__all__ = ["users"]

T = TypeVar("T")


def _default_operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli"


_operator_option = click.option(
    "--operator",
    default=None,
    help="Who does this, for the audit log [cli:<login name>].",
)
_password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password as one line from standard input (for scripts).",
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt="Password again")
    return password


def _run(act: Callable[[AccountService], Coroutine[Any, Any, T]]) -> T:
    """Run ``act`` with a service on the configured database and a started audit log."""
    with database(settings_or_exit()) as engine:
        if not sa.inspect(engine).has_table("console_accounts"):
            raise click.ClickException(
                "the database has no console accounts yet: run `gateway init` first"
            )
        with audit_log(engine) as audit:
            try:
                return asyncio.run(act(AccountService(engine=engine, audit=audit)))
            except Error as exc:
                raise click.ClickException(str(exc)) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _state(account: Account, now: dt.datetime) -> str:
    if account.disabled:
        return "disabled"
    if account.locked_at(now) and account.locked_until is not None:
        return f"locked until {account.locked_until.isoformat(timespec='seconds')}"
    return "enabled"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def users() -> None:
    """The web console's accounts (clerks, auditors, administrators)."""


@users.command()
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["clerk", "auditor", "admin"]),
    help="clerk (of one department), auditor (security officer) or admin.",
)
@click.option("--department", default=None, help="The clerk's department id (clerks only).")
@click.option("--name", "display_name", default=None, help="Display name [USERNAME].")
@_password_stdin_option
@_operator_option
def add(  # noqa: PLR0917 - click passes every option positionally by name
    username: str,
    role: str,
    department: str | None,
    display_name: str | None,
    password_stdin: bool,
    operator: str | None,
) -> None:
    """Add the account USERNAME (enabled) with a new password."""
    password = _read_password(password_stdin)
    account = _run(
        lambda service: service.add_account(
            username=username,
            password=password,
            role=role,
            department=department,
            display_name=display_name,
            operator=operator or _default_operator(),
            now=_now(),
        )
    )
    where = f" of {account.department}" if account.department else ""
    click.echo(f"added {account.username}: {account.role}{where} ({account.display_name})")


@users.command()
@click.argument("username")
@_operator_option
def disable(username: str, operator: str | None) -> None:
    """Disable USERNAME: it cannot log in, and its sessions end now."""
    account = _run(
        lambda service: service.disable(
            username, operator=operator or _default_operator(), now=_now()
        )
    )
    click.echo(f"disabled {account.username}")


@users.command()
@click.argument("username")
@_operator_option
def enable(username: str, operator: str | None) -> None:
    """Enable USERNAME again."""
    account = _run(
        lambda service: service.enable(
            username, operator=operator or _default_operator(), now=_now()
        )
    )
    click.echo(f"enabled {account.username}")


@users.command()
@click.argument("username")
@_password_stdin_option
@_operator_option
def reset(username: str, password_stdin: bool, operator: str | None) -> None:
    """Give USERNAME a new password; clears a lock-out and ends its sessions."""
    password = _read_password(password_stdin)
    account = _run(
        lambda service: service.reset_password(
            username, password, operator=operator or _default_operator(), now=_now()
        )
    )
    click.echo(f"new password set for {account.username}; lock-out cleared, sessions ended")


@users.command(name="list")
def list_() -> None:
    """Every account: username, role, department, state, display name."""
    accounts = _run(lambda service: service.list_accounts())
    now = _now()
    if not accounts:
        click.echo("no accounts")
        return
    for account in accounts:
        click.echo(
            "\t".join(
                (
                    account.username,
                    str(account.role),
                    account.department or "-",
                    _state(account, now),
                    account.display_name,
                )
            )
        )
