"""The request guard protocol shared by the in-process and Redis implementations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["QuotaClaim", "RequestGuard"]


@dataclass(frozen=True, slots=True)
class QuotaClaim:
    """One subject counted against a grant's ``max_subjects_per_day`` for one district day."""

    grant_id: str
    day: str  # district date, ISO format
    subject: str  # the keyed (HMAC) subject, never the identifier itself
    limit: int


class RequestGuard(Protocol):
    """Refuses replayed tokens, closed cases, spent budgets and exhausted quotas — together."""

    async def admit(
        self,
        *,
        department: str,
        jti: str,
        replay_ttl: float,
        now: float,
        cost: int = 1,
        case: str | None = None,
        quotas: Sequence[QuotaClaim] = (),
    ) -> list[bool]:
        """Admit one request (``cost`` lookups of it) or raise; one store round trip.

        In order: :class:`~gateway.errors.PolicyDenied` (``case-closed``) when ``case`` was
        declared closed by ``department``; :class:`~gateway.errors.RateLimited` when the
        department's budget for the current window is spent; :class:`~gateway.errors.Replayed`
        when ``jti`` was admitted before within ``replay_ttl`` seconds. None of these consume
        the ``jti``, except a replay (which found it consumed). Then each quota claim is
        counted: the result says, per claim, whether the subject fits the grant's daily
        quota (a subject already counted today always fits). Raises
        :class:`~gateway.errors.StoreUnavailable` when the store cannot answer — never
        admitting a request it could not check.
        """
        ...

    async def close_case(self, *, department: str, case: str) -> None:
        """Remember that ``department`` closed ``case`` (the database keeps the record)."""
        ...

    async def ping(self) -> bool:
        """Whether the store behind the guard answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
