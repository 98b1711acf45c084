"""Locust scenario for the gateway: signed lookups and licence verifications, and a bare
endpoint to compare them with.

Three user classes, measured one at a time: name the class on locust's command line, or set
``LOADTEST_SCENARIO=lookup``, ``=verify`` or ``=healthz`` (with none, locust mixes them; do
not use ``--tags`` to choose, as the other classes' users would then spin without a task):

* ``LookupUser`` — ``POST /v1/lookups`` with signed request tokens from
  several departments (service-centre, tax, hrss, realestate), every one a lookup the demo
  district's grants allow, so anything but 200 is a failure and is reported as one, with the
  status and the problem's reason (e.g. ``409 tax replayed``).
* ``VerifyUser`` — ``POST /v1/verifications`` by licence identifier (clerks of three
  departments), pre-signed the same way; anything but 200 is a failure;
* ``HealthzUser`` — ``GET /healthz``, the bare JSON endpoint of the same
  server: the yardstick the lookup figures are divided by (docs/architecture.md, "Speed").

Why the tokens are pre-signed: on a two-core machine the load generator and the gateway share
the CPUs, and signing a token (ES256/EdDSA) in the load generator during the run would take
CPU from the server and make the lookup path look slower than it is. So the whole pool is
signed before the timed run starts (``loadtests.tokens``): either by ``loadtests.bench``
into a file named by ``LOADTEST_TOKENS``, or, without that variable, here at locust's
``init`` event from the keys in ``LOADTEST_KEYS_DIR`` (default ``keys``). Each token has a
fresh ``jti`` and a lifetime of at most 300 s, so it is sent once; when the pool is used up
the run stops — that is the lookup phase's request bound.

Run by hand against a gateway on 127.0.0.1:8080 (started with a high ``GATEWAY_RATE_LIMIT``)::

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 20s \\
        --host http://127.0.0.1:8080 LookupUser
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 16 -r 16 -t 20s \\
        --host http://127.0.0.1:8080 HealthzUser

Environment: ``LOADTEST_TOKENS`` (pool file), ``LOADTEST_KEYS_DIR``, ``LOADTEST_POOL_SIZE``
(default 20000, when signing here), ``LOADTEST_AUDIENCE`` (default ``yiwang-gateway``),
``LOADTEST_MAX_REQUESTS`` (stop after this many requests; default 1000000),
``LOADTEST_RESULTS`` (write exact latency percentiles as JSON there at the end — locust's own
percentiles are rounded to whole milliseconds, too coarse for a sub-millisecond endpoint),
``LOADTEST_SERVER_PID`` (the gateway's pid: its CPU time over the measured window goes into
the results too), ``LOADTEST_ALLOW_REMOTE=1`` to aim at anything but the loopback interface.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from array import array
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent  # type: ignore[import-untyped]  # no stubs installed; locust runs on it
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from loadtests.schedule import FixedRateSchedule
from loadtests.tokens import read_pool, sign_pool

__all__ = ["HealthzUser", "LookupUser", "VerifyUser"]

log = logging.getLogger("loadtests")

LOOKUP_NAME = "/v1/lookups"
VERIFY_NAME = "/v1/verifications"
HEALTHZ_NAME = "/healthz"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


class _Run:
    """State shared by all users of this locust process (gevent: one thread, no locks)."""

    def __init__(self) -> None:
        self.tokens: deque[tuple[str, str]] = deque()
        self.max_requests = _env_int("LOADTEST_MAX_REQUESTS", 1_000_000)
        self.started = 0
        self.stop_reason = ""
        self.cpu_warnings = 0
        self.latencies: dict[str, array[float]] = {}
        self.failures: dict[str, int] = {}
        self.window: dict[str, list[float]] = {}  # name -> [first start, last end] (epoch s)
        self.environment: Environment | None = None
        self.cpu_marks: list[tuple[float, float, float, float]] = []  # see _cpu_mark
        # A paced phase's latencies counted from each request's turn in the schedule, not
        # from when it was sent (the same unless every user was busy when its turn came).
        self.from_schedule: dict[str, array[float]] = {}

    def take(self) -> bool:
        """Count one request against the bound; False once the bound is reached."""
        if self.started >= self.max_requests:
            return False
        self.started += 1
        return True

    def reset(self) -> None:
        self.latencies.clear()
        self.from_schedule.clear()
        self.failures.clear()
        self.window.clear()
        self.cpu_marks = [_cpu_mark()]


def _cpu_mark() -> tuple[float, float, float, float]:
    """Wall clock, the gateway's CPU seconds (``LOADTEST_SERVER_PID``, via /proc; NaN if not
    known), this process's CPU seconds and the whole machine's busy CPU seconds (NaN off
    Linux) — taken at the start and end of the measured window."""
    server = machine = math.nan
    clk_tck = os.sysconf("SC_CLK_TCK")
    # The gateway and its worker processes: a comma-separated list of pids.
    pids = [p for p in os.environ.get("LOADTEST_SERVER_PID", "").split(",") if p.isdigit()]
    if pids:
        try:
            ticks = 0
            for pid in pids:
                stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
                ticks += sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
            server = ticks / clk_tck
        except (OSError, ValueError):
            pass
    try:
        with open("/proc/stat", encoding="ascii") as f:
            counters = [int(v) for v in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
        machine = (sum(counters[:8]) - counters[3] - counters[4]) / clk_tck
    except (OSError, ValueError, IndexError):
        pass
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.monotonic(), server, own.ru_utime + own.ru_stime, machine


RUN = _Run()


def _stop_run(environment: Environment, why: str) -> None:
    """Quit the whole run once (from a fresh greenlet, so no user kills itself)."""
    if not RUN.stop_reason and environment.runner is not None:
        RUN.stop_reason = why
        log.warning("stopping the run: %s", why)
        gevent.spawn(environment.runner.quit)


def _on_init(environment: Environment, **_: Any) -> None:
    RUN.environment = environment
    host = environment.host or ""
    if (
        host
        and urlsplit(host).hostname not in _LOOPBACK
        and os.environ.get("LOADTEST_ALLOW_REMOTE") != "1"
    ):
        raise SystemExit(f"refusing to load {host}: loopback only (LOADTEST_ALLOW_REMOTE=1)")
    path = os.environ.get("LOADTEST_TOKENS")
    user_classes = environment.user_classes or []
    if not any(issubclass(cls, _TokenUser) for cls in user_classes):
        return  # nothing to sign for a healthz-only run
    started = time.perf_counter()
    if path:
        RUN.tokens.extend(read_pool(Path(path)))
        how = f"read from {path}"
    else:
        RUN.tokens.extend(
            sign_pool(
                keys_dir=Path(os.environ.get("LOADTEST_KEYS_DIR", "keys")),
                size=_env_int("LOADTEST_POOL_SIZE", 20_000),
                audience=os.environ.get("LOADTEST_AUDIENCE", "yiwang-gateway"),
            )
        )
        how = "signed before the run"
    log.info(
        "token pool: %d tokens %s in %.1f s", len(RUN.tokens), how, time.perf_counter() - started
    )


def _on_request(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    # Exact latencies (locust's histogram rounds to whole milliseconds below 100 ms).
    RUN.latencies.setdefault(name, array("d")).append(response_time)
    if exception is not None:
        RUN.failures[name] = RUN.failures.get(name, 0) + 1
    end = time.time()
    window = RUN.window.setdefault(name, [end - response_time / 1000.0, end])
    window[1] = end


def _on_spawning_complete(**_: Any) -> None:
    if RUN.environment is None or RUN.environment.reset_stats:
        RUN.reset()  # measure the same window as locust's --reset-stats


def _on_test_stop(**_: Any) -> None:
    if len(RUN.cpu_marks) == 1:
        RUN.cpu_marks.append(_cpu_mark())


def _on_cpu_warning(**_: Any) -> None:
    RUN.cpu_warnings += 1  # locust's own process above 90% CPU: it may be the bottleneck


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def _on_quitting(environment: Environment, **_: Any) -> None:
    path = os.environ.get("LOADTEST_RESULTS")
    if not path:
        return
    summary: dict[str, Any] = {
        "requests_started": RUN.started,  # ramp-up included (not reset)
        "tokens_left": len(RUN.tokens),
        "stopped_early": RUN.stop_reason,
        "cpu_warnings": RUN.cpu_warnings,
        "names": {},
    }
    _on_test_stop()
    if len(RUN.cpu_marks) == 2:
        (t0, server0, own0, machine0), (t1, server1, own1, machine1) = RUN.cpu_marks
        summary["cpu"] = {
            "seconds": t1 - t0,
            "server_s": server1 - server0,
            "loadgen_s": own1 - own0,
            "machine_s": machine1 - machine0,
        }
    for name, values in RUN.latencies.items():
        ordered = sorted(values)
        first, last = RUN.window[name]
        summary["names"][name] = {
            "count": len(ordered),
            "failures": RUN.failures.get(name, 0),
            "seconds": last - first,
            "mean_ms": sum(ordered) / len(ordered),
            "p50_ms": _percentile(ordered, 0.50),
            "p95_ms": _percentile(ordered, 0.95),
            "p99_ms": _percentile(ordered, 0.99),
            "max_ms": ordered[-1],
        }
        scheduled = sorted(RUN.from_schedule.get(name, ()))
        if scheduled:
            summary["names"][name]["from_schedule"] = {
                "count": len(scheduled),
                "p50_ms": _percentile(scheduled, 0.50),
                "p99_ms": _percentile(scheduled, 0.99),
                "max_ms": scheduled[-1],
            }
    Path(path).write_text(json.dumps(summary, indent=2), encoding="utf-8")


def _listen(hook: Any, listener: Callable[..., None]) -> None:
    hook.add_listener(listener)  # EventHook.add_listener is untyped


_listen(events.init, _on_init)
_listen(events.request, _on_request)
_listen(events.spawning_complete, _on_spawning_complete)
_listen(events.quitting, _on_quitting)
_listen(events.cpu_warning, _on_cpu_warning)
_listen(events.test_stop, _on_test_stop)


class _GatewayUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: each user sends its next request at once
    connection_timeout = 10.0
    network_timeout = 10.0


class _TokenUser(_GatewayUser):
    """Sends each pre-signed token once to ``path``; stops the run when the pool is used up."""

    abstract = True
    path = ""

    def send_next(self) -> None:
        if not RUN.tokens or not RUN.take():
            why = "request bound reached" if RUN.tokens else "token pool used up"
            _stop_run(self.environment, why)
            raise StopUser
        department, token = RUN.tokens.popleft()
        with self.client.post(
            self.path,
            data=token,
            name=self.path,
            catch_response=True,
            headers={"Content-Type": "application/jwt"},
        ) as response:
            if response.status_code == 200 and (response.text or "").count(".") == 2:
                response.success()
                return
            reason = ""
            try:
                problem = json.loads(response.text or "")
                if isinstance(problem, dict):
                    reason = str(problem.get("reason") or problem.get("title") or "")
            except ValueError:
                reason = (response.text or "")[:60]
            status = response.status_code or type(response.error).__name__
            response.failure(f"{status} {department} {reason}".strip())


class LookupUser(_TokenUser):
    """Signed lookups (``POST /v1/lookups``), each token once."""

    path = LOOKUP_NAME

    @task
    def lookup(self) -> None:
        self.send_next()


SCHEDULE = FixedRateSchedule(rate=float(os.environ.get("LOADTEST_RATE", "1") or 1))


class PacedLookupUser(_TokenUser):
    """Signed lookups at a fixed rate (``LOADTEST_RATE`` per second in all, on one schedule
    shared by the users, :class:`~loadtests.schedule.FixedRateSchedule`): the latency below
    saturation, where a closed loop at full speed measures queueing instead. (Not a
    :class:`LookupUser`: locust would give it that class's unpaced task beside its own.)"""

    path = LOOKUP_NAME

    @task
    def lookup(self) -> None:
        now = time.monotonic()
        due = SCHEDULE.take(now=now)
        if due > now:
            gevent.sleep(due - now)
        self.send_next()
        since_due = RUN.from_schedule.setdefault(self.path, array("d"))
        since_due.append((time.monotonic() - due) * 1000.0)


class VerifyUser(_TokenUser):
    """Licence verifications by identifier (``POST /v1/verifications``), each token once."""

    path = VERIFY_NAME

    @task
    def verify(self) -> None:
        self.send_next()


class HealthzUser(_GatewayUser):
    """GET /healthz until the time or the request bound runs out."""

    @task
    def healthz(self) -> None:
        if not RUN.take():
            _stop_run(self.environment, "request bound reached")
            raise StopUser
        with self.client.get("/healthz", name=HEALTHZ_NAME, catch_response=True) as response:
            if response.status_code == 200 and '"ok"' in (response.text or ""):
                response.success()
            else:
                response.failure(f"{response.status_code or type(response.error).__name__}")


# LOADTEST_SCENARIO picks one class (locust skips abstract ones when it scans this module).
_SCENARIO = os.environ.get("LOADTEST_SCENARIO", "").strip().lower()
if _SCENARIO not in ("", "lookup", "healthz", "verify"):
    raise SystemExit(f"LOADTEST_SCENARIO={_SCENARIO!r}: use lookup, verify or healthz")
LookupUser.abstract = _SCENARIO not in ("", "lookup")
VerifyUser.abstract = _SCENARIO not in ("", "verify")
HealthzUser.abstract = _SCENARIO not in ("", "healthz")
