"""The Redis client every part of the server setup uses: one server, or a Redis Cluster.

``GATEWAY_REDIS_URL`` says which (see :func:`gateway.settings.redis_cluster_address`): a
``redis://`` (``rediss://``, ``unix://``) URL is one server, a ``redis+cluster://`` URL names
seed nodes of a cluster. The callers see one client type and one family of failures either
way; every multi-key command and script they send keeps its keys in one hash slot (a ``{…}``
tag in every key), which a single server does not need and a cluster requires.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from gateway.settings import redis_cluster_address

__all__ = ["REDIS_FAILURES", "RedisClient", "answers", "connect"]

#: A Redis server or a Redis Cluster, through the same commands.
RedisClient = aioredis.Redis | aioredis.RedisCluster

#: What a client raises when the store cannot answer. A cluster client also raises
#: ``RedisClusterException``s, which are not ``RedisError``s: no node of the seeds answers,
#: a slot is not covered (a master lost without a replica to take over).
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException)

#: Seconds a command (or a connection attempt) may take before the store counts as down.
TIMEOUT_SECONDS = 1.0


def connect(url: str) -> RedisClient:
    """A client with short timeouts, so a dead Redis fails fast (503), and one immediate
    retry — a pooled connection that sat idle through a Redis restart is replaced at once
    instead of failing the request.

    One server: the retry is on a broken connection only, not on a timeout (the command may
    have run, and a frozen Redis must answer 503 within the second). A cluster: the client
    retries once on whatever redis-py counts as the layout having changed — a broken
    connection, a timeout, ``CLUSTERDOWN`` — after reading the slot layout again; that is
    what carries a request over a failover to a replica. So a frozen cluster node answers
    503 within about two seconds, and a retried admit is safe: it carries the request's
    nonce, so it finds its own claim of the ``jti``.
    """
    cluster = redis_cluster_address(url)
    if cluster is None:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_SECONDS,
            socket_connect_timeout=TIMEOUT_SECONDS,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
    return aioredis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        health_check_interval=5,
        retry=Retry(NoBackoff(), 1),
    )


async def answers(client: RedisClient) -> bool:
    """Whether the store answers: the server, or every master of the cluster. A cluster
    client's plain PING asks one node only, which would call the cluster up while a master
    — and with it every department whose keys hash to its slots — is gone."""
    try:
        if isinstance(client, aioredis.RedisCluster):
            return bool(await client.ping(target_nodes=aioredis.RedisCluster.PRIMARIES))
        return bool(await client.ping())
    except REDIS_FAILURES:
        return False
