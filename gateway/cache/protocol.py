"""The request guard protocol shared by the in-process and Redis implementations."""

from __future__ import annotations

from typing import Protocol

__all__ = ["RequestGuard"]


class RequestGuard(Protocol):
    """Refuses replayed tokens and enforces a per-department request budget."""

    async def admit(self, *, department: str, jti: str, replay_ttl: float, now: float) -> None:
        """Admit one request or raise.

        Raises :class:`~gateway.errors.RateLimited` when the department's budget for the
        current window is spent (the ``jti`` is then *not* consumed, so the same token may be
        sent again), :class:`~gateway.errors.Replayed` when ``jti`` was admitted before within
        ``replay_ttl`` seconds, and :class:`~gateway.errors.StoreUnavailable` when the guard's
        store cannot answer — never admitting a request it could not check.
        """
        ...

    async def ping(self) -> bool:
        """Whether the store behind the guard answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
