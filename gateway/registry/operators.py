"""Operator credentials for the administrative endpoints (not departments' signed requests).

Each role has bearer tokens; the gateway keeps only their SHA-256 digests and compares in
constant time. ``gateway init`` creates ``keys/operators/<role>.token`` for the embedded setup
(owner-only permissions, never committed); the people holding a role read it from there.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

__all__ = ["OperatorTokens"]


class OperatorTokens:
    """Digests of the bearer tokens of each operator role."""

    def __init__(self, digests: dict[str, list[bytes]]) -> None:
        self._digests = digests

    @classmethod
    def from_directory(cls, directory: Path) -> OperatorTokens:
        """Read ``<role>.token`` files (one token per line)."""
        digests: dict[str, list[bytes]] = {}
        for path in sorted(directory.glob("*.token")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    digests.setdefault(path.stem, []).append(
                        hashlib.sha256(line.strip().encode()).digest()
                    )
        return cls(digests)

    def roles_of(self, token: str) -> set[str]:
        """The roles ``token`` holds (none if it is unknown)."""
        digest = hashlib.sha256(token.encode()).digest()
        return {
            role
            for role, digests in self._digests.items()
            if any(hmac.compare_digest(digest, d) for d in digests)
        }
