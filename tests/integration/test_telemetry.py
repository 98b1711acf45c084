"""Operations' view of a running gateway: Prometheus metrics at /metrics (and on a port of
their own), the request id of every answer and entry, one access-log line per request.

Counts are read as differences between two scrapes: the session's gateways serve other
tests too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.policy import DISTRICT_TZ
from gateway.demo.population import companies
from gateway.licensing.store import LicenceStore
from gateway.registry.gateway_keys import load_gateway_keys
from gateway.sdk import http_client
from gateway.telemetry.access import ACCESS_LOGGER, valid_request_id
from gateway.telemetry.logs import JsonFormatter, TextFormatter
from tests.inprocess import Gateway, InProcessGateway
from tests.support import GatewayProcess, free_port, running_gateway

COMPANY = companies()[7]
QUERY: dict[str, Any] = {
    "resource": "enterprise-registration",
    "subject": ("uscc", COMPANY.uscc),
    "item": "000201002000",
    "case": "MET-2026-000042",
    "reason": "运行指标测试",
    "operator": "clerk-metrics-7",
}
#: What must never appear in the exposition or a log line: the subject, the case, the clerk.
PRIVATE = (COMPANY.uscc, QUERY["case"], QUERY["operator"])

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def token_of(gw: Gateway, role: str) -> str:
    return (gw.keys_dir / "operators" / f"{role}.token").read_text().strip()


def scrape_text(gw: Gateway, url: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token_of(gw, 'metrics')}"}
    response = gw.http.get(url or gw.url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(gw: Gateway) -> Samples:
    return parse(scrape_text(gw))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- /metrics --------------------------------------------------------------------------------


def test_metrics_need_the_metrics_token(gateway: Gateway) -> None:
    url = gateway.url + "/metrics"
    assert gateway.http.get(url).status_code == 401
    admin = {"Authorization": f"Bearer {token_of(gateway, 'admin')}"}
    assert gateway.http.get(url, headers=admin).status_code == 403
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert gateway.http.get(url, headers=wrong).status_code == 403
    assert "gateway_build_info" in scrape_text(gateway)


def test_lookups_are_counted_by_consumer_resource_decision_and_reason(gateway: Gateway) -> None:
    before = scrape(gateway)
    with gateway.client("service-centre") as centre:
        released = centre.lookup(fields=["name", "status"], **QUERY)
        refused = gateway.http.post(
            gateway.url + "/v1/lookups",
            content=centre.lookup_token(fields=["name", "registered_capital"], **QUERY),
            headers={"Content-Type": "application/jwt"},
        )
    with gateway.client("police") as police:
        ungranted = gateway.http.post(
            gateway.url + "/v1/lookups",
            content=police.lookup_token(fields=["name"], **QUERY),
            headers={"Content-Type": "application/jwt"},
        )
    assert released.data["name"] == COMPANY.name
    assert refused.status_code == 403, refused.text
    assert refused.json()["reason"] == "field-not-granted"
    assert ungranted.status_code == 403, ungranted.text
    text = scrape_text(gateway)
    after = parse(text)
    lookups = "gateway_lookups_total"
    resource = "enterprise-registration"
    on_record = {
        ("service-centre", "released", ""): 1,
        ("service-centre", "refused", "field-not-granted"): 1,
        ("police", "refused", ungranted.json()["reason"]): 1,
    }
    for (consumer, decision, reason), count in on_record.items():
        labels = {"consumer": consumer, "resource": resource, "decision": decision}
        assert delta(before, after, lookups, **labels, reason=reason) == count, labels
    requests = "gateway_http_requests_total"
    assert delta(before, after, requests, route="/v1/lookups", method="POST", status="200") == 1
    assert delta(before, after, requests, route="/v1/lookups", method="POST", status="403") == 2
    phases = "gateway_exchange_phase_duration_seconds_count"
    assert delta(before, after, phases, exchange="lookup", phase="verify") == 3
    assert delta(before, after, phases, exchange="lookup", phase="audit") == 3
    assert delta(before, after, phases, exchange="lookup", phase="sign") == 1  # refusals: none
    # The released lookup read the cached resource once: a hit (another test may have read
    # the record before) or a miss and one source read.
    cache = "gateway_lookup_cache_total"
    hits = delta(before, after, cache, resource=resource, result="hit")
    misses = delta(before, after, cache, resource=resource, result="miss")
    assert hits + misses == 1
    assert delta(before, after, phases, exchange="lookup", phase="source") == misses
    entries = "gateway_audit_entries_total"
    assert delta(before, after, entries, event="lookup:record:released", decision="allowed",
                 reason="") == 1  # fmt: skip
    batch = "gateway_audit_batch_entries_sum"
    assert delta(before, after, batch) >= 3  # every entry of the three is in some commit
    fetches = "gateway_source_fetch_duration_seconds_count"
    assert (
        sum(
            after[k] - before.get(k, 0.0)
            for k in after
            if k[0] == fetches and ("resource", resource) in k[1]
        )
        == misses
    )
    # Neither the subject, nor the case, nor the clerk is ever a label.
    for private in PRIVATE:
        assert private not in text


def test_gauges_follow_the_stores(gateway: Gateway) -> None:
    assert isinstance(gateway, InProcessGateway)
    runtime = gateway.runtime
    with gateway.client("service-centre") as centre:
        centre.lookup(fields=["name"], **QUERY)
    runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC))
    # The checkpointer signs on its own every second too: the gauge shows one seen in between.
    first = runtime.transparency.latest()
    assert first is not None
    entries = gateway.audit_count()
    runtime.metrics_refresher.refresh_now()
    samples = scrape(gateway)
    last = runtime.transparency.latest()
    assert entries <= value(samples, "gateway_audit_tree_size") <= gateway.audit_count()
    shown = value(samples, "gateway_audit_checkpoint_tree_size")
    at = value(samples, "gateway_audit_checkpoint_timestamp_seconds")
    assert last is not None
    assert first.size <= shown <= last.size
    assert first.at.timestamp() <= at <= last.at.timestamp()
    expiry = {
        dict(labels)["seal"]: v
        for (name, labels), v in samples.items()
        if name == "gateway_seal_expiry_timestamp_seconds"
    }
    assert expiry, "every registered seal has its expiry gauge"
    keys = {
        dict(labels)["kid"]: v
        for (name, labels), v in samples.items()
        if name == "gateway_key_expiry_timestamp_seconds" and ("owner", "gateway") in labels
    }
    planned = {
        k.kid: k.retire_by.timestamp()
        for k in load_gateway_keys(runtime.engine)
        if k.status != "retired" and k.retire_by is not None
    }
    assert planned, "the active gateway key has a planned retirement"
    assert keys == planned
    for seal in LicenceStore(runtime.engine).seals():
        end = dt.datetime.combine(seal.valid_until + dt.timedelta(days=1), dt.time(), DISTRICT_TZ)
        assert expiry[seal.seal_id] == end.timestamp()


# --- request ids ----------------------------------------------------------------------------


def test_a_sent_request_id_is_echoed_and_kept_in_the_entry(gateway: Gateway) -> None:
    with gateway.client("service-centre") as centre:
        token = centre.lookup_token(fields=["name"], **QUERY)
        response = gateway.http.post(
            gateway.url + "/v1/lookups",
            content=token,
            headers={"Content-Type": "application/jwt", "X-Request-Id": "proxy-7f3a"},
        )
        answer = centre.verify_answer(response.text, request_token=token)
    assert response.headers["x-request-id"] == "proxy-7f3a"
    assert gateway.audit_entry(answer.audit_index)["request_id"] == "proxy-7f3a"


def test_without_a_request_id_one_is_made_and_kept(gateway: Gateway) -> None:
    with gateway.client("service-centre") as centre:
        token = centre.lookup_token(fields=["name"], **QUERY)
        response = gateway.http.post(
            gateway.url + "/v1/lookups", content=token, headers={"Content-Type": "application/jwt"}
        )
        answer = centre.verify_answer(response.text, request_token=token)
    made = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert gateway.audit_entry(answer.audit_index)["request_id"] == made
    again = gateway.http.get(gateway.url + "/healthz").headers["x-request-id"]
    assert again != made


def test_a_malformed_request_id_is_refused_by_name_and_changes_nothing(gateway: Gateway) -> None:
    entries = gateway.audit_count()
    with gateway.client("service-centre") as centre:
        response = gateway.http.post(
            gateway.url + "/v1/lookups",
            content=centre.lookup_token(fields=["name"], **QUERY),
            headers={"Content-Type": "application/jwt", "X-Request-Id": "a b"},
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == "X-Request-Id"
    assert problem["type"] == "urn:yiwang:problem:invalid-input"
    assert gateway.audit_count() == entries


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sent=st.binary(min_size=0, max_size=200))
def test_any_request_id_header_is_echoed_or_refused_never_a_failure(
    embedded_app: InProcessGateway, sent: bytes
) -> None:
    if any(b in sent for b in b"\r\n\x00") or sent != sent.strip():
        return  # no HTTP client sends these (h11 refuses them), and a server never sees them
    response = embedded_app.http.get(
        embedded_app.url + "/healthz", headers=[(b"X-Request-Id", sent)]
    )
    if valid_request_id(sent):
        assert response.status_code == 200
        assert response.headers["x-request-id"].encode() == sent
    else:
        assert response.status_code == 400
        assert response.json()["field"] == "X-Request-Id"
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


# --- the access log ---------------------------------------------------------------------------


def test_one_access_line_per_request_with_the_exchange_fields(
    embedded_app: InProcessGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger=ACCESS_LOGGER),
        embedded_app.client("service-centre") as centre,
    ):
        token = centre.lookup_token(fields=["name"], **QUERY)
        response = embedded_app.http.post(
            embedded_app.url + "/v1/lookups",
            content=token,
            headers={"Content-Type": "application/jwt", "X-Request-Id": "line-test-1"},
        )
        answer = centre.verify_answer(response.text, request_token=token)
    (record,) = [
        r
        for r in caplog.records
        if r.name == ACCESS_LOGGER and r.access["request_id"] == "line-test-1"  # type: ignore[attr-defined]
    ]
    fields = record.access  # type: ignore[attr-defined]
    assert fields["client"] == "service-centre"
    assert fields["service"] == "lookup"
    assert fields["resource"] == "enterprise-registration"
    assert fields["service_item"] == QUERY["item"]
    assert fields["route"] == "/v1/lookups"
    assert fields["status"] == 200
    assert fields["succeeded"] is True
    assert fields["audit_index"] == answer.audit_index
    assert fields["request_size"] == len(token)
    assert fields["response_size"] == len(response.content)
    assert fields["duration_ms"] > 0
    assert fields["request_in_ts"] <= fields["response_out_ts"]
    line = JsonFormatter().format(record)
    parsed = json.loads(line)
    assert parsed["logger"] == ACCESS_LOGGER
    assert parsed["audit_index"] == answer.audit_index
    text = TextFormatter().format(record)
    assert "client=service-centre" in text
    assert "request_id=line-test-1" in text
    for private in PRIVATE:
        assert private not in line
        assert private not in text


def test_a_refusal_line_names_its_reason(
    embedded_app: InProcessGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger=ACCESS_LOGGER),
        embedded_app.client("police") as police,
    ):
        response = embedded_app.http.post(
            embedded_app.url + "/v1/lookups",
            content=police.lookup_token(fields=["name"], **QUERY),
            headers={"Content-Type": "application/jwt", "X-Request-Id": "line-test-2"},
        )
    (record,) = [
        r
        for r in caplog.records
        if r.name == ACCESS_LOGGER and r.access["request_id"] == "line-test-2"  # type: ignore[attr-defined]
    ]
    fields = record.access  # type: ignore[attr-defined]
    assert fields["status"] == 403
    assert fields["succeeded"] is False
    assert fields["fault"] == response.json()["reason"]
    assert fields["audit_index"] == response.json()["audit_index"]


# --- real processes: several workers, JSON lines, a metrics port ------------------------------


def test_the_workers_metrics_add_up(server_gateway: GatewayProcess) -> None:
    """Two worker processes (multiprocess mode): one scrape counts what both served."""
    before = scrape(server_gateway)
    with server_gateway.client("service-centre") as centre:
        for n in range(8):
            centre.lookup(fields=["name"], **{**QUERY, "subject": ("uscc", companies()[n].uscc)})
    labels = {
        "consumer": "service-centre",
        "resource": "enterprise-registration",
        "decision": "released",
        "reason": "",
    }
    requests = {"route": "/v1/lookups", "method": "POST", "status": "200"}
    # A lookup is counted when its entry is durable, before its answer; the request itself
    # once its answer has left — a moment after the client has it, in whichever worker.
    deadline = time.monotonic() + 5
    while True:
        after = scrape(server_gateway)
        served = delta(before, after, "gateway_http_requests_total", **requests)
        if served >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta(before, after, "gateway_lookups_total", **labels) == 8
    assert served == 8


@pytest.fixture(scope="module")
def json_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[tuple[GatewayProcess, int]]:
    port = free_port()
    env = {"GATEWAY_LOG_FORMAT": "json", "GATEWAY_METRICS_PORT": str(port)}
    data = tmp_path_factory.mktemp("json-logs")
    with running_gateway(data, keys_dir, server=False, env=env) as gw:
        yield gw, port


def test_json_lines_and_a_metrics_port_of_their_own(
    json_gateway: tuple[GatewayProcess, int],
) -> None:
    gw, port = json_gateway
    with gw.client("service-centre") as centre:
        answer = centre.lookup(fields=["name"], **QUERY)
    with http_client(f"http://127.0.0.1:{port}", timeout=10) as metrics:
        exposed = metrics.get("/metrics")  # no token on the operators' own port
    assert exposed.status_code == 200
    samples = parse(exposed.text)
    labels = {
        "consumer": "service-centre",
        "resource": "enterprise-registration",
        "decision": "released",
        "reason": "",
    }
    assert value(samples, "gateway_lookups_total", **labels) >= 1
    assert "_created" not in exposed.text
    assert gw.log_path is not None
    lines = [line for line in gw.log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's included
    access = [p for p in parsed if p.get("logger") == ACCESS_LOGGER]
    assert any(p.get("audit_index") == answer.audit_index for p in access)
    assert all({"ts", "level", "logger", "message"} <= p.keys() for p in parsed)
    assert any("ready on" in p["message"] for p in parsed)  # the banner is a line too
