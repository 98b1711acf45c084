"""What metrics and the access log cost per lookup, measured on this machine.

``python -m loadtests.telemetry_cost`` times, in one process, what the telemetry adds to one
signed lookup on the request path and on the audit writer's thread: the request's record
(opened and closed by the access layer), the phases the pipeline adds to it, the metrics of the
answered request (count, latency, six phases, one source read, one cache read) and of its
durable entry, and the access-log line (JSON and text, written to ``/dev/null``). The same
figures are then measured in prometheus-client's multiprocess mode (several workers), in a
child process started with ``PROMETHEUS_MULTIPROC_DIR`` set. It prints microseconds of CPU
per lookup, as the median of several rounds, and the ratio to the lookup's own CPU when given
one (``--lookup-us``, from ``make bench``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable

from loadtests.timing import median_cpu_us

ROUNDS = 7
LOOKUPS = 20_000


def _median_us(work: Callable[[], object], count: int) -> float:
    return median_cpu_us(work, count, rounds=ROUNDS)


def measure() -> dict[str, float]:
    """Microseconds per lookup of each part, in this process's metrics mode."""
    from gateway.audit.entry import AuditEntry, Outcome
    from gateway.telemetry.access import ACCESS_LOGGER
    from gateway.telemetry.context import RequestRecord, close_record, open_record
    from gateway.telemetry.logs import JsonFormatter, TextFormatter
    from gateway.telemetry.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department="service-centre",
        resource="enterprise-registration",
    )

    def lookup_record() -> RequestRecord:
        """What a lookup leaves in its record: opened and closed, six phases, a source read
        and a cache read."""
        record = close_record(open_record("0123456789abcdef0123456789abcdef", now=0.0))
        record.exchange = "lookup"
        for name in ("verify", "decide", "admit", "source", "audit", "sign"):
            record.add(name, 0.0001)
        record.sources.append(("enterprise-registration", "SqlSourceAdapter", "found", 0.001))
        record.cache_reads.append(("enterprise-registration", False))
        return record

    def record_and_phases() -> None:
        lookup_record()

    record = lookup_record()

    def request_metrics() -> None:
        metrics.request_done(record, route="/v1/lookups", method="POST", status=200, seconds=0.004)

    def entry_metrics() -> None:
        metrics.committed([entry], 0.002)

    access = {
        "request_id": "0123456789abcdef0123456789abcdef",
        "request_in_ts": "2026-12-01T08:00:00.000Z",
        "response_out_ts": "2026-12-01T08:00:00.004Z",
        "client": "service-centre",
        "client_address": "127.0.0.1",
        "method": "POST",
        "route": "/v1/lookups",
        "service": "lookup",
        "resource": "enterprise-registration",
        "service_item": "000201002000",
        "status": 200,
        "succeeded": True,
        "fault": None,
        "request_size": 894,
        "response_size": 1418,
        "duration_ms": 4.0,
        "audit_index": 123456,
    }
    logger = logging.getLogger(ACCESS_LOGGER + ".cost")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    results: dict[str, float] = {
        "request record and phases": _median_us(record_and_phases, LOOKUPS),
        "metrics of the request": _median_us(request_metrics, LOOKUPS),
        "metrics of its entry (writer thread)": _median_us(entry_metrics, LOOKUPS),
    }
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for name, formatter in (("json", JsonFormatter()), ("text", TextFormatter())):
            handler = logging.StreamHandler(sink)
            handler.setFormatter(formatter)
            logger.handlers = [handler]

            def line() -> None:
                logger.info("POST /v1/lookups 200 4.0 ms", extra={"access": access})

            results[f"access-log line ({name})"] = _median_us(line, LOOKUPS // 4)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookup-us", type=float, default=None, help="a lookup's own CPU (µs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure()))
        return
    single = measure()
    with tempfile.TemporaryDirectory(prefix="telemetry-cost-") as directory:
        child = subprocess.run(
            [sys.executable, "-m", "loadtests.telemetry_cost", "--child"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
            capture_output=True,
            text=True,
            check=True,
        )
    multi = json.loads(child.stdout)
    print(f"telemetry per lookup, µs (median of {ROUNDS} rounds; {os.cpu_count()} CPUs)")
    print(f"{'part':40} {'one worker':>12} {'several':>12}")
    for name in single:
        print(f"{name:40} {single[name]:12.1f} {multi[name]:12.1f}")
    parts = [k for k in single if not k.startswith("access-log line (text")]
    for label, figures in (("one worker", single), ("several workers", multi)):
        total = sum(figures[k] for k in parts)
        ratio = f" = {total / args.lookup_us:.1%} of a lookup" if args.lookup_us else ""
        print(f"total with JSON lines, {label}: {total:.1f} µs{ratio}")


if __name__ == "__main__":
    main()
