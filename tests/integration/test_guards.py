"""Both request guards — in process and Redis — behave the same, step for step."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.cache import CachedRecord, CacheProbe, QuotaClaim, RequestGuard
from gateway.cache.memory import InProcessGuard
from gateway.cache.redis import RedisGuard
from gateway.errors import PolicyDenied, RateLimited, Replayed, StoreUnavailable
from tests.cluster import RedisCluster
from tests.support import REDIS_URL, free_port, redis_reachable, unavailable


def _guard(store: str, limit: int = 100) -> RequestGuard:
    if store == "memory":
        return InProcessGuard(rate_limit=limit, window_seconds=60)
    return RedisGuard.from_url(
        store, rate_limit=limit, window_seconds=60, prefix=f"t{secrets.token_hex(4)}"
    )


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """Where the guard under test keeps its state: ``memory``, or the URL of the shared
    Redis or of the session's Redis Cluster (started on first use)."""
    if request.param == "redis":
        why = redis_reachable()
        if why:
            unavailable("Redis", why)
        return REDIS_URL
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url(0)
    return "memory"


def run(
    store: str, test: Callable[[Callable[..., RequestGuard]], Coroutine[Any, Any, None]]
) -> None:
    guards: list[RequestGuard] = []

    def make(limit: int = 100) -> RequestGuard:
        g = _guard(store, limit)
        guards.append(g)
        return g

    async def main() -> None:
        try:
            await test(make)
        finally:
            for g in guards:
                await g.close()

    asyncio.run(main())


#: Every guard behaves the same: in process, on one Redis server, on a Redis Cluster (where
#: each department's keys must stay in one hash slot for its one-step admit to run at all).
KINDS = ["memory", "redis", "cluster"]


@pytest.mark.parametrize("store", KINDS, indirect=True)
def test_replay_and_rate_limit(store: str) -> None:
    async def t(make: Callable[..., RequestGuard]) -> None:
        g = make(limit=3)
        await g.admit(department="a", jti="j1", replay_ttl=30, now=1000.0)
        with pytest.raises(Replayed):
            await g.admit(department="a", jti="j1", replay_ttl=30, now=1001.0)
        await g.admit(department="b", jti="j1", replay_ttl=30, now=1001.0)  # own namespace
        await g.admit(department="a", jti="j2", replay_ttl=30, now=1002.0)
        with pytest.raises(RateLimited) as err:  # a's 4th request in the window
            await g.admit(department="a", jti="j3", replay_ttl=30, now=1010.0)
        assert err.value.retry_after == 10  # the window is [960, 1020)
        # The refused jti was not consumed: next window it is accepted.
        await g.admit(department="a", jti="j3", replay_ttl=30, now=1061.0)

    run(store, t)


@pytest.mark.parametrize("store", KINDS, indirect=True)
def test_batch_cost_counts_against_the_budget(store: str) -> None:
    async def t(make: Callable[..., RequestGuard]) -> None:
        g = make(limit=10)
        await g.admit(department="a", jti="b1", replay_ttl=30, now=0.0, cost=8)
        with pytest.raises(RateLimited):
            await g.admit(department="a", jti="b2", replay_ttl=30, now=1.0, cost=3)

    run(store, t)


@pytest.mark.parametrize("store", KINDS, indirect=True)
def test_closed_case_is_refused_before_anything_is_consumed(store: str) -> None:
    async def t(make: Callable[..., RequestGuard]) -> None:
        g = make()
        await g.close_case(department="a", case="C-1")
        with pytest.raises(PolicyDenied) as err:
            await g.admit(department="a", jti="x", replay_ttl=30, now=0.0, case="C-1")
        assert err.value.reason_code == "case-closed"
        await g.admit(department="b", jti="x", replay_ttl=30, now=0.0, case="C-1")
        await g.admit(department="a", jti="x", replay_ttl=30, now=0.0, case="C-2")

    run(store, t)


@pytest.mark.parametrize("store", KINDS, indirect=True)
def test_daily_quota_counts_distinct_subjects(store: str) -> None:
    async def t(make: Callable[..., RequestGuard]) -> None:
        g = make()

        def claim(subject: str, day: str = "2026-11-27") -> QuotaClaim:
            return QuotaClaim(grant_id="g", day=day, subject=subject, limit=2)

        async def fits(*claims: QuotaClaim) -> list[bool]:
            admission = await g.admit(
                department="a", jti=secrets.token_hex(8), replay_ttl=30, now=0.0, quotas=claims
            )
            return admission.quotas

        assert await fits(claim("s1"), claim("s2"), claim("s3")) == [True, True, False]
        assert await fits(claim("s1")) == [True]  # already counted today
        assert await fits(claim("s4")) == [False]
        assert await fits(claim("s4", day="2026-11-28")) == [True]  # a new day

    run(store, t)


@pytest.mark.parametrize("store", KINDS, indirect=True)
def test_lookup_cache_read_in_the_admit_step_and_invalidated(store: str) -> None:
    async def t(make: Callable[..., RequestGuard]) -> None:
        g = make()
        probe = CacheProbe("enterprise-registration", "subject-hmac")

        async def read(dept: str, now: float) -> tuple[CachedRecord | None, str]:
            admission = await g.admit(
                department=dept, jti=secrets.token_hex(8), replay_ttl=30, now=now, probes=[probe]
            )
            return admission.cached[0], admission.generations[0]

        cached, generation = await read("a", 100.0)
        assert cached is None
        await g.cache_put(
            department="a",
            probe=probe,
            generation=generation,
            payload=b'{"v":1}',
            ttl=60,
            now=100.0,
        )
        cached, _ = await read("a", 110.0)
        assert cached is not None
        assert (cached.payload, cached.cached_at) == (b'{"v":1}', 100.0)
        # A new generation (an upload landed, or the provider signalled a change) hides it.
        await g.invalidate(resource="enterprise-registration", departments=["a", "b"])
        cached, new_generation = await read("a", 111.0)
        assert cached is None
        assert new_generation != generation
        # A record fetched before the invalidation must not be cached under the new one.
        await g.cache_put(
            department="a",
            probe=probe,
            generation=generation,
            payload=b'{"v":"stale"}',
            ttl=60,
            now=111.0,
        )
        assert (await read("a", 112.0))[0] is None

    run(store, t)


def test_redis_down_is_store_unavailable() -> None:
    async def t() -> None:
        g = RedisGuard.from_url(
            f"redis://127.0.0.1:{free_port()}/0", rate_limit=10, window_seconds=60
        )
        try:
            with pytest.raises(StoreUnavailable):
                await g.admit(department="a", jti="j", replay_ttl=30, now=0.0)
            assert await g.ping() is False
        finally:
            await g.close()

    asyncio.run(t())
