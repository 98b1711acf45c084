"""``/metrics``: the Prometheus exposition, behind the bearer token of the ``metrics`` role.

``gateway init`` creates ``keys/operators/metrics.token``; Prometheus reads it with
``authorization: {credentials_file: …}``. Operators who would rather not expose metrics on the
main port set ``GATEWAY_METRICS_PORT``: ``gateway serve`` then also serves them there, without
a token, on the address the gateway binds (docs/monitoring.md).
"""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.di import NamedDependency

from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, problems
from gateway.telemetry.metrics import CONTENT_TYPE, GatewayMetrics

__all__ = ["ROUTES", "metrics_exposition"]


@get(
    "/metrics",
    summary="Prometheus metrics of every worker of this gateway",
    description=(
        "运行指标（Prometheus 文本格式）。Requests by route and status, lookups by consumer,"
        " resource, decision and reason, latency by phase and source, audit commits, tree"
        " size and checkpoint age, cache hits, circuit breakers, key and seal expiry. Bearer"
        " token of the `metrics` role. Never names a subject, a case or an operator."
    ),
    tags=["operations"],
    guards=[require_role("metrics")],
    security=OPERATOR_SECURITY,
    responses=problems(401, 403),
    media_type=CONTENT_TYPE,
)
async def metrics_exposition(metrics: NamedDependency[GatewayMetrics]) -> Response[bytes]:
    metrics.prepare_exposition()
    # With several workers the exposition reads every worker's files: off the event loop.
    body = await asyncio.to_thread(metrics.exposition)
    return Response(content=body, media_type=CONTENT_TYPE)


#: Every route of this module, for the app factory.
ROUTES = [metrics_exposition]
