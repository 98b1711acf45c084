"""The request guard protocol shared by the in-process and Redis implementations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Admission",
    "CacheProbe",
    "CachedRecord",
    "DurableState",
    "QuotaClaim",
    "RequestGuard",
    "Warmer",
    "district_day",
    "nothing_to_warm",
]


@dataclass(frozen=True, slots=True)
class QuotaClaim:
    """One subject counted against a grant's ``max_subjects_per_day`` for one district day."""

    grant_id: str
    day: str  # district date, ISO format
    subject: str  # the keyed (HMAC) subject, never the identifier itself
    limit: int


@dataclass(frozen=True, slots=True)
class CacheProbe:
    """A lookup-cache read for one (resource, subject), done inside the admit step."""

    resource: str
    subject: str  # the keyed (HMAC) subject: cache keys never hold an identifier


@dataclass(frozen=True, slots=True)
class CachedRecord:
    """A cached source record: its encoded form and when it was cached (epoch seconds)."""

    payload: bytes
    cached_at: float
    generation: str = "0"


@dataclass(frozen=True, slots=True)
class Admission:
    """What an admitted request learns: per quota claim whether it fits, per cache probe
    the cached record (or ``None`` with the generation a fresh one must be stored under)."""

    quotas: list[bool] = field(default_factory=list)
    cached: list[CachedRecord | None] = field(default_factory=list)
    generations: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DurableState:
    """What the durable store knows of one department that the guard keeps a copy of: its
    closed cases, and the subjects counted today under its quota'd grants."""

    closed_cases: frozenset[str] = frozenset()
    quota_subjects: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)


#: Reads a department's :class:`DurableState` at ``now`` (epoch seconds).
Warmer = Callable[[str, float], Awaitable[DurableState]]


def district_day(now: float) -> str:
    """The district's calendar date (UTC+8) at ``now`` (epoch seconds), ISO format."""
    return (dt.datetime.fromtimestamp(now, dt.UTC) + dt.timedelta(hours=8)).date().isoformat()


async def nothing_to_warm(department: str, now: float) -> DurableState:
    """A warmer for guards without a durable store behind them (tests of the guard alone)."""
    return DurableState()


class RequestGuard(Protocol):
    """Refuses replayed tokens, closed cases, spent budgets and exhausted quotas, and reads
    the lookup cache — all in one step (one round trip to Redis)."""

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
        probes: Sequence[CacheProbe] = (),
        nonce: str | None = None,
    ) -> Admission:
        """Admit one request (``cost`` lookups of it) or raise; one store round trip.

        ``nonce`` identifies this request: a retry of it finds its own claim of the ``jti``.
        The guard is a copy of the durable state: when it finds its copy of the department
        missing (Redis restarted empty, a new process) it loads it first (a second round
        trip, once).

        In order: :class:`~gateway.errors.PolicyDenied` (``case-closed``) when ``case`` was
        declared closed by ``department``; :class:`~gateway.errors.RateLimited` when the
        department's budget for the current window is spent; :class:`~gateway.errors.Replayed`
        when ``jti`` was admitted before within ``replay_ttl`` seconds. None of these consume
        the ``jti``, except a replay (which found it consumed). Then each quota claim is
        counted (a subject already counted today always fits) and each cache probe read.
        Raises :class:`~gateway.errors.StoreUnavailable` when the store cannot answer — never
        admitting a request it could not check.
        """
        ...

    async def cache_put(
        self,
        *,
        department: str,
        probe: CacheProbe,
        generation: str,
        payload: bytes,
        ttl: float,
        now: float,
    ) -> None:
        """Cache a fetched record for ``ttl`` seconds under the generation admit reported."""
        ...

    async def release(self, *, department: str, jti: str, nonce: str) -> bool:
        """Forget the ``jti`` this request (``nonce``) claimed: nothing was answered, so a
        resend must not be refused as a replay. ``False`` if the guard could not be told."""
        ...

    async def invalidate(self, *, resource: str, departments: Sequence[str]) -> None:
        """Forget every cached record of ``resource`` (a new generation for each department)."""
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
