"""Web console accounts: people at a desk (clerks, security officers, administrators).

Pure of any web framework: :mod:`~gateway.accounts.passwords` (scrypt hashes, the password
policy), :mod:`~gateway.accounts.model` (roles, :class:`Account`),
:mod:`~gateway.accounts.store` (accounts in the database, lock-out),
:mod:`~gateway.accounts.sessions` (server-side sessions, CSRF tokens, the cookie) and
:mod:`~gateway.accounts.service` (:class:`AccountService`: login, logout and account
management, every act audited). The console's pages build on these.
"""

from gateway.accounts.model import Account, Role
from gateway.accounts.passwords import PasswordHasher, ScryptParameters
from gateway.accounts.service import AccountService, LoginRefused
from gateway.accounts.sessions import Session, SessionPolicy, session_cookie
from gateway.accounts.store import LockoutPolicy

__all__ = [
    "Account",
    "AccountService",
    "LockoutPolicy",
    "LoginRefused",
    "PasswordHasher",
    "Role",
    "ScryptParameters",
    "Session",
    "SessionPolicy",
    "session_cookie",
]
