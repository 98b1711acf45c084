"""The outermost layer of every HTTP request: its request id, its access-log line, its metrics.

An ASGI wrapper around the whole app (404s and refusals before routing included), so that
every answer carries ``X-Request-Id`` and is counted once. The request id is the one the caller
sent in ``X-Request-Id`` (a reverse proxy's, say) when it is a plain token of at most 128
characters, else a new random one; a header that is not such a token is refused with a 400
problem naming it, like any other malformed input. The id is stored in every audit entry the
request writes (:attr:`gateway.audit.AuditEntry.request_id`).

The access-log line carries what X-Road's operational monitoring records for each exchange:
when the request came in and the answer went out, the client department, the service (the
exchange and its resource and service item), the status, the sizes of request and answer, the
duration and the audit index — never a subject, a case or anything else the sender wrote.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import InvalidInput
from gateway.http.problems import PROBLEM_JSON, problem_body
from gateway.telemetry.context import close_record, open_record
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["ACCESS_LOGGER", "REQUEST_ID_HEADER", "AccessMiddleware", "valid_request_id"]

ACCESS_LOGGER = "gateway.access"
REQUEST_ID_HEADER = "X-Request-Id"
_HEADER = REQUEST_ID_HEADER.lower().encode()
_VALID_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


def valid_request_id(value: bytes) -> bool:
    """Whether ``value`` is usable as a request id as sent (a plain token, ≤ 128 characters)."""
    return _VALID_ID.fullmatch(value) is not None


def _refusal(reason: str) -> tuple[int, bytes]:
    exc = InvalidInput(REQUEST_ID_HEADER, reason)
    body = problem_body(
        exc.status, exc.slug, exc.title, str(exc), field=exc.field, reason=exc.reason
    )
    return exc.status, body


class AccessMiddleware:
    """Wraps the app's ASGI handler; ``metrics`` gives this process's metrics once the app
    has started (``None`` before: nothing is counted then)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Callable[[], GatewayMetrics | None],
        access_log: bool,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._log = logging.getLogger(ACCESS_LOGGER) if access_log else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        arrived, started = time.time(), time.perf_counter()
        sent_id: bytes | None = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                sent_id = value
                break
        refusal: tuple[int, bytes] | None = None
        if sent_id is None:
            request_id = os.urandom(16).hex()
        elif valid_request_id(sent_id):
            request_id = sent_id.decode("ascii")
        else:
            request_id = os.urandom(16).hex()
            refusal = _refusal("must be 1 to 128 letters, digits or ._:/+=-")
        id_header = (b"x-request-id", request_id.encode("ascii"))
        token = open_record(request_id, now=arrived)
        status, received, answered = 500, 0, 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), id_header]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                answered += len(message.get("body", b""))
            await send(message)

        try:
            if refusal is not None:
                status, body = refusal
                await counting_send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", PROBLEM_JSON.encode())],
                    }
                )
                await counting_send(
                    {"type": "http.response.body", "body": body, "more_body": False}
                )
            else:
                await self._app(scope, counting_receive, counting_send)
        finally:
            seconds = time.perf_counter() - started
            record = close_record(token)
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", ""))
            metrics = self._metrics()
            if metrics is not None:
                metrics.request_done(
                    record, route=route, method=method, status=status, seconds=seconds
                )
            if self._log is not None:
                self._log.info(
                    "%s %s %d %.1f ms",
                    method,
                    route,
                    status,
                    seconds * 1000,
                    extra={
                        "access": {
                            "request_id": request_id,
                            "request_in_ts": _iso(arrived),
                            "response_out_ts": _iso(arrived + seconds),
                            "client": record.department,
                            "client_address": (scope.get("client") or ("",))[0],
                            "method": method,
                            "route": route,
                            "service": record.exchange,
                            "resource": record.resource,
                            "service_item": record.service_item,
                            "status": status,
                            "succeeded": status < 400,
                            "fault": record.outcome,
                            "request_size": received,
                            "response_size": answered,
                            "duration_ms": round(seconds * 1000, 3),
                            "audit_index": record.audit_index,
                        }
                    },
                )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
