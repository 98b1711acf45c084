"""Redis request guard for many gateway processes on many hosts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.cache.protocol import QuotaClaim
from gateway.core.policy import ReasonCode
from gateway.errors import PolicyDenied, RateLimited, Replayed, StoreUnavailable

__all__ = ["RedisGuard"]

# One script, one round trip, in this order: a closed case refuses; the department's window
# counts the request (over budget refuses, the jti unconsumed); SET NX claims the jti (the
# replay check); then each quota claim is counted in its grant's per-day set. Every key shares
# the hash tag {department}, so the script also runs on Redis Cluster.
#   KEYS: jti, rate, case, quota_1..n     ARGV: replay_ms, window_ms, limit, cost,
#                                               then per quota: subject, limit
_ADMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {4} end
local n = redis.call('INCRBY', KEYS[2], ARGV[4])
if n == tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[3]) then return {2} end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return {1} end
local out = {0}
for i = 4, #KEYS do
  local subject = ARGV[3 + 2 * (i - 3)]
  local limit = tonumber(ARGV[4 + 2 * (i - 3)])
  if redis.call('SISMEMBER', KEYS[i], subject) == 1 then
    out[#out + 1] = 1
  elseif redis.call('SCARD', KEYS[i]) >= limit then
    out[#out + 1] = 0
  else
    redis.call('SADD', KEYS[i], subject)
    redis.call('EXPIRE', KEYS[i], 172800)
    out[#out + 1] = 1
  end
end
return out
"""


class RedisGuard:
    """Replay cache (``SET NX``), rate limit, daily quotas and closed cases in Redis."""

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

    def _tag(self, department: str) -> str:
        return f"{self._prefix}:{{{department}}}"

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
        window = int(now // self._window)
        tag = self._tag(department)
        keys = [
            f"{tag}:jti:{jti}",
            f"{tag}:rate:{window}",
            # Case numbers are never empty, so the key of "no case" is never set.
            f"{tag}:case:{case or ''}",
            *(f"{tag}:quota:{q.grant_id}:{q.day}" for q in quotas),
        ]
        args: list[str | int] = [int(replay_ttl * 1000), self._window * 1000, self._limit, cost]
        for q in quotas:
            args += [q.subject, q.limit]
        try:
            verdict = await self._script(keys=keys, args=args)
        except RedisError:
            raise StoreUnavailable("replay cache") from None
        code = int(verdict[0])
        if code == 4:
            raise PolicyDenied(ReasonCode.CASE_CLOSED, "the case was declared closed")
        if code == 2:
            raise RateLimited(max(1, math.ceil((window + 1) * self._window - now)))
        if code == 1:
            raise Replayed
        return [bool(int(v)) for v in verdict[1:]]

    async def close_case(self, *, department: str, case: str) -> None:
        try:
            await self._client.set(f"{self._tag(department)}:case:{case}", "1")
        except RedisError:
            raise StoreUnavailable("replay cache") from None

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
