"""The gateway's Prometheus metrics: defined once per process, exposed at ``/metrics``.

One :class:`GatewayMetrics` per process holds every metric in its own registry (tests build
several gateways in one process). With several worker processes prometheus-client's
multiprocess mode is on — ``gateway serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` for its workers
before any of them starts — and the exposition merges every worker's files: counters and
histograms add up across workers (and survive a worker's restart), gauges take the largest
value any worker holds (each worker refreshes them from the shared database).

Labels are bounded sets: routes are path templates, departments and resources come from the
policy set, reasons from the table of audit codes. A subject, a case number or an operator is
never a label (nor anything a sender typed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gateway import __version__

if TYPE_CHECKING:
    from gateway.audit.entry import AuditEntry
    from gateway.telemetry.context import RequestRecord

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "multiprocess_directory"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A ``_created`` series beside every counter and histogram doubles the exposition and tells
# Prometheus nothing it needs (it handles counter resets itself).
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Request and phase latencies: 0.5 ms (a cached lookup's phase) to 10 s (a source deadline).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
#: Audit group commits: one entry to the largest batch the writer takes.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

#: Which lookup events count as which decision (``gateway_lookups_total``).
_LOOKUP_DECISIONS = {
    "lookup:record:released": "released",
    "lookup:record:not-found": "not-found",
    "lookup:record:refused": "refused",
}


def multiprocess_directory() -> str | None:
    """The directory of the workers' metric files when multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class GatewayMetrics:
    """Every metric of one gateway process. Construct once per process (the runtime does)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.request_seconds = Histogram(
            "gateway_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.phase_seconds = Histogram(
            "gateway_exchange_phase_duration_seconds",
            "Time a signed exchange spent in each phase (verify, decide, admit, source,"
            " audit, sign), by exchange.",
            ("exchange", "phase"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.source_seconds = Histogram(
            "gateway_source_fetch_duration_seconds",
            "Time a source adapter took to fetch one record, by resource, adapter and outcome.",
            ("resource", "adapter", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lookups = Counter(
            "gateway_lookups",
            "Lookups on the record (durable audit entries), by consumer department, resource,"
            " decision and refusal reason.",
            ("consumer", "resource", "decision", "reason"),
            registry=r,
        )
        self.audit_entries = Counter(
            "gateway_audit_entries",
            "Audit entries committed, by event, decision and reason code.",
            ("event", "decision", "reason"),
            registry=r,
        )
        self.audit_batch = Histogram(
            "gateway_audit_batch_entries",
            "Entries per durable group commit of the audit log.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "gateway_audit_commit_duration_seconds",
            "Time one group commit of the audit log took (its transaction, fsync included).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "gateway_lookup_cache",
            "Lookup-cache reads of cached resources, by resource and result (hit or miss).",
            ("resource", "result"),
            registry=r,
        )
        self.tree_size = Gauge(
            "gateway_audit_tree_size",
            "Entries in the audit log's Merkle tree.",
            registry=r,
            multiprocess_mode="max",
        )
        self.checkpoint_size = Gauge(
            "gateway_audit_checkpoint_tree_size",
            "Tree size of the latest signed checkpoint.",
            registry=r,
            multiprocess_mode="max",
        )
        self.checkpoint_time = Gauge(
            "gateway_audit_checkpoint_timestamp_seconds",
            "When the latest signed checkpoint was made (its age: time() minus this).",
            registry=r,
            multiprocess_mode="max",
        )
        self.circuit = Gauge(
            "gateway_source_circuit_state",
            "Circuit breaker of a source adapter: 0 closed, 1 half-open, 2 open (the most"
            " open of any worker's).",
            ("resource",),
            registry=r,
            multiprocess_mode="max",
        )
        self.key_expiry = Gauge(
            "gateway_key_expiry_timestamp_seconds",
            "When a key stops being valid, by owner (a department id or 'gateway') and kid.",
            ("owner", "kid"),
            registry=r,
            multiprocess_mode="max",
        )
        self.seal_expiry = Gauge(
            "gateway_seal_expiry_timestamp_seconds",
            "When an e-seal's validity ends, by seal id.",
            ("seal",),
            registry=r,
            multiprocess_mode="max",
        )
        self.info = Gauge(
            "gateway_build_info",
            "The gateway's version (always 1).",
            ("version",),
            registry=r,
            multiprocess_mode="max",
        )
        self.info.labels(__version__).set(1)
        self._expiring: dict[Gauge, set[tuple[str, ...]]] = {}
        # The labelled children the request path uses, looked up once each: ``labels()``
        # validates and locks on every call, several times the cost of the observation.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._before_exposition: list[Callable[[], None]] = []

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- what the request path and the writer report ------------------------------------

    def request_done(
        self, record: RequestRecord, *, route: str, method: str, status: int, seconds: float
    ) -> None:
        """One answered request: its count, its latency and its phases."""
        child = self._child
        child(self.requests, route, method, str(status)).inc()
        child(self.request_seconds, route).observe(seconds)
        if record.exchange is not None:
            for name, spent in record.phases.items():
                child(self.phase_seconds, record.exchange, name).observe(spent)
        for resource, adapter, outcome, spent in record.sources:
            child(self.source_seconds, resource, adapter, outcome).observe(spent)
        for resource, hit in record.cache_reads:
            child(self.cache, resource, "hit" if hit else "miss").inc()

    def committed(self, entries: Sequence[AuditEntry], seconds: float) -> None:
        """One group commit of the audit log (called on the writer's thread, off the loop)."""
        self.audit_batch.observe(len(entries))
        self.audit_commit_seconds.observe(seconds)
        child = self._child
        for entry in entries:
            reason = entry.reason_code or ""
            child(self.audit_entries, entry.event, str(entry.decision), reason).inc()
            decision = _LOOKUP_DECISIONS.get(entry.event)
            if decision is not None:
                department, resource = entry.department or "", entry.resource or ""
                child(self.lookups, department, resource, decision, reason).inc()

    # --- what the refresher reads from the stores ---------------------------------------

    def set_expiries(self, gauge: Gauge, values: Iterable[tuple[tuple[str, ...], float]]) -> None:
        """Replace ``gauge``'s series by ``values`` (a key retired or a seal removed since the
        last refresh loses its series)."""
        seen: set[tuple[str, ...]] = set()
        for labels, value in values:
            gauge.labels(*labels).set(value)
            seen.add(labels)
        for gone in self._expiring.get(gauge, set()) - seen:
            gauge.remove(*gone)
        self._expiring[gauge] = seen

    # --- exposition ---------------------------------------------------------------------

    def before_exposition(self, hook: Callable[[], None]) -> None:
        """Have :meth:`prepare_exposition` call ``hook``: the access layer's, which writes
        the metrics of answered requests that wait for their batch."""
        self._before_exposition.append(hook)

    def prepare_exposition(self) -> None:
        """Bring every metric up to date before it is read (on the event loop's thread)."""
        for hook in self._before_exposition:
            hook()

    def exposition(self) -> bytes:
        """The text exposition of every metric (all workers' when there are several)."""
        directory = multiprocess_directory()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
