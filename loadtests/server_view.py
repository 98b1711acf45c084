"""What a phase looked like from inside the gateway: its own metrics, read before and after.

The load generator's latency includes its own scheduling (locust shares the two cores with
the gateway); the gateway's histograms say how long the gateway held each request, how long
each phase of a signed exchange took and what its audit group commits cost. ``make bench``
prints this view for the paced phase, where the latency goal is set.

The histograms' buckets are coarse (…, 5, 10, 25 ms), so quantiles are read as the bucket
they fall in; means are exact (sum / count).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSnapshot", "ServerView", "read_metrics", "server_view"]

_REQUEST = "gateway_http_request_duration_seconds"
_PHASE = "gateway_exchange_phase_duration_seconds"
_COMMIT = "gateway_audit_commit_duration_seconds"
_BATCH = "gateway_audit_batch_entries"

#: A sample's identity: its name and its labels, in order.
_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Every histogram sample of one scrape (``_bucket``, ``_sum``, ``_count``)."""

    samples: Mapping[_Key, float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of one histogram's buckets, in bound order."""
        want = set(labels.items())
        found = []
        for (sample, sample_labels), count in self.samples.items():
            if sample != name + "_bucket":
                continue
            as_dict = dict(sample_labels)
            bound = as_dict.pop("le", None)
            if bound is not None and set(as_dict.items()) == want:
                found.append((float(bound), count))
        return sorted(found)


def read_metrics(base_url: str, keys_dir: Path, *, timeout: float = 10.0) -> MetricsSnapshot:
    """Scrape ``/metrics`` with the ``metrics`` operator token ``gateway init`` wrote."""
    token = (keys_dir / "operators" / "metrics.token").read_text(encoding="utf-8").strip()
    response = httpx.get(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )
    response.raise_for_status()
    samples: dict[_Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.type != "histogram":
            continue
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return MetricsSnapshot(samples)


@dataclass(frozen=True, slots=True)
class ServerView:
    """One route's requests and the audit log's commits between two snapshots."""

    requests: int
    request_mean_ms: float
    #: The upper bound of the bucket each quantile falls in (ms; inf past the last bucket).
    request_quantiles_ms: Mapping[float, float]
    phase_mean_ms: Mapping[str, float]
    commits: int
    commit_mean_ms: float
    entries_per_commit: float

    def lines(self) -> list[str]:
        q = ", ".join(
            f"p{100 * k:g} ≤ {_ms(v)}" for k, v in sorted(self.request_quantiles_ms.items())
        )
        phases = ", ".join(f"{name} {ms:.2f}" for name, ms in self.phase_mean_ms.items())
        return [
            f"gateway's own view: {self.requests} requests, mean {self.request_mean_ms:.2f} ms, "
            f"{q} (histogram buckets)",
            f"  mean ms per phase: {phases}",
            f"  audit group commits: {self.commits}, {self.entries_per_commit:.1f} entries "
            f"each, {self.commit_mean_ms:.2f} ms each",
        ]


def _ms(bound_ms: float) -> str:
    return "∞" if math.isinf(bound_ms) else f"{bound_ms:g} ms"


def _quantile_bound(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    counted = dict(before)
    deltas = [(bound, total - counted.get(bound, 0.0)) for bound, total in after]
    if not deltas or deltas[-1][1] <= 0:
        return math.nan
    wanted = q * deltas[-1][1]
    return next(1000 * bound for bound, cumulative in deltas if cumulative >= wanted)


def server_view(
    before: MetricsSnapshot,
    after: MetricsSnapshot,
    *,
    route: str,
    exchange: str,
    phases: tuple[str, ...] = ("verify", "decide", "admit", "source", "audit", "sign"),
    quantiles: tuple[float, ...] = (0.5, 0.99),
) -> ServerView:
    """The difference of two snapshots for one route (its template, ``/v1/lookups``) and one
    kind of signed exchange (``lookup``)."""

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = delta(_REQUEST + "_count", route=route)
    phase_mean = {}
    for phase in phases:
        count = delta(_PHASE + "_count", exchange=exchange, phase=phase)
        if count > 0:
            spent = delta(_PHASE + "_sum", exchange=exchange, phase=phase)
            phase_mean[phase] = 1000 * spent / count
    commits = delta(_COMMIT + "_count")
    return ServerView(
        requests=round(requests),
        request_mean_ms=1000 * delta(_REQUEST + "_sum", route=route) / requests
        if requests
        else math.nan,
        request_quantiles_ms={
            q: _quantile_bound(
                before.buckets(_REQUEST, route=route), after.buckets(_REQUEST, route=route), q
            )
            for q in quantiles
        },
        phase_mean_ms=phase_mean,
        commits=round(commits),
        commit_mean_ms=1000 * delta(_COMMIT + "_sum") / commits if commits else math.nan,
        entries_per_commit=delta(_BATCH + "_sum") / commits if commits else math.nan,
    )
