"""Console accounts end to end: log in, log out, manage accounts — every act audited.

Login answers every refusal with one message (:data:`LOGIN_REFUSED_MESSAGE`), whatever the
cause: unknown username, wrong password, locked or disabled account; the cause goes to the
audit log only. An unknown username costs the same scrypt work as a known one.

Order of writes: an administrator's act (add, disable, enable, reset) is checked, then
audited, then done — so no act is ever done unaudited (if the audit log cannot be written,
nothing changes). A login is audited before its session is handed out: if the entry cannot
be written, the new session is ended again and :class:`~gateway.errors.StoreUnavailable`
raised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import NoReturn

import sqlalchemy as sa

from gateway.accounts.model import (
    Account,
    check_department,
    normalise_username,
    parse_role,
    require_aware,
)
from gateway.accounts.passwords import PasswordHasher, require_acceptable_password
from gateway.accounts.sessions import Session, SessionPolicy, SessionStore, csrf_matches
from gateway.accounts.store import AccountStore, LockoutPolicy
from gateway.audit import AuditEntry, AuditLog, Outcome
from gateway.core.protocol import AuditEvent
from gateway.errors import Error, InvalidInput
from gateway.storage.schema import departments

__all__ = ["EVENTS", "LOGIN_REFUSED_MESSAGE", "AccountService", "LoginRefused"]

LOGIN_REFUSED_MESSAGE = "wrong username or password, or the account cannot log in now"

#: The audit events this module writes.
EVENTS = {
    "succeeded": AuditEvent.CONSOLE_LOGIN,
    "failed": AuditEvent.CONSOLE_LOGIN_FAILED,
    "locked": AuditEvent.ACCOUNT_LOCKED,
    "logout": AuditEvent.CONSOLE_LOGOUT,
    "added": AuditEvent.ACCOUNT_ADDED,
    "disabled": AuditEvent.ACCOUNT_DISABLED,
    "enabled": AuditEvent.ACCOUNT_ENABLED,
    "reset": AuditEvent.ACCOUNT_RESET,
}


class LoginRefused(Error):
    """A login was refused. ``str()`` is the one message every refusal shows; ``reason``
    (``unknown-account``, ``wrong-password``, ``locked``, ``disabled``) is for the audit log
    only, never for the person logging in."""

    def __init__(self, reason: str) -> None:
        super().__init__(LOGIN_REFUSED_MESSAGE)
        self.reason = reason


class AccountService:
    """Accounts, sessions and their audit entries over one database and one audit log.

    ``hasher`` defaults to the production scrypt parameters; tests pass a
    :class:`PasswordHasher` with lower ones to stay fast.
    """

    def __init__(
        self,
        *,
        engine: sa.Engine,
        audit: AuditLog,
        hasher: PasswordHasher | None = None,
        lockout: LockoutPolicy | None = None,
        sessions: SessionPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._audit_log = audit
        self.hasher = hasher or PasswordHasher()
        self.lockout = lockout or LockoutPolicy()
        self.accounts = AccountStore(engine)
        self.sessions = SessionStore(engine, sessions)

    # --- logging in and out ------------------------------------------------------------

    async def login(self, username: str, password: str, now: dt.datetime) -> Session:
        """A new session for the account, or :class:`LoginRefused` (audited either way)."""
        now = require_aware(now)
        try:
            name: str | None = normalise_username(username)
        except InvalidInput:
            name = None
        account = None if name is None else await asyncio.to_thread(self.accounts.get, name)
        if account is None:
            await asyncio.to_thread(self.hasher.verify_nobody, password)
            await self._refuse(now, None, "unknown-account")
        right = await asyncio.to_thread(self.hasher.verify, password, account.password_hash)
        if account.disabled:
            await self._refuse(now, account, "disabled")
        if account.locked_at(now):
            await self._refuse(now, account, "locked", f"locked until {account.locked_until}")
        if not right:
            counted, locked = await asyncio.to_thread(
                self.accounts.record_failure, account.username, now, self.lockout
            )
            failures = self.lockout.max_failures if locked else counted.failed_attempts
            await self._refuse(
                now,
                counted,
                "wrong-password",
                f"failure {failures} of {self.lockout.max_failures}",
                locked_until=counted.locked_until if locked else None,
            )
        await asyncio.to_thread(self.accounts.record_success, account.username, now)
        if self.hasher.needs_rehash(account.password_hash):  # parameters were raised
            new_hash = await asyncio.to_thread(self.hasher.hash, password)
            await asyncio.to_thread(self.accounts.replace_hash, account.username, new_hash, now)
        session = await asyncio.to_thread(self.sessions.create, account.username, now)
        try:
            await self._audit(now, EVENTS["succeeded"], Outcome.ALLOWED, account, account.username)
        except BaseException:
            await asyncio.to_thread(self.sessions.revoke, session.token)
            raise
        return session

    async def session(self, token: str | None, now: dt.datetime) -> Session | None:
        """The live session the cookie ``token`` names (its idle clock restarted), or None."""
        return await asyncio.to_thread(self.sessions.resolve, token, now)

    @staticmethod
    def csrf_ok(session: Session, submitted: str | None) -> bool:
        """Whether a form's CSRF token belongs to ``session`` (constant-time)."""
        return csrf_matches(session, submitted)

    async def refuse_forged_form(
        self, session: Session | None, *, method: str, path: str, now: dt.datetime
    ) -> int:
        """Record a console form whose CSRF token did not match (nothing else happens)."""
        return await self._audit_log.append(
            AuditEntry(
                at=require_aware(now),
                event=AuditEvent.CONSOLE_CSRF_REFUSED,
                decision=Outcome.REFUSED,
                department=None if session is None else session.department,
                operator=None if session is None else session.username,
                reason_code="csrf-mismatch",
                detail=f"{method} {path}",
            )
        )

    async def logout(self, token: str | None, now: dt.datetime) -> bool:
        """End the session ``token`` names; audited if it was live. Whether it was."""
        session = await self.session(token, now)
        if session is None:
            return False
        await asyncio.to_thread(self.sessions.revoke, session.token)
        await self._audit(
            require_aware(now),
            EVENTS["logout"],
            Outcome.ALLOWED,
            None,
            session.username,
            department=session.department,
        )
        return True

    # --- managing accounts (administrators, `gateway users`) ---------------------------

    async def add_account(
        self,
        *,
        username: str,
        password: str,
        role: str,
        department: str | None,
        display_name: str | None,
        operator: str,
        now: dt.datetime,
    ) -> Account:
        """A new, enabled account. InvalidInput names the first unusable value."""
        now = require_aware(now)
        name = normalise_username(username)
        the_role = parse_role(role)
        dept = check_department(the_role, department.strip() if department else None)
        display = (display_name or "").strip() or name
        if len(display) > 128:
            raise InvalidInput("name", "at most 128 characters")
        require_acceptable_password(password, username=name)
        if await asyncio.to_thread(self.accounts.get, name) is not None:
            raise InvalidInput("username", "already taken")
        if dept is not None and not await asyncio.to_thread(self._department_registered, dept):
            raise InvalidInput("department", f"no registered department {dept!r}")
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        await self._audit(
            now,
            EVENTS["added"],
            Outcome.ALLOWED,
            None,
            operator,
            department=dept,
            detail=f"account {name}, role {the_role}" + (f", department {dept}" if dept else ""),
        )
        return await asyncio.to_thread(
            lambda: self.accounts.add(
                username=name,
                display_name=display,
                role=the_role,
                department=dept,
                password_hash=password_hash,
                now=now,
            )
        )

    async def disable(self, username: str, *, operator: str, now: dt.datetime) -> Account:
        """Disable the account and end its sessions."""
        account = await self._existing(username)
        await self._audit(
            require_aware(now),
            EVENTS["disabled"],
            Outcome.ALLOWED,
            None,
            operator,
            department=account.department,
            detail=f"account {account.username}",
        )
        return await asyncio.to_thread(self.accounts.set_disabled, account.username, True, now)

    async def enable(self, username: str, *, operator: str, now: dt.datetime) -> Account:
        """Enable a disabled account again."""
        account = await self._existing(username)
        await self._audit(
            require_aware(now),
            EVENTS["enabled"],
            Outcome.ALLOWED,
            None,
            operator,
            department=account.department,
            detail=f"account {account.username}",
        )
        return await asyncio.to_thread(self.accounts.set_disabled, account.username, False, now)

    async def reset_password(
        self, username: str, password: str, *, operator: str, now: dt.datetime
    ) -> Account:
        """A new password: clears any lock-out and ends every session of the account."""
        account = await self._existing(username)
        require_acceptable_password(password, username=account.username)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        await self._audit(
            require_aware(now),
            EVENTS["reset"],
            Outcome.ALLOWED,
            None,
            operator,
            department=account.department,
            detail=f"account {account.username}",
        )
        return await asyncio.to_thread(
            self.accounts.reset_password, account.username, password_hash, now
        )

    async def list_accounts(self) -> list[Account]:
        """Every account, by username."""
        return await asyncio.to_thread(self.accounts.list)

    # --- helpers ------------------------------------------------------------------------

    async def _existing(self, username: str) -> Account:
        account = await asyncio.to_thread(self.accounts.get, normalise_username(username))
        if account is None:
            raise InvalidInput("username", "no account with this username")
        return account

    def _department_registered(self, department: str) -> bool:
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(departments.c.id).where(departments.c.id == department)
            ).scalar_one_or_none()
        return found is not None

    async def _refuse(
        self,
        now: dt.datetime,
        account: Account | None,
        reason: str,
        detail: str | None = None,
        *,
        locked_until: dt.datetime | None = None,
    ) -> NoReturn:
        """Audit a refused login (and a lock-out it caused), then raise LoginRefused."""
        await self._audit(
            now,
            EVENTS["failed"],
            Outcome.REFUSED,
            account,
            None if account is None else account.username,
            reason_code=reason,
            detail=detail,
        )
        if locked_until is not None:
            await self._audit(
                now,
                EVENTS["locked"],
                Outcome.REFUSED,
                account,
                None if account is None else account.username,
                reason_code="too-many-failures",
                detail=f"locked until {locked_until.isoformat()}",
            )
        raise LoginRefused(reason)

    async def _audit(
        self,
        now: dt.datetime,
        event: str,
        decision: Outcome,
        account: Account | None,
        operator: str | None,
        *,
        department: str | None = None,
        reason_code: str | None = None,
        detail: str | None = None,
    ) -> int:
        return await self._audit_log.append(
            AuditEntry(
                at=now,
                event=event,
                decision=decision,
                department=department if account is None else account.department,
                operator=operator,
                reason_code=reason_code,
                detail=detail,
            )
        )
