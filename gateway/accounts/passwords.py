"""Password hashing with scrypt (memory-hard) and the minimum password policy.

A hash is stored as a self-describing string, ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and
key in unpadded URL-safe base64), so the parameters can be raised later: a stored hash is
verified with the parameters it names, and :meth:`PasswordHasher.needs_rehash` tells the
caller to store a new hash at the next successful login.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.errors import InvalidInput

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PRODUCTION_PARAMETERS",
    "PasswordHasher",
    "ScryptParameters",
    "password_problems",
    "require_acceptable_password",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # bounds the work one request can ask for

_SALT_BYTES = 16
_KEY_BYTES = 32
_SCHEME = "scrypt"


@dataclass(frozen=True, slots=True)
class ScryptParameters:
    """scrypt's cost: ``n`` (CPU/memory, a power of two), ``r`` (block size), ``p`` (lanes).
    Memory used is about 128 · n · r bytes (32 MiB for the production parameters)."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.n > 2**20:
            raise ValueError("scrypt n must be a power of two in [2, 2**20]")
        if not 1 <= self.r <= 32 or not 1 <= self.p <= 16:
            raise ValueError("scrypt r must be in [1, 32] and p in [1, 16]")


#: The parameters every hash is made with unless a caller passes others (only tests do, to
#: stay fast). About 0.1 s and 32 MiB per hash on one core.
PRODUCTION_PARAMETERS = ScryptParameters(n=2**15, r=8, p=1)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse(encoded: str) -> tuple[ScryptParameters, bytes, bytes]:
    """Parameters, salt and key of a stored hash; ValueError if it is not one of ours."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise ValueError("not an scrypt password hash")
    try:
        params = ScryptParameters(n=int(parts[1]), r=int(parts[2]), p=int(parts[3]))
        salt, key = _b64decode(parts[4]), _b64decode(parts[5])
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed scrypt password hash: {exc}") from None
    if len(salt) < _SALT_BYTES or len(key) < 16:
        raise ValueError("scrypt password hash with a short salt or key")
    return params, salt, key


class PasswordHasher:
    """Hashes and verifies passwords.

    ``parameters`` defaults to :data:`PRODUCTION_PARAMETERS`; pass lower ones **only in
    tests** (scrypt is slow on purpose). Hashes made with other parameters still verify.
    """

    def __init__(self, parameters: ScryptParameters = PRODUCTION_PARAMETERS) -> None:
        self.parameters = parameters
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """A new self-describing hash of ``password`` with a fresh random salt."""
        params, salt = self.parameters, os.urandom(_SALT_BYTES)
        key = Scrypt(salt=salt, length=_KEY_BYTES, n=params.n, r=params.r, p=params.p).derive(
            password.encode("utf-8")
        )
        return f"{_SCHEME}${params.n}${params.r}${params.p}${_b64encode(salt)}${_b64encode(key)}"

    def verify(self, password: str, encoded: str) -> bool:
        """Whether ``password`` is the one hashed in ``encoded`` (constant-time comparison).

        False for an unusable stored hash (never raises for it: a login simply fails).
        """
        try:
            params, salt, key = _parse(encoded)
        except ValueError:
            return False
        kdf = Scrypt(salt=salt, length=len(key), n=params.n, r=params.r, p=params.p)
        try:
            kdf.verify(password.encode("utf-8"), key)  # compares in constant time
        except InvalidKey:
            return False
        return True

    def verify_nobody(self, password: str) -> None:
        """Spend the time of a verification when there is no account, so that the answer's
        timing does not tell whether a username exists."""
        if self._dummy is None:
            self._dummy = self.hash(os.urandom(16).hex())
        self.verify(password, self._dummy)

    def needs_rehash(self, encoded: str) -> bool:
        """Whether ``encoded`` was made with other parameters than this hasher's."""
        try:
            params, _, key = _parse(encoded)
        except ValueError:
            return True
        return params != self.parameters or len(key) != _KEY_BYTES


def _classes(password: str) -> int:
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() or not c.isascii() for c in password),
        )
    )


def password_problems(password: str, *, username: str | None = None) -> list[str]:
    """Why ``password`` is not acceptable, one reason each (empty: acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if password and _classes(password) < 2:
        problems.append(
            "must mix at least two kinds of characters "
            "(lower-case letters, upper-case letters, digits, other characters)"
        )
    if password != password.strip():
        problems.append("must not begin or end with a space")
    if username and username.casefold() in password.casefold():
        problems.append("must not contain the username")
    return problems


def require_acceptable_password(password: str, *, username: str | None = None) -> None:
    """Raise :class:`~gateway.errors.InvalidInput` (field ``password``) naming every problem."""
    problems = password_problems(password, username=username)
    if problems:
        raise InvalidInput("password", "; ".join(problems))
