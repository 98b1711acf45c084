"""Accounts in the gateway's database (SQLAlchemy Core; synchronous — the service calls it
through :func:`asyncio.to_thread`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.accounts.model import Account, Role, require_aware
from gateway.errors import InvalidInput
from gateway.storage.schema import console_accounts, console_sessions, departments

__all__ = ["AccountStore", "LockoutPolicy", "as_utc"]


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """After ``max_failures`` wrong passwords in a row the account is locked for ``lock_for``;
    the count starts again from zero then (and after every successful login)."""

    max_failures: int = 5
    lock_for: dt.timedelta = dt.timedelta(minutes=15)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time in UTC (SQLite gives back the wall time only; it was written in UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _account(row: Any) -> Account:
    return Account(
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        department=row.department,
        disabled=bool(row.disabled),
        failed_attempts=int(row.failed_attempts),
        locked_until=None if row.locked_until is None else as_utc(row.locked_until),
        password_hash=row.password_hash,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _no_account() -> InvalidInput:
    return InvalidInput("username", "no account with this username")


class AccountStore:
    """Adds, reads and changes console accounts. Usernames are passed in stored form
    (see :func:`gateway.accounts.model.normalise_username`); times must be aware."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def add(
        self,
        *,
        username: str,
        display_name: str,
        role: Role,
        department: str | None,
        password_hash: str,
        now: dt.datetime,
    ) -> Account:
        """Store a new, enabled account. InvalidInput if the username is taken or a clerk's
        department is not registered."""
        now = require_aware(now)
        with self._engine.begin() as conn:
            if department is not None and (
                conn.execute(
                    sa.select(departments.c.id).where(departments.c.id == department)
                ).scalar_one_or_none()
                is None
            ):
                raise InvalidInput("department", f"no registered department {department!r}")
            try:
                conn.execute(
                    sa.insert(console_accounts).values(
                        username=username,
                        display_name=display_name,
                        role=str(role),
                        department=department,
                        disabled=False,
                        failed_attempts=0,
                        locked_until=None,
                        password_hash=password_hash,
                        created_at=now,
                        updated_at=now,
                    )
                )
            except IntegrityError:
                raise InvalidInput("username", "already taken") from None
            return self._get(conn, username)  # type: ignore[return-value]

    def get(self, username: str) -> Account | None:
        """The account, or None."""
        with self._engine.connect() as conn:
            return self._get(conn, username)

    def list(self) -> list[Account]:
        """Every account, by username."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(console_accounts).order_by(console_accounts.c.username))
            return [_account(row) for row in rows]

    def set_disabled(self, username: str, disabled: bool, now: dt.datetime) -> Account:
        """Disable (ending every session of the account) or enable it again."""
        with self._engine.begin() as conn:
            self._update(conn, username, now, disabled=disabled)
            if disabled:
                conn.execute(
                    sa.delete(console_sessions).where(console_sessions.c.username == username)
                )
            return self._get(conn, username)  # type: ignore[return-value]

    def reset_password(self, username: str, password_hash: str, now: dt.datetime) -> Account:
        """A new password: clears any lock-out and ends every session of the account."""
        with self._engine.begin() as conn:
            self._update(
                conn,
                username,
                now,
                password_hash=password_hash,
                failed_attempts=0,
                locked_until=None,
            )
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.username == username))
            return self._get(conn, username)  # type: ignore[return-value]

    def replace_hash(self, username: str, password_hash: str, now: dt.datetime) -> None:
        """Store a new hash of the same password (parameters raised); sessions stay."""
        with self._engine.begin() as conn:
            self._update(conn, username, now, password_hash=password_hash)

    def record_success(self, username: str, now: dt.datetime) -> Account:
        """A successful login: the count of failures and any (expired) lock are cleared."""
        with self._engine.begin() as conn:
            self._update(conn, username, now, failed_attempts=0, locked_until=None)
            return self._get(conn, username)  # type: ignore[return-value]

    def record_failure(
        self, username: str, now: dt.datetime, policy: LockoutPolicy
    ) -> tuple[Account, bool]:
        """A wrong password: count it; at ``policy.max_failures`` lock the account. Returns
        the account and whether this failure locked it. Atomic: the first UPDATE holds the
        row (PostgreSQL) or the database (SQLite) until the commit."""
        now = require_aware(now)
        with self._engine.begin() as conn:
            self._update(
                conn, username, now, failed_attempts=console_accounts.c.failed_attempts + 1
            )
            account = self._get(conn, username)
            assert account is not None  # the update found it
            if account.failed_attempts < policy.max_failures:
                return account, False
            self._update(conn, username, now, failed_attempts=0, locked_until=now + policy.lock_for)
            return self._get(conn, username), True  # type: ignore[return-value]

    @staticmethod
    def _get(conn: sa.Connection, username: str) -> Account | None:
        row = conn.execute(
            sa.select(console_accounts).where(console_accounts.c.username == username)
        ).one_or_none()
        return None if row is None else _account(row)

    @staticmethod
    def _update(conn: sa.Connection, username: str, now: dt.datetime, **values: Any) -> None:
        result = conn.execute(
            sa.update(console_accounts)
            .where(console_accounts.c.username == username)
            .values(updated_at=require_aware(now), **values)
        )
        if result.rowcount == 0:
            raise _no_account()
