"""Console accounts on a real database (SQLite file; PostgreSQL too where it answers):
password hashes and policy, login with lock-out, sessions and CSRF, and the audit entry of
every login outcome — read back from a real group-commit audit log on the same database.

scrypt is slow on purpose; these tests hash with lower parameters passed explicitly
(:data:`FAST`), never by lowering the production default (checked once below).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from gateway.accounts import (
    AccountService,
    LockoutPolicy,
    LoginRefused,
    PasswordHasher,
    Role,
    ScryptParameters,
    Session,
    SessionPolicy,
    session_cookie,
)
from gateway.accounts.model import check_department, normalise_username, parse_role
from gateway.accounts.passwords import (
    PRODUCTION_PARAMETERS,
    password_problems,
    require_acceptable_password,
)
from gateway.audit import GroupCommitAuditLog
from gateway.errors import InvalidInput, StoreUnavailable
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from gateway.storage.schema import audit_entries, console_accounts, console_sessions, departments
from tests.support import postgres_database

T = TypeVar("T")

FAST = ScryptParameters(n=2**4, r=8, p=1)
T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
PASSWORD = "Correct-Horse-7"
OTHER = "Battery-Staple-9"
ADMIN = "cli:root"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- passwords ---------------------------------------------------------------------------


def test_hash_round_trip_and_wrong_password() -> None:
    hasher = PasswordHasher(FAST)
    encoded = hasher.hash(PASSWORD)
    scheme, n, r, p, _salt, _key = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "8", "1")
    assert PASSWORD not in encoded
    assert hasher.verify(PASSWORD, encoded)
    assert not hasher.verify(PASSWORD + "x", encoded)
    assert not hasher.verify("", encoded)
    assert hasher.hash(PASSWORD) != encoded  # a fresh salt each time


def test_production_parameters_are_memory_hard() -> None:
    assert PasswordHasher().parameters == PRODUCTION_PARAMETERS == ScryptParameters(2**15, 8, 1)
    encoded = PasswordHasher().hash(PASSWORD)  # one real one (~0.1 s)
    assert encoded.startswith("scrypt$32768$8$1$")
    assert PasswordHasher(FAST).verify(PASSWORD, encoded)  # verified with its own parameters


def test_encoded_parameters_are_honoured() -> None:
    old, new = PasswordHasher(FAST), PasswordHasher(ScryptParameters(n=2**5, r=4, p=2))
    encoded = old.hash(PASSWORD)
    assert new.verify(PASSWORD, encoded)  # what the string says, not the hasher's own
    assert new.needs_rehash(encoded)
    assert not old.needs_rehash(encoded)
    tampered = encoded.replace("scrypt$16$", "scrypt$32$", 1)
    assert not old.verify(PASSWORD, tampered)
    for unusable in ("", "bcrypt$x", "scrypt$16$8$1$!!$!!", "scrypt$3$8$1$AAAA$AAAA"):
        assert not old.verify(PASSWORD, unusable)
        assert old.needs_rehash(unusable)


def test_scrypt_parameters_are_bounded() -> None:
    for n, r, p in ((3, 8, 1), (2**21, 8, 1), (16, 0, 1), (16, 8, 17)):
        with pytest.raises(ValueError, match="scrypt"):
            ScryptParameters(n=n, r=r, p=p)


def test_password_policy_says_why() -> None:
    assert password_problems(PASSWORD) == []
    assert password_problems("中文密码也可以用来登录Abc") == []
    assert password_problems("Short-1") == ["must be at least 12 characters long"]
    assert password_problems("alllowercaseletters") == [
        "must mix at least two kinds of characters "
        "(lower-case letters, upper-case letters, digits, other characters)"
    ]
    assert "must not contain the username" in password_problems(
        "Alice-2026-spring", username="alice"
    )
    assert "must not begin or end with a space" in password_problems(" Correct-Horse-7")
    assert password_problems("A1" * 200) == ["must be at most 256 characters long"]
    with pytest.raises(InvalidInput) as caught:
        require_acceptable_password("short")
    assert caught.value.field == "password"
    assert "at least 12" in caught.value.reason
    assert "two kinds" in caught.value.reason


def test_usernames_roles_and_departments() -> None:
    assert normalise_username("  Alice.Wang ") == "alice.wang"
    for bad in ("ab", "-alice", "alice wang", "张三", "a" * 65):
        with pytest.raises(InvalidInput, match="username"):
            normalise_username(bad)
    assert parse_role("Auditor") is Role.AUDITOR
    with pytest.raises(InvalidInput, match="clerk, auditor, admin"):
        parse_role("root")
    assert check_department(Role.CLERK, "tax") == "tax"
    assert check_department(Role.ADMIN, None) is None
    with pytest.raises(InvalidInput, match="needs its department"):
        check_department(Role.CLERK, None)
    with pytest.raises(InvalidInput, match="only clerk accounts"):
        check_department(Role.AUDITOR, "tax")


# --- the database: SQLite file, and PostgreSQL where it answers ----------------------------


def _register_department(engine: sa.Engine, department: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(departments).values(
                id=department,
                name="区税务局",
                uscc="11430600006122009X",
                roles="consumer",
                updated_at=T0,
            )
        )


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file with the tax department registered, copied for each test."""
    path = tmp_path_factory.mktemp("accounts") / "template.sqlite3"
    engine = create_database_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    _register_department(engine, "tax")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def postgres_engine() -> Iterator[sa.Engine]:
    with postgres_database() as url:
        engine = create_database_engine(url)
        migrations.upgrade(engine)
        _register_department(engine, "tax")
        yield engine
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        path = tmp_path / "g.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        sqlite = create_database_engine(f"sqlite:///{path}")
        yield sqlite
        sqlite.dispose()
        return
    pg: sa.Engine = request.getfixturevalue("postgres_engine")
    with pg.begin() as conn:  # each test starts with no accounts and an empty log
        for table in (console_sessions, console_accounts, audit_entries):
            conn.execute(sa.delete(table))
        conn.execute(sa.text("DELETE FROM merkle_nodes"))
    yield pg


