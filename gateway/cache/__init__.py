"""Short-lived shared state: replay cache, rate limits, daily subject quotas, closed cases and
the lookup cache.

One protocol, :class:`RequestGuard`, with an in-process implementation for the embedded setup
and a Redis one for many processes. Both admit a request in one step — one round trip to Redis
for all the checks and the cache read together.
"""

from gateway.cache.protocol import Admission, CachedRecord, CacheProbe, QuotaClaim, RequestGuard

__all__ = ["Admission", "CacheProbe", "CachedRecord", "QuotaClaim", "RequestGuard"]
