"""Redis request guard for many gateway processes on many hosts."""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import RateLimited, Replayed, StoreUnavailable

__all__ = ["RedisGuard"]

# One script, one round trip: count the request in the department's current window, refuse
# over budget without consuming the jti, else claim the jti with SET NX (the replay check).
# Both keys share the hash tag {department} so the script also runs on Redis Cluster.
_ADMIT = """
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[3]) then return 2 end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
return 1
"""


class RedisGuard:
    """Replay cache (``SET NX``) and fixed-window rate limit in Redis."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        rate_limit: int,
        window_seconds: int,
        prefix: str = "yiwang",
    ) -> None:
        self._client = client
        self._limit = rate_limit
        self._window = window_seconds
        self._prefix = prefix
        self._script = client.register_script(_ADMIT)

    @classmethod
    def from_url(
        cls, url: str, *, rate_limit: int, window_seconds: int, prefix: str = "yiwang"
    ) -> RedisGuard:
        """Connect lazily to ``url`` with short timeouts, so a dead Redis fails fast (503)."""
        client = aioredis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
        )
        return cls(
            client=client, rate_limit=rate_limit, window_seconds=window_seconds, prefix=prefix
        )

    async def admit(self, *, department: str, jti: str, replay_ttl: float, now: float) -> None:
        window = int(now // self._window)
        tag = f"{self._prefix}:{{{department}}}"
        try:
            verdict = await self._script(
                keys=[f"{tag}:jti:{jti}", f"{tag}:rate:{window}"],
                args=[int(replay_ttl * 1000), self._window * 1000, self._limit],
            )
        except RedisError:
            raise StoreUnavailable("replay cache") from None
        if verdict == 2:
            raise RateLimited(max(1, math.ceil((window + 1) * self._window - now)))
        if verdict == 1:
            raise Replayed

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
