"""Console accounts: people at a desk (clerks, security officers, administrators)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field

from gateway.errors import InvalidInput

__all__ = [
    "Account",
    "Role",
    "check_department",
    "normalise_username",
    "parse_role",
    "require_aware",
]


class Role(enum.StrEnum):
    """What a console account may do."""

    CLERK = "clerk"  # a clerk of one department (service hall)
    AUDITOR = "auditor"  # a security officer: the audit log
    ADMIN = "admin"  # an administrator: departments, keys, seals, policies


_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_DEPARTMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def normalise_username(username: str) -> str:
    """The username in its stored form (trimmed, lower case), or InvalidInput."""
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidInput(
            "username",
            "3 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "beginning with a letter or digit",
        )
    return name


def parse_role(role: str) -> Role:
    """The :class:`Role` named ``role``, or InvalidInput listing the roles."""
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(r.value for r in Role)}") from None


def check_department(role: Role, department: str | None) -> str | None:
    """A clerk is bound to exactly one department; auditors and administrators to none."""
    if role is Role.CLERK:
        if not department:
            raise InvalidInput("department", "a clerk account needs its department id")
        if not _DEPARTMENT.fullmatch(department):
            raise InvalidInput("department", "not a department id")
        return department
    if department:
        raise InvalidInput("department", f"only clerk accounts have a department, not {role}")
    return None


def require_aware(now: dt.datetime) -> dt.datetime:
    """``now`` in UTC; naive datetimes are refused (they would be read in the wrong zone)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("pass an aware datetime (with a time zone)")
    return now.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Account:
    """One console account as stored. Times are in UTC."""

    username: str
    display_name: str
    role: Role
    department: str | None
    disabled: bool
    failed_attempts: int
    locked_until: dt.datetime | None
    password_hash: str = field(repr=False)
    created_at: dt.datetime
    updated_at: dt.datetime

    def locked_at(self, now: dt.datetime) -> bool:
        """Whether the account is locked out at ``now``."""
        return self.locked_until is not None and require_aware(now) < self.locked_until
