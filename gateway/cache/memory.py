"""In-process request guard for the embedded, single-process setup."""

from __future__ import annotations

import math

from gateway.errors import RateLimited, Replayed

__all__ = ["InProcessGuard"]


class InProcessGuard:
    """Replay cache and fixed-window rate limit in this process's memory.

    Correct only with one worker process; the settings refuse more (see ``gateway.settings``).
    Everything runs on the event loop thread without awaiting, so each admit is atomic.
    """

    def __init__(self, *, rate_limit: int, window_seconds: int) -> None:
        self._limit = rate_limit
        self._window = window_seconds
        self._seen: dict[tuple[str, str], float] = {}
        self._counters: dict[str, tuple[int, int]] = {}
        self._next_purge = 0.0

    async def admit(self, *, department: str, jti: str, replay_ttl: float, now: float) -> None:
        window = int(now // self._window)
        current, count = self._counters.get(department, (window, 0))
        count = count + 1 if current == window else 1
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

    def _purge(self, now: float) -> None:
        # Amortised: at most once a second, drop every expired jti.
        self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._next_purge = now + 1.0

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._seen.clear()
