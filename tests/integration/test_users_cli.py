"""`gateway users` against a real migrated SQLite database, as a separate process: exit codes,
messages, the audit entries of each act, and a login with the password the command stored
(hashed with the production scrypt parameters)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.accounts import AccountService, LoginRefused
from gateway.audit import GroupCommitAuditLog
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import audit_entries, departments
from tests.support import CommandResult, gateway_command

PASSWORD = "Correct-Horse-7"


def _users(data_dir: Path, *args: str, stdin: str = "", process: bool = False) -> CommandResult:
    return gateway_command(
        "users",
        *args,
        env={"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_KEYS_DIR": str(data_dir / "keys")},
        stdin=stdin,
        process=process,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A migrated gateway database (the path the settings name) with one department."""
    engine = create_database_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(departments).values(
                id="tax",
                name="区税务局",
                uscc="11430600006122009X",
                roles="consumer",
                updated_at=dt.datetime.now(dt.UTC),
            )
        )
    engine.dispose()
    return tmp_path


def _engine(data_dir: Path) -> sa.Engine:
    return create_database_engine(f"sqlite:///{data_dir / 'gateway.sqlite3'}")


def test_add_list_disable_reset(data_dir: Path) -> None:
    added = _users(
        data_dir,
        "add",
        "Alice",
        "--role",
        "clerk",
        "--department",
        "tax",
        "--name",
        "王丽",
        "--password-stdin",
        "--operator",
        "admin-1",
        stdin=PASSWORD + "\n",
        process=True,  # the console script itself, once; the others run in process
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added alice: clerk of tax (王丽)"
    officer = _users(
        data_dir, "add", "officer", "--role", "auditor", "--password-stdin", stdin=PASSWORD
    )
    assert officer.returncode == 0, officer.stderr

    listed = _users(data_dir, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "alice\tclerk\ttax\tenabled\t王丽",
        "officer\tauditor\t-\tenabled\tofficer",
    ]

    # The stored hash is a production one and logs in.
    engine = _engine(data_dir)
    audit = GroupCommitAuditLog(engine=engine)
    audit.start()
    try:
        service = AccountService(engine=engine, audit=audit)
        now = dt.datetime.now(dt.UTC)
        stored = service.accounts.get("alice")
        assert stored is not None
        assert stored.password_hash.startswith("scrypt$32768$8$1$")
        assert asyncio.run(service.login("alice", PASSWORD, now)).role == "clerk"

        disabled = _users(data_dir, "disable", "alice", "--operator", "admin-1")
        assert (disabled.returncode, disabled.stdout.strip()) == (0, "disabled alice")
        assert "alice\tclerk\ttax\tdisabled\t王丽" in _users(data_dir, "list").stdout
        with pytest.raises(LoginRefused):
            asyncio.run(service.login("alice", PASSWORD, now))

        assert _users(data_dir, "enable", "alice").returncode == 0
        reset = _users(data_dir, "reset", "alice", "--password-stdin", stdin="Battery-Staple-9\n")
        assert reset.returncode == 0, reset.stderr
        assert "lock-out cleared" in reset.stdout
        assert asyncio.run(service.login("alice", "Battery-Staple-9", now)).username == "alice"
    finally:
        audit.stop()

    with engine.connect() as conn:
        acts = conn.execute(
            sa.select(audit_entries.c.event, audit_entries.c.operator, audit_entries.c.detail)
            .where(audit_entries.c.event.like("console:account:%"))
            .order_by(audit_entries.c.idx)
        ).all()
    engine.dispose()
    assert [(event, operator) for event, operator, _ in acts] == [
        ("console:account:added", "admin-1"),
        ("console:account:added", acts[1][1]),
        ("console:account:disabled", "admin-1"),
        ("console:account:enabled", acts[3][1]),
        ("console:account:reset", acts[4][1]),
    ]
    assert acts[1][1].startswith("cli")  # the login name of whoever ran it
    assert acts[0][2] == "account alice, role clerk, department tax"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "bob", "--role", "clerk"), PASSWORD, "department: a clerk account needs"),
        (
            ("add", "bob", "--role", "clerk", "--department", "nowhere"),
            PASSWORD,
            "department: no registered department 'nowhere'",
        ),
        (
            ("add", "bob", "--role", "admin"),
            "short",
            "password: must be at least 12 characters long",
        ),
        (("add", "b", "--role", "admin"), PASSWORD, "username: 3 to 64 characters"),
        (("disable", "nobody"), "", "username: no account with this username"),
        (("reset", "nobody"), PASSWORD, "username: no account with this username"),
    ],
)
def test_refusals_exit_1_and_say_why(
    data_dir: Path, args: tuple[str, ...], stdin: str, message: str
) -> None:
    if args[0] in ("add", "reset"):
        args = (*args, "--password-stdin")
    result = _users(data_dir, *args, stdin=stdin)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    with _engine(data_dir).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_entries)).scalar() == 0


def test_duplicate_and_bad_role(data_dir: Path) -> None:
    args = ("add", "alice", "--role", "admin", "--password-stdin")
    assert _users(data_dir, *args, stdin=PASSWORD).returncode == 0
    again = _users(data_dir, *args, stdin=PASSWORD)
    assert again.returncode == 1
    assert "username: already taken" in again.stderr
    bad = _users(data_dir, "add", "bob", "--role", "root", "--password-stdin", stdin=PASSWORD)
    assert bad.returncode == 2  # click's usage error: the choices are listed
    assert "clerk" in bad.stderr


def test_an_uninitialised_database_is_named(tmp_path: Path) -> None:
    result = _users(tmp_path, "list")
    assert result.returncode == 1
    assert "run `gateway init` first" in result.stderr
