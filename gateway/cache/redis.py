"""Redis request guard for many gateway processes on many hosts (one Redis server, or a
Redis Cluster: see :mod:`gateway.cache.client`)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from gateway.cache.client import REDIS_FAILURES, RedisClient, answers, connect
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

__all__ = ["RedisGuard", "connect"]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# One script, one round trip, in this order: a department whose copy of the durable state
# (closed cases, today's quota subjects) is not loaded answers "cold" and is loaded first —
# Redis restarted empty, or was flushed; a closed case refuses; the department's window
# counts the request (over budget refuses, the jti unconsumed); SET NX claims the jti (the
# replay check); each quota claim is counted in its grant's per-day set; each cache probe reads
# the resource's current generation and the cached record under it. Every key carries the hash
# tag {department}, so the script also runs on Redis Cluster (cache keys are built in the
# script from ARGV[5], the tag prefix, and stay in the same slot).
# The jti is claimed with the request's nonce as its value, so a retry of this very request
# (its reply was lost on a broken connection) finds its own claim and is not a replay.
#   KEYS: jti, rate, case, warm, quota_1..q
#   ARGV: replay_ms, window_ms, limit, cost, tag, q, (subject, limit) * q, p,
#         (resource, subject) * p, nonce
# Reply: {0, fits_1..q, (generation, record | false, cached_at | false) * p} or {code}.
_ADMIT = """
if redis.call('EXISTS', KEYS[4]) == 0 then return {5} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {4} end
local n = redis.call('INCRBY', KEYS[2], ARGV[4])
if n == tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[3]) then return {2} end
local nonce = ARGV[#ARGV]
if not redis.call('SET', KEYS[1], nonce, 'NX', 'PX', ARGV[1]) then
  if redis.call('GET', KEYS[1]) ~= nonce then return {1} end
end
local out = {0}
local q = tonumber(ARGV[6])
for i = 1, q do
  local key = KEYS[4 + i]
  local subject = ARGV[5 + 2 * i]
  local limit = tonumber(ARGV[6 + 2 * i])
  if redis.call('SISMEMBER', key, subject) == 1 then
    out[#out + 1] = 1
  elseif redis.call('SCARD', key) >= limit then
    out[#out + 1] = 0
  else
    redis.call('SADD', key, subject)
    redis.call('EXPIRE', key, 172800)
    out[#out + 1] = 1
  end
end
local base = 7 + 2 * q
local p = tonumber(ARGV[base])
for i = 1, p do
  local resource = ARGV[base + 2 * i - 1]
  local subject = ARGV[base + 2 * i]
  local gen = redis.call('GET', ARGV[5] .. ':gen:' .. resource) or '0'
  local hit = redis.call('HMGET', ARGV[5] .. ':cache:' .. resource .. ':' .. gen .. ':' .. subject,
                         'r', 't')
  out[#out + 1] = gen
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
end
return out
"""

# Forget a jti claimed by this request (nothing was answered: a resend must not be a replay).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: How long a loaded copy of a department's durable state is trusted before it is reloaded
#: (quota sets are per district day, so a day's copy must not outlive it).
_WARM_SECONDS = 3600


class RedisGuard:
    """Replay cache (``SET NX``), rate limit, daily quotas and closed cases in Redis."""

    def __init__(
        self,
        *,
        client: RedisClient,
        rate_limit: int,
        window_seconds: int,
        prefix: str = "yiwang",
        warm: Warmer | None = None,
    ) -> None:
        self._client = client
        self._limit = rate_limit
        self._window = window_seconds
        self._prefix = prefix
        self._warm = warm or nothing_to_warm
        self._script = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(
        cls, url: str, *, rate_limit: int, window_seconds: int, prefix: str = "yiwang"
    ) -> RedisGuard:
        """Connect lazily to ``url`` (see :func:`connect`)."""
        client = connect(url)
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
        probes: Sequence[CacheProbe] = (),
        nonce: str | None = None,
    ) -> Admission:
        window = int(now // self._window)
        tag = self._tag(department)
        keys = [
            f"{tag}:jti:{jti}",
            f"{tag}:rate:{window}",
            # Case numbers are never empty, so the key of "no case" is never set.
            f"{tag}:case:{case or ''}",
            f"{tag}:warm:{district_day(now)}",
            *(f"{tag}:quota:{q.grant_id}:{q.day}" for q in quotas),
        ]
        args: list[str | int] = [
            int(replay_ttl * 1000),
            self._window * 1000,
            self._limit,
            cost,
            tag,
            len(quotas),
        ]
        for q in quotas:
            args += [q.subject, q.limit]
        args.append(len(probes))
        for probe in probes:
            args += [probe.resource, probe.subject]
        args.append(nonce or uuid.uuid4().hex)
        try:
            verdict = await self._script(keys=keys, args=args)
            if int(verdict[0]) == 5:  # cold: load the department's durable state, then admit
                await self._load(department, now)
                verdict = await self._script(keys=keys, args=args)
        except REDIS_FAILURES:
            raise StoreUnavailable("replay cache") from None
        code = int(verdict[0])
        if code == 5:
            raise StoreUnavailable("replay cache")  # the copy would not stay loaded
        if code == 4:
            raise PolicyDenied(ReasonCode.CASE_CLOSED, "the case was declared closed")
        if code == 2:
            raise RateLimited(max(1, math.ceil((window + 1) * self._window - now)))
        if code == 1:
            raise Replayed
        admission = Admission(quotas=[bool(int(v)) for v in verdict[1 : 1 + len(quotas)]])
        rest = verdict[1 + len(quotas) :]
        for i in range(len(probes)):
            generation, payload, cached_at = rest[3 * i : 3 * i + 3]
            admission.generations.append(_text(generation))
            admission.cached.append(
                None
                if payload is None
                else CachedRecord(bytes(payload), float(_text(cached_at)), _text(generation))
            )
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
        key = f"{self._tag(department)}:cache:{probe.resource}:{generation}:{probe.subject}"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"r": payload, "t": repr(now)})
                pipe.pexpire(key, int(ttl * 1000))
                await pipe.execute()
        except REDIS_FAILURES:
            # The answer does not depend on the cache write; the next lookup fetches again.
            return

    async def invalidate(self, *, resource: str, departments: Sequence[str]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for department in departments:
                    pipe.incr(f"{self._tag(department)}:gen:{resource}")
                await pipe.execute()
        except REDIS_FAILURES:
            raise StoreUnavailable("lookup cache") from None

    async def _load(self, department: str, now: float) -> None:
        """Copy ``department``'s closed cases and today's quota subjects from the durable
        store into Redis, then mark the copy loaded (all in one transaction)."""
        state = await self._warm(department, now)
        tag = self._tag(department)
        async with self._client.pipeline(transaction=True) as pipe:
            for case in state.closed_cases:
                pipe.set(f"{tag}:case:{case}", "1")
            for (grant_id, day), subjects in state.quota_subjects.items():
                if subjects:
                    key = f"{tag}:quota:{grant_id}:{day}"
                    pipe.sadd(key, *sorted(subjects))
                    pipe.expire(key, 172800)
            pipe.set(f"{tag}:warm:{district_day(now)}", "1", ex=_WARM_SECONDS)
            await pipe.execute()

    async def release(self, *, department: str, jti: str, nonce: str) -> bool:
        try:
            await self._release(keys=[f"{self._tag(department)}:jti:{jti}"], args=[nonce])
        except REDIS_FAILURES:
            return False
        return True

    async def close_case(self, *, department: str, case: str) -> None:
        try:
            await self._client.set(f"{self._tag(department)}:case:{case}", "1")
        except REDIS_FAILURES:
            raise StoreUnavailable("replay cache") from None

    async def ping(self) -> bool:
        return await answers(self._client)

    async def close(self) -> None:
        await self._client.aclose()
