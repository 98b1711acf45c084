"""The telemetry's own parts: gauges from readings, the leaf with a request id, settings."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.audit.tree import leaf_bytes
from gateway.errors import ConfigurationError
from gateway.settings import load_settings
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.refresh import MetricsRefresher, Readings


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(metrics.exposition().decode())
        for s in f.samples
    }


def test_readings_become_gauges_and_a_gone_key_loses_its_series() -> None:
    metrics = GatewayMetrics()
    refresher = MetricsRefresher(metrics=metrics, read=lambda: Readings(tree_size=0), interval=5)
    refresher.apply(
        Readings(
            tree_size=41,
            checkpoint_size=40,
            checkpoint_at=1_800_000_000.5,
            key_expiry={("police", "kid-a"): 1_900_000_000.0, ("gateway", "kid-g"): 1.9e9},
            seal_expiry={"market-1": 1_850_000_000.0},
            circuits=[("tax-records", "open"), ("civil-records", "closed")],
        )
    )
    got = samples(metrics)
    assert got[("gateway_audit_tree_size", frozenset())] == 41
    assert got[("gateway_audit_checkpoint_tree_size", frozenset())] == 40
    assert got[("gateway_audit_checkpoint_timestamp_seconds", frozenset())] == 1_800_000_000.5
    key = (
        "gateway_key_expiry_timestamp_seconds",
        frozenset({("owner", "police"), ("kid", "kid-a")}),
    )
    assert got[key] == 1_900_000_000.0
    circuit = "gateway_source_circuit_state"
    assert got[(circuit, frozenset({("resource", "tax-records")}))] == 2
    assert got[(circuit, frozenset({("resource", "civil-records")}))] == 0
    refresher.apply(Readings(tree_size=42, key_expiry={("gateway", "kid-g"): 1.9e9}))
    got = samples(metrics)
    assert key not in got  # retired since: no stale expiry left behind
    assert got[("gateway_audit_tree_size", frozenset())] == 42
    # A reading without a checkpoint keeps the last one's figures.
    assert got[("gateway_audit_checkpoint_tree_size", frozenset())] == 40


def _row(**extra: object) -> dict[str, object]:
    return {
        "idx": 7,
        "at": dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC),
        "event": "lookup:record:released",
        "decision": "allowed",
        "latency_ms": 1.5,
        **extra,
    }


def test_the_request_id_is_in_the_leaf_only_where_set() -> None:
    without = json.loads(leaf_bytes(_row()))
    assert "request_id" not in without  # every entry before migration 0009 keeps its leaf
    assert leaf_bytes(_row(request_id=None)) == leaf_bytes(_row())
    with_id = json.loads(leaf_bytes(_row(request_id="proxy-1")))
    assert with_id["request_id"] == "proxy-1"
    assert {k: v for k, v in with_id.items() if k != "request_id"} == without


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOG_FORMAT", "yaml"), ("METRICS_PORT", "70000"), ("METRICS_REFRESH_SECONDS", "0")],
)
def test_bad_telemetry_settings_are_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({f"GATEWAY_{variable}": value})
    assert f"GATEWAY_{variable}" in str(caught.value)


def test_the_metrics_port_cannot_be_the_main_port() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"GATEWAY_PORT": "9100", "GATEWAY_METRICS_PORT": "9100"})
    assert "GATEWAY_METRICS_PORT" in str(caught.value)
