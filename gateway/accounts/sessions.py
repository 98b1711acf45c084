"""Server-side console sessions, their CSRF tokens and the cookie that carries them.

A session id is 256 random bits, handed to the browser once in a cookie; the database keeps
only its SHA-256, so reading the table does not let anyone in. A session ends when idle for
``idle`` or ``absolute`` after login, whichever comes first, at logout, or when its account
is disabled or its password reset. Each session has its own random CSRF token, which every
form must send back and which is compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import sqlalchemy as sa

from gateway.accounts.model import Role, require_aware
from gateway.accounts.store import as_utc
from gateway.storage.schema import console_accounts, console_sessions

__all__ = [
    "Session",
    "SessionCookie",
    "SessionPolicy",
    "SessionStore",
    "cookie_name",
    "csrf_matches",
    "session_cookie",
]

_ID_BYTES = 32  # 256 bits
_CSRF_BYTES = 32


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions last and how their cookie is sent."""

    idle: dt.timedelta = dt.timedelta(minutes=15)
    absolute: dt.timedelta = dt.timedelta(hours=8)
    #: Send the cookie over HTTPS only. True in production; False only for the embedded
    #: setup on plain http://127.0.0.1.
    secure_cookie: bool = True


@dataclass(frozen=True, slots=True)
class Session:
    """A live session. ``token`` is the session id itself: it goes in the cookie and nowhere
    else (never stored, never logged)."""

    token: str = field(repr=False)
    username: str
    display_name: str
    role: Role
    department: str | None
    csrf_token: str = field(repr=False)
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime  # the absolute end; idle expiry comes earlier without activity


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_matches(session: Session, submitted: str | None) -> bool:
    """Whether a form's CSRF token is this session's (constant-time; missing: False)."""
    if not submitted:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), submitted.encode("utf-8"))


class SessionStore:
    """Creates, resolves and ends sessions (synchronous; call through a thread)."""

    def __init__(self, engine: sa.Engine, policy: SessionPolicy | None = None) -> None:
        self._engine = engine
        self.policy = policy or SessionPolicy()

    def create(self, username: str, now: dt.datetime) -> Session:
        """A new session for ``username`` (an existing account)."""
        now = require_aware(now)
        token = secrets.token_urlsafe(_ID_BYTES)
        csrf = secrets.token_urlsafe(_CSRF_BYTES)
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(console_sessions).values(
                    id_hash=_digest(token),
                    username=username,
                    csrf_token=csrf,
                    created_at=now,
                    last_seen_at=now,
                )
            )
        session = self.resolve(token, now)
        assert session is not None
        return session

    def resolve(self, token: str | None, now: dt.datetime) -> Session | None:
        """The live session with id ``token`` (its idle clock restarted), or None if there is
        none, it expired (then it is deleted) or its account is disabled."""
        now = require_aware(now)
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(
                    console_sessions.c.csrf_token,
                    console_sessions.c.created_at,
                    console_sessions.c.last_seen_at,
                    console_accounts.c.username,
                    console_accounts.c.display_name,
                    console_accounts.c.role,
                    console_accounts.c.department,
                    console_accounts.c.disabled,
                )
                .join(console_accounts, console_accounts.c.username == console_sessions.c.username)
                .where(console_sessions.c.id_hash == digest)
            ).one_or_none()
            if row is None:
                return None
            created, last_seen = as_utc(row.created_at), as_utc(row.last_seen_at)
            if (
                row.disabled
                or now >= created + self.policy.absolute
                or now >= last_seen + self.policy.idle
            ):
                conn.execute(
                    sa.delete(console_sessions).where(console_sessions.c.id_hash == digest)
                )
                return None
            if now > last_seen:
                conn.execute(
                    sa.update(console_sessions)
                    .where(console_sessions.c.id_hash == digest)
                    .values(last_seen_at=now)
                )
                last_seen = now
        return Session(
            token=token,
            username=row.username,
            display_name=row.display_name,
            role=Role(row.role),
            department=row.department,
            csrf_token=row.csrf_token,
            created_at=created,
            last_seen_at=last_seen,
            expires_at=created + self.policy.absolute,
        )

    def revoke(self, token: str) -> bool:
        """End the session with id ``token``; whether there was one."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.delete(console_sessions).where(console_sessions.c.id_hash == _digest(token))
            )
        return bool(result.rowcount)

    def count(self, username: str) -> int:
        """How many sessions ``username`` has stored (live or not yet swept)."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(console_sessions.c.username == username)
                ).scalar_one()
            )


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """The attributes the web layer must set on the session cookie (names as Litestar's
    ``Cookie`` takes them), and the ``Set-Cookie`` header value they make."""

    key: str
    value: str = field(repr=False)
    max_age: int
    path: str = "/"
    httponly: bool = True
    samesite: str = "strict"
    secure: bool = True

    def header(self) -> str:
        """The ``Set-Cookie`` header value."""
        parts = [f"{self.key}={self.value}", f"Path={self.path}", f"Max-Age={self.max_age}"]
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.samesite.capitalize()}")
        return "; ".join(parts)


def cookie_name(policy: SessionPolicy) -> str:
    """``__Host-`` prefixed over HTTPS: browsers then refuse it without Secure and Path=/ or
    with a Domain, so a sibling host cannot plant one."""
    return "__Host-yiwang-session" if policy.secure_cookie else "yiwang-session"


def session_cookie(policy: SessionPolicy, session: Session | None) -> SessionCookie:
    """The cookie that carries ``session``; for None (logout), the cookie that clears it."""
    return SessionCookie(
        key=cookie_name(policy),
        value="" if session is None else session.token,
        max_age=0 if session is None else int(policy.absolute.total_seconds()),
        secure=policy.secure_cookie,
    )
