"""The lookup cache: one read inside the admit step, said in every answer, dropped on a
provider's signal — across workers and processes when they share Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo.population import companies
from gateway.sdk import Forbidden
from tests.inprocess import ALSO_ON_CLUSTER, Gateway
from tests.integration.test_lookups import QUERY
from tests.support import GatewayProcess

SUBJECT = companies()[7]


def _lookup(gw: Gateway, fields: list[str]) -> dict[str, object]:
    with gw.client("service-centre") as c:
        answer = c.lookup(**{**QUERY, "subject": ("uscc", SUBJECT.uscc), "fields": fields})
    cache: dict[str, object] = answer.claims["provenance"]["cache"]
    assert answer.data["name"] == SUBJECT.name
    return cache


@ALSO_ON_CLUSTER
def test_second_lookup_is_served_from_the_cache_and_says_so(gateway: Gateway) -> None:
    with gateway.client("market") as provider:
        provider.invalidate(resource="enterprise-registration", reason="test start", operator="m-1")
    assert _lookup(gateway, ["name"]) == {"hit": False}
    # Every worker shares the cache in the server setup (Redis): ask several times.
    for _ in range(4):
        cache = _lookup(gateway, ["name", "status"])  # other fields: the whole record is cached
        assert cache["hit"] is True
        assert isinstance(cache["age_seconds"], float)
        assert 0 <= cache["age_seconds"] < 60


def test_provider_invalidation_reaches_every_worker(served_gateway: GatewayProcess) -> None:
    _lookup(served_gateway, ["name"])
    assert _lookup(served_gateway, ["name"])["hit"] is True
    with served_gateway.client("market") as provider:
        receipt = provider.invalidate(
            resource="enterprise-registration", reason="registration data corrected", operator="m-2"
        )
    entry = served_gateway.audit_entry(receipt.claims["audit"]["index"])
    assert entry["event"] == "resource:cache:invalidated"
    assert _lookup(served_gateway, ["name"]) == {"hit": False}


def test_only_the_provider_may_invalidate(gateway: Gateway) -> None:
    with gateway.client("tax") as other, pytest.raises(Forbidden) as err:
        other.invalidate(resource="enterprise-registration", reason="x", operator="t-9")
    assert err.value.reason == "not-provider"
    assert gateway.audit_entry(err.value.problem["audit_index"])["decision"] == "refused"


def test_two_processes_share_the_cache_and_its_invalidation(
    server_gateway: GatewayProcess, tmp_path: Path
) -> None:
    other = GatewayProcess(
        data_dir=tmp_path, keys_dir=server_gateway.keys_dir, env=dict(server_gateway.env)
    )
    other.start()
    try:
        with server_gateway.client("market") as provider:
            provider.invalidate(resource="enterprise-registration", reason="start", operator="m-3")
        assert _lookup(server_gateway, ["name"]) == {"hit": False}
        assert _lookup(other, ["name"])["hit"] is True  # cached by the first process
        with other.client("market") as provider:
            provider.invalidate(
                resource="enterprise-registration", reason="changed", operator="m-3"
            )
        assert _lookup(server_gateway, ["name"]) == {"hit": False}
    finally:
        other.stop()
