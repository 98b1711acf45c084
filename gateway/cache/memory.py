"""In-process request guard for the embedded, single-process setup."""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from gateway.cache.protocol import (
    Admission,
    CachedRecord,
    CacheProbe,
    QuotaClaim,
    Warmer,
    district_day,
    nothing_to_warm,
)
from gateway.core.policy import ReasonCode
from gateway.errors import PolicyDenied, RateLimited, Replayed, StoreUnavailable

__all__ = ["InProcessGuard"]


class InProcessGuard:
    """Replay cache, fixed-window rate limit, daily quotas and closed cases in this process.

    Correct only with one worker process; the settings refuse more (see ``gateway.settings``).
    After the one await that loads a department's durable state (its first request of the
    district day), everything runs on the event loop thread without awaiting, so each admit
    is atomic.
    """

    def __init__(
        self,
        *,
        rate_limit: int,
        window_seconds: int,
        cache_entries: int = 100_000,
        warm: Warmer | None = None,
    ) -> None:
        self._limit = rate_limit
        self._window = window_seconds
        self._warm = warm or nothing_to_warm
        self._warmed: set[tuple[str, str]] = set()  # (department, district day) loaded
        self._seen: dict[tuple[str, str], tuple[float, str]] = {}
        self._counters: dict[str, tuple[int, int]] = {}
        self._closed: set[tuple[str, str]] = set()
        self._quotas: dict[tuple[str, str], set[str]] = {}
        self._next_purge = 0.0
        self._generations: dict[str, int] = {}
        # (resource, generation, subject) -> (expires at, record); least recently used first.
        self._cache: OrderedDict[tuple[str, int, str], tuple[float, CachedRecord]] = OrderedDict()
        self._cache_entries = cache_entries

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
        day = district_day(now)
        if (department, day) not in self._warmed:
            await self._load(department, now, day)
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
        claimed = self._seen.get(key)
        if claimed is not None and claimed[0] > now and claimed[1] != nonce:
            raise Replayed
        self._seen[key] = (now + replay_ttl, nonce or uuid.uuid4().hex)
        admission = Admission()
        for claim in quotas:
            counted = self._quotas.setdefault((claim.grant_id, claim.day), set())
            fits = claim.subject in counted or len(counted) < claim.limit
            if fits:
                counted.add(claim.subject)
            admission.quotas.append(fits)
        for probe in probes:
            generation = self._generations.get(probe.resource, 0)
            cache_key = (probe.resource, generation, probe.subject)
            hit = self._cache.get(cache_key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(cache_key)
                admission.cached.append(hit[1])
            else:
                admission.cached.append(None)
            admission.generations.append(str(generation))
        return admission

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
        if str(self._generations.get(probe.resource, 0)) != generation:
            return  # invalidated while the record was fetched: do not cache the old one
        key = (probe.resource, int(generation), probe.subject)
        self._cache[key] = (now + ttl, CachedRecord(payload, now, generation))
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    async def invalidate(self, *, resource: str, departments: Sequence[str]) -> None:
        self._generations[resource] = self._generations.get(resource, 0) + 1
        for key in [k for k in self._cache if k[0] == resource]:
            del self._cache[key]

    async def _load(self, department: str, now: float, day: str) -> None:
        try:
            state = await self._warm(department, now)
        except Exception as exc:  # the durable store is down: admit nothing unchecked
            raise StoreUnavailable("database") from exc
        self._closed.update((department, case) for case in state.closed_cases)
        for key, subjects in state.quota_subjects.items():
            self._quotas.setdefault(key, set()).update(subjects)
        self._warmed.add((department, day))

    async def release(self, *, department: str, jti: str, nonce: str) -> bool:
        claimed = self._seen.get((department, jti))
        if claimed is not None and claimed[1] == nonce:
            del self._seen[(department, jti)]
        return True

    def _purge(self, now: float) -> None:
        # Amortised: at most once a second, drop every expired jti and past days' quotas.
        self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
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
