"""Short-lived shared state: the replay cache and per-department rate limits.

One protocol, :class:`RequestGuard`, with an in-process implementation for the embedded setup
and a Redis one for many processes. Both admit a request in one step — one round trip to Redis
for replay and rate limit together.
"""

from gateway.cache.protocol import RequestGuard

__all__ = ["RequestGuard"]
