"""Log output: plain text for a terminal, one JSON object per line when configured.

``GATEWAY_LOG_FORMAT=json`` makes every line — the access log's, the gateway's own, uvicorn's —
a JSON object with ``ts``, ``level``, ``logger`` and ``message``; an access line adds its
fields (:mod:`gateway.telemetry.access`) at the top level, and any line written while a request
is served names its ``request_id``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import msgspec

from gateway.telemetry.access import ACCESS_LOGGER
from gateway.telemetry.context import current_request_id

__all__ = ["BANNER_LOGGER", "LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging"]

#: Where ``gateway serve`` says where everything is, with JSON logs (shown at any level).
BANNER_LOGGER = "gateway.banner"

LOG_FORMATS = ("text", "json")

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        else:
            request_id = current_request_id()
            if request_id is not None:
                line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, with an access line's department, audit index and
    request id after it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            extra = " ".join(
                f"{key}={access[key]}"
                for key in ("client", "resource", "audit_index", "request_id")
                if access.get(key) is not None
            )
            text = f"{text} {extra}"
        return text


_HANDLER_NAME = "gateway"


def configure_logging(*, level: str, fmt: str, access_log: bool) -> None:
    """Route every log record to standard error in ``fmt`` (``text`` or ``json``).

    Idempotent: a second call (another app in the same process) replaces the handler. The
    access log is written at INFO whatever ``level`` is: operators turn it off with
    ``GATEWAY_ACCESS_LOG=false``, not by raising the level of the gateway's own messages.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(BANNER_LOGGER).setLevel(logging.INFO)
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    # uvicorn's loggers keep their own handlers in text mode; in JSON mode they go through
    # the root's, so that every line is JSON. Its access log stays off: the gateway's says more.
    if fmt == "json":
        for name in ("uvicorn", "uvicorn.error"):
            uvicorn_logger = logging.getLogger(name)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
