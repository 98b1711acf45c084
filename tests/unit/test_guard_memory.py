"""The in-process request guard: replay refusal and fixed-window rate limit."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cache.memory import InProcessGuard
from gateway.errors import RateLimited, Replayed


def test_replay_refused_until_expiry() -> None:
    async def run() -> None:
        g = InProcessGuard(rate_limit=100, window_seconds=60)
        await g.admit(department="a", jti="j", replay_ttl=10, now=1000.0)
        with pytest.raises(Replayed):
            await g.admit(department="a", jti="j", replay_ttl=10, now=1005.0)
        # Another department's jti is its own namespace.
        await g.admit(department="b", jti="j", replay_ttl=10, now=1005.0)
        # After the token's replay window, the jti is forgotten (the token is expired anyway).
        await g.admit(department="a", jti="j", replay_ttl=10, now=1011.0)

    asyncio.run(run())


def test_rate_limit_with_retry_after_and_no_jti_consumed() -> None:
    async def run() -> None:
        g = InProcessGuard(rate_limit=2, window_seconds=60)
        await g.admit(department="a", jti="1", replay_ttl=10, now=120.0)
        await g.admit(department="a", jti="2", replay_ttl=10, now=130.0)
        with pytest.raises(RateLimited) as err:
            await g.admit(department="a", jti="3", replay_ttl=10, now=150.0)
        assert err.value.retry_after == 30
        # Next window: the refused jti was not consumed and is accepted.
        await g.admit(department="a", jti="3", replay_ttl=10, now=181.0)

    asyncio.run(run())
