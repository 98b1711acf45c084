"""Fail closed: a store that is down means 503 and no data; a spent budget means 429."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gateway.sdk import RateLimited, ServiceUnavailable
from tests.integration.test_lookups import QUERY
from tests.support import ROOT, GatewayProcess, free_port, running_gateway

FAST_FAIL = {"GATEWAY_DB_BUSY_TIMEOUT_MS": "300", "GATEWAY_AUDIT_TIMEOUT_SECONDS": "3"}


@pytest.fixture(scope="module", params=["embedded", "server"])
def fast_fail(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """A gateway with short store timeouts and a budget of three requests per hour."""
    env = {**FAST_FAIL, "GATEWAY_RATE_LIMIT": "3", "GATEWAY_RATE_WINDOW_SECONDS": "3600"}
    with running_gateway(
        tmp_path_factory.mktemp("ff"), keys_dir, server=request.param == "server", env=env
    ) as gw:
        yield gw


def _released(gw: GatewayProcess) -> int:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM audit_entries WHERE event = 'lookup:record:released'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_audit_store_down_means_503_and_no_data(fast_fail: GatewayProcess) -> None:
    released_before = _released(fast_fail)
    engine = sa.create_engine(fast_fail.database_url)
    client = fast_fail.client("hrss")
    try:
        with engine.connect() as conn:
            # Hold the audit table so the gateway's durable write cannot happen.
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                conn.execute(sa.text("LOCK TABLE audit_entries IN ACCESS EXCLUSIVE MODE"))
            token = client.lookup_token(**{**QUERY, "item": "000111001000", "fields": ["name"]})
            response = httpx.post(
                fast_fail.url + "/v1/lookups",
                content=token,
                headers={"Content-Type": "application/jwt"},
                timeout=20,
            )
            conn.rollback()
    finally:
        engine.dispose()
        client.close()
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "data" not in response.json()
    assert _released(fast_fail) == released_before


def test_rate_limit_is_429_with_retry_after(fast_fail: GatewayProcess) -> None:
    statuses = []
    with fast_fail.client("tax") as c:
        for _ in range(5):
            token = c.lookup_token(**{**QUERY, "item": "000109001000", "fields": ["name"]})
            r = httpx.post(
                fast_fail.url + "/v1/lookups",
                content=token,
                headers={"Content-Type": "application/jwt"},
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert 0 < int(r.headers["Retry-After"]) <= 3600
                assert fast_fail.audit_entry(r.json()["audit_index"])["reason_code"] == (
                    "rate-limited"
                )
        with pytest.raises(RateLimited) as err:
            c.lookup(**{**QUERY, "item": "000109001000", "fields": ["name"]})
    assert statuses == [200, 200, 200, 429, 429]
    assert err.value.retry_after > 0


def test_replay_cache_down_means_503(tmp_path: Path, keys_dir: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    gw = GatewayProcess(data_dir=tmp_path, keys_dir=keys_dir, env={"GATEWAY_REDIS_URL": dead_redis})
    gw.start()
    try:
        ready = httpx.get(gw.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["cache"] is False
        with gw.client("service-centre") as c, pytest.raises(ServiceUnavailable):
            c.lookup(fields=["name"], **QUERY)
    finally:
        gw.stop()


def test_more_than_one_worker_on_the_embedded_setup_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.app", "serve", "--workers", "2"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "GATEWAY_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "GATEWAY_WORKERS=2" in result.stderr
    assert "GATEWAY_REDIS_URL" in result.stderr
