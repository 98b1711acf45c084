"""Where the validated policy set in force is published for every process to pick up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from gateway.cache.client import REDIS_FAILURES, RedisClient
from gateway.errors import StoreUnavailable

__all__ = ["InProcessPolicyStore", "PolicySnapshot", "PolicyStore", "RedisPolicyStore"]


class PolicySnapshot(msgspec.Struct, frozen=True):
    """A published policy set: its version and the texts of its files."""

    version: str
    texts: dict[str, str]


class PolicyStore(Protocol):
    """Holds the published policy set."""

    async def version(self) -> str | None:
        """The version published last, or ``None`` if nothing was published."""
        ...

    async def fetch(self) -> PolicySnapshot | None:
        """The set published last."""
        ...

    async def publish(self, version: str, texts: Mapping[str, str]) -> None:
        """Publish a set that has been validated."""
        ...


class InProcessPolicyStore:
    """The embedded setup's store: this process is the only reader."""

    def __init__(self) -> None:
        self._snapshot: PolicySnapshot | None = None

    async def version(self) -> str | None:
        return self._snapshot.version if self._snapshot else None

    async def fetch(self) -> PolicySnapshot | None:
        return self._snapshot

    async def publish(self, version: str, texts: Mapping[str, str]) -> None:
        self._snapshot = PolicySnapshot(version, dict(texts))


class RedisPolicyStore:
    """The server setup's store: one Redis key holds the set, another its version, so the
    processes' frequent polls read a few bytes only.

    Both keys carry the hash tag ``{policy}``: the publication writes them in one
    transaction, which a Redis Cluster runs only on keys of one slot. Every process polls
    the version key, wherever its client first connected — the cluster routes each read to
    the master of that slot, so a set published through any node reaches every gateway."""

    def __init__(self, *, client: RedisClient, prefix: str = "yiwang") -> None:
        self._client = client
        self._version_key = f"{prefix}:{{policy}}:version"
        self._set_key = f"{prefix}:{{policy}}:set"

    async def version(self) -> str | None:
        try:
            value = await self._client.get(self._version_key)
        except REDIS_FAILURES:
            raise StoreUnavailable("policy store") from None
        return value.decode() if isinstance(value, bytes) else value

    async def fetch(self) -> PolicySnapshot | None:
        try:
            raw = await self._client.get(self._set_key)
        except REDIS_FAILURES:
            raise StoreUnavailable("policy store") from None
        return None if raw is None else msgspec.json.decode(raw, type=PolicySnapshot)

    async def publish(self, version: str, texts: Mapping[str, str]) -> None:
        payload = msgspec.json.encode(PolicySnapshot(version, dict(texts)))
        try:
            # One transaction: a reader never sees the new version with the old set.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._set_key, payload)
                pipe.set(self._version_key, version)
                await pipe.execute()
        except REDIS_FAILURES:
            raise StoreUnavailable("policy store") from None

    async def close(self) -> None:
        await self._client.aclose()
