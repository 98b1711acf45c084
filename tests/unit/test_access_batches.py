"""The access layer writes answered requests' lines and metrics in batches, never late.

A line waits only while another request is in flight, at most ``BATCH_SECONDS`` and at most
``BATCH_LIMIT`` lines; it keeps the time its answer left; ``/metrics`` writes what waits before
it is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.access import ACCESS_LOGGER, BATCH_LIMIT, BATCH_SECONDS, AccessMiddleware
from gateway.telemetry.logs import JsonFormatter
from gateway.telemetry.metrics import GatewayMetrics


class _App:
    """Answers at once, except ``/slow``, which waits for :attr:`release`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["path_template"] = scope["path"]
        if scope["path"] == "/slow":
            self.entered.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def _get(middleware: AccessMiddleware, path: str) -> None:
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    await middleware(scope, receive, send)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def routes(self) -> list[str]:
        return [record.access["route"] for record in self.records]  # type: ignore[attr-defined]


@pytest.fixture
def lines() -> Iterator[_Lines]:
    logger = logging.getLogger(ACCESS_LOGGER)
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _counted(metrics: GatewayMetrics, route: str) -> float:
    metrics.prepare_exposition()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "gateway_http_requests_total" and sample.labels["route"] == route:
                return sample.value
    return 0.0


async def _slow_in_flight(app: _App, middleware: AccessMiddleware) -> asyncio.Task[None]:
    """``/slow`` under way: in flight until :func:`_finish`."""
    slow = asyncio.create_task(_get(middleware, "/slow"))
    await app.entered.wait()
    return slow


async def _finish(app: _App, slow: asyncio.Task[None]) -> None:
    app.release.set()
    await slow


def _setup() -> tuple[_App, GatewayMetrics, AccessMiddleware]:
    app, metrics = _App(), GatewayMetrics()
    return app, metrics, AccessMiddleware(app, metrics=lambda: metrics, access_log=True)


def test_a_line_is_written_as_its_request_ends_when_no_other_is_in_flight(lines: _Lines) -> None:
    async def scenario() -> None:
        _, metrics, middleware = _setup()
        await _get(middleware, "/fast")
        assert lines.routes() == ["/fast"]
        assert _counted(metrics, "/fast") == 1

    asyncio.run(scenario())


def test_a_line_waits_for_the_request_in_flight_and_keeps_its_own_time(lines: _Lines) -> None:
    async def scenario() -> None:
        app, metrics, middleware = _setup()
        slow = await _slow_in_flight(app, middleware)
        await _get(middleware, "/fast")
        answered = time.time()
        assert lines.routes() == []  # waits for its batch
        await asyncio.sleep(BATCH_SECONDS / 2)
        assert lines.routes() == []
        await _finish(app, slow)
        written = time.time()
        assert lines.routes() == ["/fast", "/slow"]
        fast = lines.records[0]
        # Timed when the answer left, not when the batch was written half a batch later.
        assert fast.created <= answered < written - BATCH_SECONDS / 3
        line = JsonFormatter().format(fast)
        assert f'"response_out_ts":"{fast.access["response_out_ts"]}"' in line  # type: ignore[attr-defined]
        assert _counted(metrics, "/fast") == 1

    asyncio.run(scenario())


def test_a_waiting_line_is_written_within_the_batch_time(lines: _Lines) -> None:
    async def scenario() -> None:
        app, _, middleware = _setup()
        slow = await _slow_in_flight(app, middleware)
        await _get(middleware, "/fast")
        assert lines.routes() == []
        await asyncio.sleep(BATCH_SECONDS * 3)
        assert lines.routes() == ["/fast"]  # while /slow is still in flight
        await _finish(app, slow)
        assert lines.routes() == ["/fast", "/slow"]

    asyncio.run(scenario())


def test_no_more_than_the_batch_limit_waits(lines: _Lines) -> None:
    async def scenario() -> None:
        app, _, middleware = _setup()
        slow = await _slow_in_flight(app, middleware)
        for _ in range(BATCH_LIMIT - 1):
            await _get(middleware, "/fast")
        assert lines.routes() == []
        await _get(middleware, "/fast")
        assert lines.routes() == ["/fast"] * BATCH_LIMIT
        await _finish(app, slow)

    asyncio.run(scenario())


def test_metrics_read_while_a_request_is_in_flight_count_every_answered_one(
    lines: _Lines,
) -> None:
    async def scenario() -> None:
        app, metrics, middleware = _setup()
        slow = await _slow_in_flight(app, middleware)
        await _get(middleware, "/fast")
        await _get(middleware, "/fast")
        assert _counted(metrics, "/fast") == 2  # written before the exposition is read
        assert lines.routes() == ["/fast", "/fast"]
        await _finish(app, slow)
        assert _counted(metrics, "/slow") == 1

    asyncio.run(scenario())


def test_a_cancelled_request_is_still_written(lines: _Lines) -> None:
    async def scenario() -> None:
        app, metrics, middleware = _setup()
        slow = await _slow_in_flight(app, middleware)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert lines.routes() == ["/slow"]
        assert lines.records[0].access["status"] == 500  # type: ignore[attr-defined]
        assert _counted(metrics, "/slow") == 1

    asyncio.run(scenario())
