"""How an operator says "this Redis is a cluster": a ``redis+cluster://`` GATEWAY_REDIS_URL,
decoded strictly; a bad one is named by its variable and never echoed (it may hold a
password)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigurationError
from gateway.settings import RedisClusterAddress, load_settings, redis_cluster_address

SERVER = {"GATEWAY_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1/db", "GATEWAY_WORKERS": "2"}


def test_seed_nodes_credentials_and_tls_are_read() -> None:
    assert redis_cluster_address("redis+cluster://10.0.0.1:7000,redis-b.internal:7001/") == (
        RedisClusterAddress(nodes=(("10.0.0.1", 7000), ("redis-b.internal", 7001)))
    )
    assert redis_cluster_address("rediss+cluster://gw:p%40ss%3Aw@[fd00::1]:6380/0") == (
        RedisClusterAddress(nodes=(("fd00::1", 6380),), username="gw", password="p@ss:w", tls=True)
    )


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///run/redis.sock"]
)
def test_a_single_server_url_is_not_a_cluster(url: str) -> None:
    assert redis_cluster_address(url) is None
    assert not load_settings({**SERVER, "GATEWAY_REDIS_URL": url}).embedded


def test_a_cluster_url_is_the_server_setup() -> None:
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    s = load_settings({**SERVER, "GATEWAY_REDIS_URL": url})
    assert not s.embedded
    assert s.cache.redis_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://", "seed node 1: must be host:port"),
        ("redis+cluster://10.0.0.1", "seed node 1: must be host:port"),
        ("redis+cluster://a:7000,,b:7001", "seed node 2: must be host:port"),
        ("redis+cluster://a:0", "the port must be a number from 1 to 65535"),
        ("redis+cluster://a:65536", "the port must be a number from 1 to 65535"),
        ("redis+cluster://a:٧٠٠٠", "the port must be a number from 1 to 65535"),
        ("redis+cluster://bad_host:7000", "not a host name or IPv4 address"),
        ("redis+cluster://[not-v6]:7000", "not an IPv6 address"),
        ("redis+cluster://[::1]7000", "an IPv6 address needs [address]:port"),
        ("redis+cluster://a:7000/1", "database 0 only"),
        ("redis+cluster://a:7000?timeout=9", "no query or fragment"),
        ("redis+cluster://" + ",".join(f"h{i}:7000" for i in range(17)), "at most 16"),
    ],
)
def test_a_bad_cluster_url_is_refused_naming_the_variable(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        redis_cluster_address(url)
    with pytest.raises(ConfigurationError) as err:
        load_settings({**SERVER, "GATEWAY_REDIS_URL": url})
    assert any(p.startswith("GATEWAY_REDIS_URL: ") and reason in p for p in err.value.problems)


def test_the_password_of_a_refused_url_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings({**SERVER, "GATEWAY_REDIS_URL": "redis+cluster://gw:s3cret-pw@a:7000/2"})
    assert err.value.problems
    assert not any("s3cret-pw" in p for p in err.value.problems)


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis\\+cluster://"):
        load_settings({**SERVER, "GATEWAY_REDIS_URL": "cluster://a:7000"})


@given(st.text(max_size=80))
def test_any_text_after_the_scheme_is_an_address_or_a_reason(rest: str) -> None:
    try:
        address = redis_cluster_address("redis+cluster://" + rest)
    except ValueError as exc:
        reason = str(exc)
        address = None
    else:
        reason = ""
    if address is None:
        assert reason  # refused, and saying why
        return
    assert 1 <= len(address.nodes) <= 16
    assert all(host and 1 <= port <= 65535 for host, port in address.nodes)