@pytest.fixture
def audit(engine: sa.Engine) -> Iterator[GroupCommitAuditLog]:
    log = GroupCommitAuditLog(engine=engine, timeout=5)
    log.start()
    yield log
    log.stop()


@pytest.fixture
def service(engine: sa.Engine, audit: GroupCommitAuditLog) -> AccountService:
    return AccountService(
        engine=engine,
        audit=audit,
        hasher=PasswordHasher(FAST),
        lockout=LockoutPolicy(max_failures=5, lock_for=dt.timedelta(minutes=15)),
        sessions=SessionPolicy(idle=dt.timedelta(minutes=15), absolute=dt.timedelta(hours=8)),
    )


def _entries(engine: sa.Engine) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(event, decision, operator, department, reason_code) of every entry, in log order."""
    c = audit_entries.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.event, c.decision, c.operator, c.department, c.reason_code).order_by(c.idx)
        ).all()
    return [tuple(row) for row in rows]


def _add(service: AccountService, username: str = "alice", **kw: Any) -> None:
    values: dict[str, Any] = {
        "password": PASSWORD,
        "role": "clerk",
        "department": "tax",
        "display_name": "王丽",
        "operator": ADMIN,
        "now": T0,
    }
    values.update(kw)
    run(service.add_account(username=username, **values))


def _refusal(service: AccountService, username: str, password: str, now: dt.datetime) -> str:
    with pytest.raises(LoginRefused) as caught:
        run(service.login(username, password, now))
    assert str(caught.value) == "wrong username or password, or the account cannot log in now"
    return caught.value.reason


# --- accounts and logging in --------------------------------------------------------------


def test_add_then_login(service: AccountService, engine: sa.Engine) -> None:
    _add(service)
    _add(service, "officer", role="auditor", department=None, display_name=None)
    session = run(service.login(" Alice ", PASSWORD, T0 + dt.timedelta(minutes=1)))
    assert (session.username, session.role, session.department) == ("alice", Role.CLERK, "tax")
    assert session.display_name == "王丽"
    assert [(a.username, a.role, a.department) for a in run(service.list_accounts())] == [
        ("alice", Role.CLERK, "tax"),
        ("officer", Role.AUDITOR, None),
    ]
    assert _entries(engine) == [
        ("console:account:added", "allowed", ADMIN, "tax", None),
        ("console:account:added", "allowed", ADMIN, None, None),
        ("console:login:succeeded", "allowed", "alice", "tax", None),
    ]


def test_adding_checks_every_value_and_audits_nothing_refused(
    service: AccountService, engine: sa.Engine
) -> None:
    _add(service)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"username": "alice"}, "username", "already taken"),
        ({"username": "x"}, "username", "3 to 64"),
        ({"role": "root"}, "role", "must be one of"),
        ({"department": None}, "department", "needs its department"),
        ({"department": "nowhere"}, "department", "no registered department 'nowhere'"),
        ({"role": "admin"}, "department", "only clerk accounts"),
        ({"password": "tooshort"}, "password", "at least 12"),
        ({"password": "bob-Password-1"}, "password", "must not contain the username"),
    ]
    for change, field, reason in cases:
        values = {"username": "bob", **change}
        with pytest.raises(InvalidInput) as caught:
            _add(service, **values)
        assert caught.value.field == field
        assert reason in caught.value.reason
    assert [a.username for a in run(service.list_accounts())] == ["alice"]
    assert [e[0] for e in _entries(engine)] == ["console:account:added"]


def test_every_refusal_says_the_same_and_the_audit_log_says_why(
    service: AccountService, engine: sa.Engine
) -> None:
    _add(service)
    assert _refusal(service, "nobody", PASSWORD, T0) == "unknown-account"
    assert _refusal(service, "not a name!", PASSWORD, T0) == "unknown-account"
    assert _refusal(service, "alice", OTHER, T0) == "wrong-password"
    assert _entries(engine)[1:] == [
        ("console:login:failed", "refused", None, None, "unknown-account"),
        ("console:login:failed", "refused", None, None, "unknown-account"),
        ("console:login:failed", "refused", "alice", "tax", "wrong-password"),
    ]


def test_lock_out_after_five_failures_then_unlock_after_fifteen_minutes(
    service: AccountService, engine: sa.Engine
) -> None:
    _add(service)
    for i in range(4):
        _refusal(service, "alice", OTHER, T0 + dt.timedelta(seconds=i))
    assert service.accounts.get("alice").failed_attempts == 4  # type: ignore[union-attr]
    locked_at = T0 + dt.timedelta(seconds=10)
    assert _refusal(service, "alice", OTHER, locked_at) == "wrong-password"
    account = service.accounts.get("alice")
    assert account is not None
    assert account.locked_until == locked_at + dt.timedelta(minutes=15)
    assert account.failed_attempts == 0
    # Locked: even the right password is refused, and the refusal does not extend the lock.
    assert _refusal(service, "alice", PASSWORD, locked_at + dt.timedelta(minutes=14)) == "locked"
    assert service.accounts.get("alice").locked_until == account.locked_until  # type: ignore[union-attr]
    # The lock ends by itself.
    session = run(service.login("alice", PASSWORD, locked_at + dt.timedelta(minutes=15)))
    assert session.username == "alice"
    assert service.accounts.get("alice").locked_until is None  # type: ignore[union-attr]
    events = _entries(engine)[1:]
    assert events == [
        *[("console:login:failed", "refused", "alice", "tax", "wrong-password")] * 5,
        ("console:account:locked", "refused", "alice", "tax", "too-many-failures"),
        ("console:login:failed", "refused", "alice", "tax", "locked"),
        ("console:login:succeeded", "allowed", "alice", "tax", None),
    ]


def test_success_clears_the_count_of_failures(service: AccountService) -> None:
    _add(service)
    for i in range(4):
        _refusal(service, "alice", OTHER, T0 + dt.timedelta(seconds=i))
    run(service.login("alice", PASSWORD, T0 + dt.timedelta(seconds=5)))
    for i in range(4):
        _refusal(service, "alice", OTHER, T0 + dt.timedelta(seconds=10 + i))
    assert not service.accounts.get("alice").locked_at(T0 + dt.timedelta(seconds=20))  # type: ignore[union-attr]


def test_disabled_account_cannot_log_in_and_loses_its_sessions(
    service: AccountService, engine: sa.Engine
) -> None:
    _add(service)
    session = run(service.login("alice", PASSWORD, T0))
    run(service.disable("alice", operator=ADMIN, now=T0 + dt.timedelta(minutes=1)))
    assert run(service.session(session.token, T0 + dt.timedelta(minutes=2))) is None
    assert service.sessions.count("alice") == 0
    assert _refusal(service, "alice", PASSWORD, T0 + dt.timedelta(minutes=2)) == "disabled"
    run(service.enable("alice", operator=ADMIN, now=T0 + dt.timedelta(minutes=3)))
    run(service.login("alice", PASSWORD, T0 + dt.timedelta(minutes=4)))
    assert [e[0] for e in _entries(engine)[1:]] == [
        "console:login:succeeded",
        "console:account:disabled",
        "console:login:failed",
        "console:account:enabled",
        "console:login:succeeded",
    ]


def test_reset_sets_a_new_password_clears_the_lock_and_ends_sessions(
    service: AccountService, engine: sa.Engine
) -> None:
    _add(service)
    session = run(service.login("alice", PASSWORD, T0))
    for i in range(5):
        _refusal(service, "alice", OTHER + str(i), T0 + dt.timedelta(seconds=i + 1))
    assert service.accounts.get("alice").locked_at(T0 + dt.timedelta(seconds=10))  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="password"):
        run(service.reset_password("alice", "weak", operator=ADMIN, now=T0))
    with pytest.raises(InvalidInput, match="no account"):
        run(service.reset_password("nobody", OTHER, operator=ADMIN, now=T0))
    account = run(service.reset_password("alice", OTHER, operator=ADMIN, now=T0 + dt.timedelta(1)))
    assert (account.failed_attempts, account.locked_until) == (0, None)
    later = T0 + dt.timedelta(minutes=2)
    assert run(service.session(session.token, later)) is None
    assert _refusal(service, "alice", PASSWORD, later) == "wrong-password"
    assert run(service.login("alice", OTHER, later)).username == "alice"
    assert ("console:account:reset", "allowed", ADMIN, "tax", None) in _entries(engine)


def test_hash_is_renewed_at_login_when_parameters_were_raised(
    engine: sa.Engine, audit: GroupCommitAuditLog
) -> None:
    weak = AccountService(engine=engine, audit=audit, hasher=PasswordHasher(FAST))
    _add(weak)
    stronger = ScryptParameters(n=2**6, r=8, p=1)
    service = AccountService(engine=engine, audit=audit, hasher=PasswordHasher(stronger))
    run(service.login("alice", PASSWORD, T0))
    stored = service.accounts.get("alice").password_hash  # type: ignore[union-attr]
    assert stored.startswith("scrypt$64$8$1$")
    assert run(service.login("alice", PASSWORD, T0)).username == "alice"


def test_no_session_without_its_audit_entry(engine: sa.Engine, service: AccountService) -> None:
    _add(service)
    stopped = GroupCommitAuditLog(engine=engine)  # never started: every append fails
    broken = AccountService(engine=engine, audit=stopped, hasher=PasswordHasher(FAST))
    with pytest.raises(StoreUnavailable):
        run(broken.login("alice", PASSWORD, T0))
    assert broken.sessions.count("alice") == 0
    with pytest.raises(StoreUnavailable):
        run(broken.disable("alice", operator=ADMIN, now=T0))
    assert not broken.accounts.get("alice").disabled  # type: ignore[union-attr]


# --- sessions -----------------------------------------------------------------------------


def _login(service: AccountService, now: dt.datetime = T0) -> Session:
    _add(service)
    return run(service.login("alice", PASSWORD, now))


def test_session_id_is_random_and_stored_only_as_its_hash(
    service: AccountService, engine: sa.Engine
) -> None:
    session = _login(service)
    other = run(service.login("alice", PASSWORD, T0))
    assert session.token != other.token
    assert len(session.token) >= 43  # 256 bits, base64
    assert session.csrf_token != other.csrf_token
    assert session.token not in repr(session)
    assert session.csrf_token not in repr(session)
    with engine.connect() as conn:
        rows = [tuple(str(v) for v in row) for row in conn.execute(sa.select(console_sessions))]
    assert len(rows) == 2
    stored = {row[0] for row in rows}
    assert hashlib.sha256(session.token.encode()).hexdigest() in stored
    assert not any(session.token in value for row in rows for value in row)


def test_idle_timeout_restarts_with_each_use(service: AccountService) -> None:
    session = _login(service)
    now = T0
    for _ in range(3):  # used every 14 minutes: stays alive
        now += dt.timedelta(minutes=14)
        assert run(service.session(session.token, now)) is not None
    assert run(service.session(session.token, now + dt.timedelta(minutes=15))) is None
    assert run(service.session(session.token, now)) is None  # expired sessions are gone
    assert run(service.session(None, now)) is None
    assert run(service.session("forged", now)) is None


def test_absolute_timeout_ends_even_a_busy_session(service: AccountService) -> None:
    session = _login(service)
    now = T0
    while now + dt.timedelta(minutes=10) < T0 + dt.timedelta(hours=8):
        now += dt.timedelta(minutes=10)
        live = run(service.session(session.token, now))
        assert live is not None
        assert live.expires_at == T0 + dt.timedelta(hours=8)
    assert run(service.session(session.token, T0 + dt.timedelta(hours=8))) is None


def test_csrf_token_right_wrong_missing(service: AccountService) -> None:
    session = _login(service)
    other = run(service.login("alice", PASSWORD, T0))
    assert service.csrf_ok(session, session.csrf_token)
    assert not service.csrf_ok(session, other.csrf_token)
    assert not service.csrf_ok(session, session.csrf_token[:-1])
    assert not service.csrf_ok(session, "")
    assert not service.csrf_ok(session, None)
    assert not service.csrf_ok(session, "令牌")
    resolved = run(service.session(session.token, T0 + dt.timedelta(minutes=1)))
    assert resolved is not None
    assert resolved.csrf_token == session.csrf_token  # the same token for the whole session


def test_logout_ends_the_session_and_is_audited(service: AccountService, engine: sa.Engine) -> None:
    session = _login(service)
    other = run(service.login("alice", PASSWORD, T0))
    assert run(service.logout(session.token, T0 + dt.timedelta(minutes=1)))
    assert run(service.session(session.token, T0 + dt.timedelta(minutes=2))) is None
    assert run(service.session(other.token, T0 + dt.timedelta(minutes=2))) is not None
    assert not run(service.logout(session.token, T0 + dt.timedelta(minutes=3)))
    assert _entries(engine)[-1] == ("console:logout:performed", "allowed", "alice", "tax", None)
    assert [e[0] for e in _entries(engine)].count("console:logout:performed") == 1


def test_cookie_attributes(service: AccountService) -> None:
    session = _login(service)
    cookie = session_cookie(SessionPolicy(), session)
    assert (cookie.key, cookie.value, cookie.path) == ("__Host-yiwang-session", session.token, "/")
    assert (cookie.httponly, cookie.samesite, cookie.secure) == (True, "strict", True)
    assert cookie.max_age == 8 * 3600
    assert cookie.header() == (
        f"__Host-yiwang-session={session.token}; Path=/; Max-Age=28800; Secure; HttpOnly;"
        " SameSite=Strict"
    )
    assert session.token not in repr(cookie)
    plain = session_cookie(SessionPolicy(secure_cookie=False), session)
    assert (plain.key, plain.secure) == ("yiwang-session", False)
    assert "Secure" not in plain.header()
    cleared = session_cookie(SessionPolicy(), None)
    assert (cleared.value, cleared.max_age) == ("", 0)


def test_times_must_be_aware(service: AccountService) -> None:
    with pytest.raises(ValueError, match="aware"):
        run(service.login("alice", PASSWORD, dt.datetime(2026, 12, 7, 9, 0)))
