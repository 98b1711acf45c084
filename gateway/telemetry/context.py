"""What one request's telemetry knows, filled in as the request goes.

The access middleware (:mod:`gateway.telemetry.access`) opens a :class:`RequestRecord` for each
HTTP request and keeps it in a context variable; the signed exchange and the services write into
it what only they know (the verified department, the resource and service item, the audit index,
how long each phase took). When the answer has left, the middleware turns the record into one
access-log line and the request's metrics. Nothing here imports a framework: the audit entry and
the pipeline use it too.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

__all__ = [
    "RequestRecord",
    "close_record",
    "current_request",
    "current_request_id",
    "open_record",
]


@dataclass(slots=True)
class RequestRecord:
    """One request as the telemetry sees it. Never holds a subject, a case or an operator."""

    request_id: str
    started: float  # time.perf_counter() at arrival
    received_at: float  # epoch seconds at arrival
    exchange: str | None = None  # the signed exchange's name, once known
    department: str | None = None  # the verified sender
    resource: str | None = None
    service_item: str | None = None
    audit_index: int | None = None  # the (last) entry the request wrote
    outcome: str | None = None  # the audit reason code of a refusal, once known
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    #: Each source read: (resource, adapter class, outcome, seconds).
    sources: list[tuple[str, str, str, float]] = field(default_factory=list)
    #: Each lookup-cache read of a cached resource: (resource, hit).
    cache_reads: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, name: str, seconds: float) -> None:
        """Time spent in phase ``name`` (added up: a batch reads several sources)."""
        self.phases[name] = self.phases.get(name, 0.0) + seconds


_CURRENT: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "gateway_request", default=None
)


def current_request() -> RequestRecord | None:
    """The record of the request being served here, or ``None`` outside a request."""
    return _CURRENT.get()


def current_request_id() -> str | None:
    """The request id of the request being served here (what its audit entries carry)."""
    record = _CURRENT.get()
    return None if record is None else record.request_id


def open_record(request_id: str, *, now: float) -> contextvars.Token[RequestRecord | None]:
    """Start the record of a request (the middleware's call); reset with :func:`close_record`."""
    return _CURRENT.set(RequestRecord(request_id, time.perf_counter(), now))


def close_record(token: contextvars.Token[RequestRecord | None]) -> RequestRecord:
    """End the record :func:`open_record` started; the record, as the request left it."""
    record = _CURRENT.get()
    _CURRENT.reset(token)
    assert record is not None, "close_record without open_record"
    return record
