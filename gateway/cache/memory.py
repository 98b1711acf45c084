"""In-process request guard for the embedded, single-process setup."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.cache.protocol import QuotaClaim
from gateway.core.policy import ReasonCode
from gateway.errors import PolicyDenied, RateLimited, Replayed

__all__ = ["InProcessGuard"]


class InProcessGuard:
    """Replay cache, fixed-window rate limit, daily quotas and closed cases in this process.

    Correct only with one worker process; the settings refuse more (see ``gateway.settings``).
    Everything runs on the event loop thread without awaiting, so each admit is atomic.
    """

    def __init__(self, *, rate_limit: int, window_seconds: int) -> None:
        self._limit = rate_limit
        self._window = window_seconds
        self._seen: dict[tuple[str, str], float] = {}
        self._counters: dict[str, tuple[int, int]] = {}
        self._closed: set[tuple[str, str]] = set()
        self._quotas: dict[tuple[str, str], set[str]] = {}
        self._next_purge = 0.0

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
        if case is not None and (department, case) in self._closed:
            raise PolicyDenied(ReasonCode.CASE_CLOSED, "the case was declared closed")
        window = int(now // self._window)
        current, count = self._counters.get(department, (window, 0))
        count = count + cost if current == window else cost
        self._counters[department] = (window, count)
        if count > self._limit:
            raise RateLimited(max(1, math.ceil((window + 1) * self._window - now)))
        if now >= self._next_purge:
            self._purge(now)
        key = (department, jti)
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            raise Replayed
        self._seen[key] = now + replay_ttl
        results = []
        for claim in quotas:
            counted = self._quotas.setdefault((claim.grant_id, claim.day), set())
            fits = claim.subject in counted or len(counted) < claim.limit
            if fits:
                counted.add(claim.subject)
            results.append(fits)
        return results

    def _purge(self, now: float) -> None:
        # Amortised: at most once a second, drop every expired jti and past days' quotas.
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        if len(self._quotas) > 1024:
            latest = max(day for _, day in self._quotas)
            self._quotas = {k: v for k, v in self._quotas.items() if k[1] >= latest}
        self._next_purge = now + 1.0

    async def close_case(self, *, department: str, case: str) -> None:
        self._closed.add((department, case))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._seen.clear()
