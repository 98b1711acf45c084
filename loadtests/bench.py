"""``python -m loadtests.bench``: what a signed lookup costs, against a bare endpoint.

It starts a private gateway (embedded SQLite, temporary data and keys directories, rate limit
set out of the way, bound to 127.0.0.1 only) and, in the same run and with the same load
generator (locust, ``loadtests/locustfile.py``, FastHttpUser, closed loop, no think time):

1. ``GET /healthz`` — the bare JSON endpoint of the same server: its floor;
2. ``POST /v1/lookups`` — signed lookups by four departments that the demo grants allow: token
   checks, replay cache, rate limit, policy, adapter (through its cache), durable audit entry,
   signed answer;
2b. the same lookups at a fixed rate, 70 % of phase 2's (``--no-paced`` skips it): the latency
   below saturation;
2c. ``POST /v1/lookups`` signed with SM2 (国密, docs/sm2.md) by 区税务局 and answered with the
   gateway's SM2 key, reported as a ratio to phase 2 (``--no-sm2`` skips it);
3. ``POST /v1/verifications`` — licence verifications by identifier (the demo district's valid
   licences): token checks, replay and rate limit, the licence record, seal and signature
   checks of the sealed licence, durable audit entry, signed receipt (``--no-verifications``
   skips it);
4. interleaved rounds (``--rounds``, default 5; ``--round-seconds``, default 5): the bare
   endpoint, lookups and verifications again, a few seconds each, in an order turned each
   round. This VM's speed drifts over a run by more than the differences sought, and phases of
   20 s one after the other put the drift on one of them; within a round the three kinds meet
   the same machine, so the verification / lookup ratio is given per round and as their
   median, and the floor ratios against the rounds' pooled CPU per request.

It prints requests/s, p50/p95/p99 latency and failures for each phase, the ratios
(docs/architecture.md, "Speed": figures are reported as ratios against the bare endpoint), the
gateway's CPU time per request, and the machine and settings used. Any failed request is
listed with its status and reason, and makes the exit status 1.

Why the lookup tokens are pre-signed: on a two-core machine the load generator and the
gateway share the CPUs; signing in the load generator during the run would steal CPU from the
server. So each pool is signed before its timed phase starts (``loadtests.tokens``), each
token with a fresh ``jti`` and a lifetime of 300 s. A short lookup warm-up (not compared)
comes first; the timed pool is sized from its req/s (and never beyond the bare phase's).

Honesty notes printed with the figures: latency percentiles are exact (locust's own are
rounded to whole milliseconds); CPU use of the gateway, locust and the rest of the machine is
measured over each window, and a phase limited by locust rather than by the gateway is
flagged — its req/s is then only a floor, while gateway CPU per request is not affected.

Every phase is bounded in time (``--duration``, default 20 s; ``--quick`` = 5 s) and in
requests (``--max-requests``); the gateway is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from gateway.demo.population import companies, people
from gateway.sdk import GatewayClient, GatewayProblem, http_client
from loadtests.launcher import GatewayLauncher, LaunchError, problem_lines
from loadtests.server_view import ServerView, read_metrics, server_view
from loadtests.tokens import (
    MAX_LIFETIME,
    SCENARIOS,
    SM2_SCENARIOS,
    VERIFIERS,
    sign_pool,
    sign_verification_pool,
    write_pool,
)

__all__ = ["main"]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOOKUP_NAME = "/v1/lookups"  # request names, as in locustfile.py
VERIFY_NAME = "/v1/verifications"
HEALTHZ_NAME = "/healthz"
MAX_DURATION = 240  # tokens live 300 s: the lookup phase must end well inside that
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one locust run measured."""

    label: str
    user_class: str
    name: str  # locust's request name
    method: str
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    locust_percentiles: tuple[str, str, str] = ("", "", "")
    failure_rows: list[tuple[str, int]] = field(default_factory=list)
    exceptions: int = 0
    started_total: int = 0
    window_s: float = 0.0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    cpu_window_s: float = 0.0
    machine_cpu_s: float = math.nan  # all processes, steal included
    cpu_requests: int = 0  # the requests the CPU times above were spent on
    loadgen_cpu_warnings: int = 0
    stopped_early: str = ""
    exit_code: int | None = None
    log_path: Path | None = None
    server: ServerView | None = None  # the gateway's own metrics over the phase, when asked
    # A paced phase's p50, p99 and max counted from each request's turn in the schedule
    # (loadtests.schedule): above p50/p99 only if the users fell behind it.
    from_schedule: tuple[float, float, float] | None = None

    @property
    def server_cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / self.cpu_requests if self.cpu_requests else math.nan

    def cpu_percent(self) -> tuple[float, float, float]:
        """(gateway, locust, everything else) CPU use in % of one core over the window."""
        if not self.cpu_window_s:
            return math.nan, math.nan, math.nan
        other = self.machine_cpu_s - self.server_cpu_s - self.loadgen_cpu_s
        return (
            100 * self.server_cpu_s / self.cpu_window_s,
            100 * self.loadgen_cpu_s / self.cpu_window_s,
            100 * max(other, 0.0) / self.cpu_window_s,
        )

    @property
    def loadgen_bound(self) -> bool:
        """Whether locust, not the gateway, looks like the limit of this phase."""
        server, loadgen, _ = self.cpu_percent()
        return loadgen > 85 and server < 85


class BenchError(Exception):
    """The benchmark could not run as intended."""


# ---------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- gateway


class Gateway:
    """The gateway under test, as a subprocess in its own session (stopped by its pid)."""

    def __init__(self, *, workdir: Path, port: int, extra_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = port
        self.base_url = f"http://{HOST}:{port}"
        self.keys_dir = workdir / "keys"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "gateway.log"
        self.settings = {
            "GATEWAY_HOST": HOST,
            "GATEWAY_PORT": str(port),
            "GATEWAY_DATA_DIR": str(self.data_dir),
            "GATEWAY_KEYS_DIR": str(self.keys_dir),
            "GATEWAY_POLICIES_DIR": str(REPO / "policies"),
            "GATEWAY_RATE_LIMIT": "10000000",
            **extra_env,
        }
        self._launcher: GatewayLauncher | None = None

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "gateway"
        exe = str(script) if script.exists() else shutil.which("gateway")
        if exe is None:
            raise BenchError("the `gateway` command is not installed (make install)")
        return [exe, "serve", "--host", HOST, "--port", str(self.port)]

    def start(self, timeout: float) -> None:
        # The gateway sees only the settings chosen here, never the caller's GATEWAY_*.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(self.settings)
        self._launcher = GatewayLauncher(
            command=self.command(),
            env=env,
            cwd=self.workdir,
            log_path=self.log_path,
            base_url=self.base_url,
            ready_path="/readyz",
            new_session=True,
        )
        try:
            self._launcher.start(timeout)
        except LaunchError as exc:
            raise BenchError(str(exc)) from None

    @property
    def pid(self) -> int:
        if self._launcher is None or self._launcher.proc is None:
            raise BenchError("the gateway is not running")
        return self._launcher.proc.pid

    def alive(self) -> bool:
        return self._launcher is not None and self._launcher.alive()

    def pids(self) -> list[int]:
        """The gateway and its live worker processes (``--workers N``): a child's CPU time
        shows in its parent's counters only once it has exited, so each is read itself."""
        try:
            workers = [w.pid for w in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            workers = []
        return [self.pid, *workers]

    def cpu_seconds(self) -> float:
        return sum(_process_cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; return the exit code."""
        if self._launcher is None:
            return None
        return self._launcher.stop(signal.SIGTERM, timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of the gateway's log that look like errors or warnings."""
        return problem_lines(self.log_path)


def preflight(gateway: Gateway, audience: str) -> list[str]:
    """One lookup per scenario through GatewayClient (answer verified with the JWKS)."""
    problems: list[str] = []
    subject_of = {"uscc": companies()[0].uscc, "resident-id": people()[0].id_number}
    for s in SCENARIOS:
        key_path = gateway.keys_dir / "departments" / f"{s.department}.private.jwk.json"
        try:
            with GatewayClient.from_key_file(
                base_url=gateway.base_url,
                department=s.department,
                key_path=key_path,
                audience=audience,
            ) as client:
                answer = client.lookup(
                    resource=s.resource,
                    subject=(s.subject_type, subject_of[s.subject_type]),
                    fields=list(s.fields),
                    item=s.item,
                    case="BJ-2026-PREFLIGHT",
                    reason=s.reason,
                    operator="clerk-bench",
                )
            if set(answer.data) != set(s.fields):
                problems.append(
                    f"{s.department}: released {sorted(answer.data)}, asked {sorted(s.fields)}"
                )
        except GatewayProblem as exc:
            problems.append(f"{s.department} → {s.resource}: {exc}")
        except Exception as exc:  # report whatever broke, then stop
            problems.append(f"{s.department} → {s.resource}: {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------- locust


def _float(value: str | None) -> float:
    try:
        return float(value or "nan")
    except ValueError:
        return math.nan


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run_phase(
    phase: Phase,
    *,
    gateway: Gateway,
    outdir: Path,
    users: int,
    spawn_rate: float,
    duration: int,
    max_requests: int,
    tokens_file: Path | None,
    rate: float | None = None,
    server_view_of: tuple[str, str] | None = None,
) -> Phase:
    """Run locust once, headless, for one user class; fill in ``phase`` (``rate``: the
    requests per second of a paced phase, in all; ``server_view_of``: the route and exchange
    whose view from the gateway's own metrics to take, :mod:`loadtests.server_view`)."""
    prefix = outdir / phase.label
    results = outdir / f"{phase.label}.results.json"
    phase.log_path = outdir / f"{phase.label}.locust.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "LOADTEST_", "LOCUST_"))
    }
    env.update(
        {
            "LOADTEST_MAX_REQUESTS": str(max_requests),
            "LOADTEST_RESULTS": str(results),
            "LOADTEST_SERVER_PID": ",".join(str(p) for p in gateway.pids()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    if tokens_file is not None:
        env["LOADTEST_TOKENS"] = str(tokens_file)
    if rate is not None:
        env["LOADTEST_RATE"] = f"{rate:.3f}"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "-t",
        f"{duration}s",
        "--host",
        gateway.base_url,
        "--csv",
        str(prefix),
        "--reset-stats",
        "--stop-timeout",
        "0",
        "--only-summary",
        "--loglevel",
        "INFO",
        phase.user_class,
    ]
    metrics_before = (
        read_metrics(gateway.base_url, gateway.keys_dir) if server_view_of is not None else None
    )
    server_before = gateway.cpu_seconds()
    children_before = _children_cpu_seconds()
    started = time.monotonic()
    with phase.log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            phase.exit_code = proc.wait(timeout=duration + 120)
        finally:
            if proc.poll() is None:  # timed out or interrupted: stop this locust, by pid
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
    # Whole-phase CPU (locust start-up included): used only if the window figures are missing.
    phase.wall_s = phase.cpu_window_s = time.monotonic() - started
    phase.loadgen_cpu_s = _children_cpu_seconds() - children_before
    phase.server_cpu_s = gateway.cpu_seconds() - server_before
    if server_view_of is not None and metrics_before is not None:
        route, exchange = server_view_of
        phase.server = server_view(
            metrics_before,
            read_metrics(gateway.base_url, gateway.keys_dir),
            route=route,
            exchange=exchange,
        )

    _collect(phase, prefix, results)
    return phase


def _collect(phase: Phase, prefix: Path, results: Path) -> None:
    """Read locust's CSV files and the locustfile's exact-latency summary into ``phase``."""
    rows = {
        row.get("Name", ""): row for row in _read_csv(prefix.with_name(prefix.name + "_stats.csv"))
    }
    row = rows.get(phase.name)
    if row is None:
        raise BenchError(
            f"locust reported nothing for {phase.name} "
            f"(exit {phase.exit_code}); see {phase.log_path}:\n" + _tail(phase.log_path)
        )
    phase.requests = int(row["Request Count"])
    phase.failures = int(row["Failure Count"])
    phase.rps = _float(row["Requests/s"])
    phase.locust_percentiles = (row.get("50%", ""), row.get("95%", ""), row.get("99%", ""))
    for failure in _read_csv(prefix.with_name(prefix.name + "_failures.csv")):
        phase.failure_rows.append(
            (failure.get("Error", "?"), int(failure.get("Occurrences", "0") or 0))
        )
    phase.exceptions = sum(
        int(r.get("Occurrences", "0") or 0)
        for r in _read_csv(prefix.with_name(prefix.name + "_exceptions.csv"))
    )

    if results.exists():
        summary: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
        exact = summary.get("names", {}).get(phase.name, {})
        phase.p50 = float(exact.get("p50_ms", math.nan))
        phase.p95 = float(exact.get("p95_ms", math.nan))
        phase.p99 = float(exact.get("p99_ms", math.nan))
        scheduled = exact.get("from_schedule")
        if scheduled:
            phase.from_schedule = (
                float(scheduled["p50_ms"]),
                float(scheduled["p99_ms"]),
                float(scheduled["max_ms"]),
            )
        phase.window_s = float(exact.get("seconds", 0.0))
        phase.started_total = int(summary.get("requests_started", 0))
        phase.loadgen_cpu_warnings = int(summary.get("cpu_warnings", 0))
        phase.stopped_early = str(summary.get("stopped_early") or "")
        phase.cpu_requests = phase.started_total
        cpu = summary.get("cpu")
        if cpu and not math.isnan(float(cpu["server_s"])):
            phase.cpu_window_s = float(cpu["seconds"])
            phase.server_cpu_s = float(cpu["server_s"])
            phase.loadgen_cpu_s = float(cpu["loadgen_s"])
            phase.machine_cpu_s = float(cpu.get("machine_s", math.nan))
            phase.cpu_requests = phase.requests
    else:  # fall back to locust's whole-millisecond percentiles
        phase.p50, phase.p95, phase.p99 = (_float(v) for v in phase.locust_percentiles)
        phase.started_total = phase.cpu_requests = phase.requests


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no log)"
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b and not math.isnan(a) and not math.isnan(b) else "n/a"


def print_report(
    bare: Phase,
    lookups: Phase,
    *,
    warmup: Phase | None,
    settings: list[tuple[str, str]],
    verifications: Phase | None = None,
    sm2: Phase | None = None,
    paced: Phase | None = None,
) -> None:
    print()
    print("Settings")
    for key, value in settings:
        print(f"  {key:<20} {value}")
    print()
    header = (
        f"{'phase':<26}{'requests':>10}{'failures':>10}{'req/s':>10}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'p99 ms':>9}{'server CPU/req':>16}"
    )
    print(header)
    print("-" * len(header))
    measured = [p for p in (bare, lookups, paced, sm2, verifications) if p is not None]
    for p in measured:
        title = f"{p.method} {p.name}" + (" SM2" if p is sm2 else " 70%" if p is paced else "")
        print(
            f"{title:<26}{p.requests:>10}{p.failures:>10}{p.rps:>10.1f}{p.p50:>9.2f}"
            f"{p.p95:>9.2f}{p.p99:>9.2f}{p.server_cpu_us_per_request:>13.0f} µs"
        )
    print()
    print("Ratios (lookup / bare endpoint: same server, same load generator, same run)")
    print(f"  throughput (req/s)       {_ratio(lookups.rps, bare.rps)}")
    print(f"  latency p50              {_ratio(lookups.p50, bare.p50)}")
    print(f"  latency p99              {_ratio(lookups.p99, bare.p99)}")
    print(
        f"  gateway CPU per request  "
        f"{_ratio(lookups.server_cpu_us_per_request, bare.server_cpu_us_per_request)}"
    )
    if paced is not None:
        print(
            f"Lookups at a fixed {paced.rps:.0f}/s (70 % of the closed loop's): p50 "
            f"{paced.p50:.2f} ms, p95 {paced.p95:.2f} ms, p99 {paced.p99:.2f} ms"
            "   (goal: p99 ≤ 10 ms)"
        )
        if paced.from_schedule is not None:
            p50, p99, worst = paced.from_schedule
            print(
                f"  counted from each request's turn in the schedule: p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms, max {worst:.2f} ms (later than the above only where "
                "every user was still waiting when a turn came)"
            )
        if paced.server is not None:
            for line in paced.server.lines():
                print(f"  {line}")
    if sm2 is not None:
        print("Ratios (SM2 lookups / ES256-EdDSA lookups: 国密 request and answer, same run)")
        print(f"  throughput (req/s)       {_ratio(sm2.rps, lookups.rps)}")
        print(f"  latency p50              {_ratio(sm2.p50, lookups.p50)}")
        print(f"  latency p99              {_ratio(sm2.p99, lookups.p99)}")
        print(
            f"  gateway CPU per request  "
            f"{_ratio(sm2.server_cpu_us_per_request, lookups.server_cpu_us_per_request)}"
        )
    if verifications is not None:
        print("Ratios (verification by identifier / bare endpoint, same run)")
        print(f"  throughput (req/s)       {_ratio(verifications.rps, bare.rps)}")
        print(f"  latency p50              {_ratio(verifications.p50, bare.p50)}")
        print(
            f"  gateway CPU per request  "
            f"{_ratio(verifications.server_cpu_us_per_request, bare.server_cpu_us_per_request)}"
        )
    print()
    print("Details")
    for p in (ph for ph in (warmup, *measured) if ph is not None):
        server, loadgen, other = p.cpu_percent()
        what = "warm-up, not compared" if p is warmup else f"measured window {p.window_s:.1f} s"
        print(
            f"  {p.label} ({what}): {p.requests} requests, {p.failures} failed, "
            f"{p.rps:.1f} req/s; CPU in % of one core: gateway {server:.0f}, "
            f"locust {loadgen:.0f}, other {other:.0f}"
            + (
                f"; locust warned of its CPU > 90% {p.loadgen_cpu_warnings}x"
                if p.loadgen_cpu_warnings
                else ""
            )
        )
        if p is not warmup:
            lp = p.locust_percentiles
            print(f"    locust's own p50/p95/p99 (rounded to whole ms): {lp[0]}/{lp[1]}/{lp[2]}")
        if p.loadgen_bound:
            print(
                "    NOTE: locust, not the gateway, was the limit here (the gateway had CPU "
                "to spare): this req/s is a floor of what the server can do, so the "
                "throughput ratio flatters lookups; the CPU-per-request ratio does not "
                "depend on the load generator."
            )
        if p.stopped_early:
            print(f"    stopped before the time limit: {p.stopped_early}")
        if p.exceptions:
            print(f"    ERRORS in the load generator: {p.exceptions} (see {p.log_path})")
        for error, count in p.failure_rows:
            print(f"    FAILED x{count}: {error}")
    print()


# ---------------------------------------------------------------------------- floor
# What a lookup cannot avoid (loadtests/floor.py), measured in the same run with the same keys,
# policies and stores, set against the CPU per request the phases measured.


def measure_floor(args: argparse.Namespace, gateway: Gateway, audience: str) -> dict[str, Any]:
    """The primitives' CPU µs per call, from ``python -m loadtests.floor`` (its own process,
    like the gateway's), run while the gateway is idle."""
    batch = gateway.settings.get("GATEWAY_AUDIT_BATCH_MAX", "512")
    command = [
        sys.executable,
        "-m",
        "loadtests.floor",
        "--keys-dir",
        str(gateway.keys_dir),
        "--data-dir",
        str(gateway.data_dir),
        "--policies-dir",
        gateway.settings["GATEWAY_POLICIES_DIR"],
        "--audience",
        audience,
        "--concurrency",
        str(args.users),
        "--batch",
        batch,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"the floor measurement failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def print_floor(
    primitives: dict[str, Any],
    bare: Phase,
    lookups: Phase,
    verifications: Phase | None,
    sm2: Phase | None = None,
) -> None:
    """The floor of each exchange next to its measured CPU per request: ``floor ratio``."""
    from loadtests.floor import lookup_floor, verification_floor

    bare_us = bare.server_cpu_us_per_request
    algs = ", ".join(sorted(set(primitives.get("algorithms", {}).values()))) or "?"
    print("Floor: what a request cannot avoid, measured in this run (CPU µs per call)")
    rows = [
        ("bare endpoint, CPU/request (phase 1)", bare_us),
        (f"verify the request's signature ({algs}, raw)", primitives["verify"]),
        ("one guard call (replay, rate, case, cache probe)", primitives["guard"]),
        ("one source read (the mix's adapters)", primitives["source"]),
        ("durable audit write (group commit, amortised)", primitives["audit"]),
        ("sign the answer (ES256, raw)", primitives["sign"]),
    ]
    if verifications is not None:
        rows += [
            ("verification: licence record read", primitives["licence_read"]),
            ("verification: seal signature check (raw, mix average)", primitives["seal_verify"]),
        ]
    for label, value in rows:
        print(f"  {label:<50}{float(value):>9.1f}")
    lookup_us = lookups.server_cpu_us_per_request
    floor = lookup_floor(primitives, bare_us)
    print(
        f"  lookup floor {floor:.0f} µs; measured {lookup_us:.0f} µs/lookup"
        f"  →  floor ratio (lookups)       {_ratio(floor, lookup_us)}   (goal ≥ 0.5)"
    )
    if verifications is not None:
        verify_us = verifications.server_cpu_us_per_request
        vfloor = verification_floor(primitives, bare_us)
        print(
            f"  verification floor {vfloor:.0f} µs; measured {verify_us:.0f} µs/verification"
            f"  →  floor ratio (verifications) {_ratio(vfloor, verify_us)}"
        )
        print(
            f"  verification / lookup CPU per request            {_ratio(verify_us, lookup_us)}"
            "   (goal ≤ 1.3)"
        )
    if sm2 is not None and "sm2_verify" in primitives:
        sm2_us = sm2.server_cpu_us_per_request
        # The same floor with SM2's verification and signature in place of ES256's.
        sfloor = (
            floor
            - float(primitives["verify"])
            - float(primitives["sign"])
            + float(primitives["sm2_verify"])
            + float(primitives["sm2_sign"])
        )
        print(
            f"  SM2: verify {float(primitives['sm2_verify']):.0f} µs, sign "
            f"{float(primitives['sm2_sign']):.0f} µs (raw, libcrypto); SM2 lookup floor "
            f"{sfloor:.0f} µs; measured {sm2_us:.0f} µs  →  floor ratio (SM2 lookups) "
            f"{_ratio(sfloor, sm2_us)}"
        )
    fsync = primitives.get("fsync_ms")
    if isinstance(fsync, dict):
        print(
            f"  the data directory's disk: fsync of a 4 KiB append p50 {fsync['p50']:.2f} ms,"
            f" p99 {fsync['p99']:.2f} ms, max {fsync['max']:.2f} ms (wall; every durable"
            " answer waits for one, so the paced p99 is not below it)"
        )
    print()


# ---------------------------------------------------------------------------- main


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description="Throughput and latency of signed lookups against the bare /healthz "
        "endpoint of the same gateway, measured in the same run.",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=20,
        metavar="S",
        help=f"seconds per phase (1..{MAX_DURATION}; default 20)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s per phase")
    parser.add_argument(
        "--users", type=int, default=16, help="concurrent locust users, closed loop (default 16)"
    )
    parser.add_argument(
        "--spawn-rate",
        type=float,
        default=None,
        help="users started per second (default: all within one second)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=300_000,
        metavar="N",
        help="request bound per phase (default 300000)",
    )
    parser.add_argument(
        "--lookup-pool",
        type=int,
        default=None,
        metavar="N",
        help="tokens to pre-sign (default: from the bare phase's req/s)",
    )
    parser.add_argument(
        "--no-verifications",
        dest="verifications",
        action="store_false",
        help="skip phase 3 (licence verifications by identifier)",
    )
    parser.add_argument(
        "--no-paced",
        dest="paced",
        action="store_false",
        help="skip phase 2b (lookups at a fixed 70 %% of the closed loop's rate)",
    )
    parser.add_argument(
        "--no-sm2",
        dest="sm2",
        action="store_false",
        help="skip phase 2c (lookups signed and answered with SM2)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip measuring the primitives a request cannot avoid (the floor ratio)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        metavar="N",
        help="phase 4: N interleaved rounds of bare, lookups and verifications (default 5; 0 "
        "skips it)",
    )
    parser.add_argument(
        "--round-seconds",
        type=int,
        default=5,
        metavar="S",
        help="seconds of each kind in each round (default 5)",
    )
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--startup-timeout", type=float, default=90.0, metavar="S")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="GATEWAY_X=V",
        help="extra gateway setting (repeatable), e.g. GATEWAY_AUDIT_BATCH_MAX=256",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (logs, CSVs, data) at the end",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 5
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be 1..{MAX_DURATION} (tokens live {MAX_LIFETIME} s)")
    if not 1 <= args.users <= 1000:
        parser.error("--users must be 1..1000")
    if args.max_requests < 1:
        parser.error("--max-requests must be positive")
    if not 0 <= args.rounds <= 20 or not 2 <= args.round_seconds <= 60:
        parser.error("--rounds must be 0..20 and --round-seconds 2..60")
    for item in args.gateway_env:
        if not item.startswith("GATEWAY_") or "=" not in item:
            parser.error(f"--gateway-env wants GATEWAY_NAME=VALUE, not {item!r}")
    return args


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sign(
    path: Path, keys_dir: Path, size: int, *, lifetime: int, audience: str
) -> tuple[Path, float]:
    """Sign ``size`` tokens into ``path`` (before a timed phase); return it and the seconds."""
    started = time.monotonic()
    write_pool(path, sign_pool(keys_dir=keys_dir, size=size, lifetime=lifetime, audience=audience))
    return path, time.monotonic() - started


def _sign_verifications(
    path: Path,
    keys_dir: Path,
    size: int,
    *,
    licence_ids: list[str],
    lifetime: int,
    audience: str,
) -> Path:
    """Sign ``size`` verification tokens over ``licence_ids`` into ``path``; return it."""
    write_pool(
        path,
        sign_verification_pool(
            keys_dir=keys_dir,
            size=size,
            licence_ids=licence_ids,
            audience=audience,
            lifetime=lifetime,
        ),
    )
    return path


def _print_machine() -> None:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    print(
        f"  machine   {usable} CPUs usable (nproc), {_cpu_model()}, "
        f"{platform.system()} {platform.release()}"
    )
    print(
        f"  software  Python {platform.python_version()}, locust {_version('locust')}, "
        f"yiwang-gateway {_version('yiwang-gateway')}"
    )


def _check_gateway_after(gateway: Gateway) -> int:
    """1 (and say why) if the gateway died or is no longer ready, else 0."""
    if not gateway.alive():
        print(f"\nTHE GATEWAY DIED during the run:\n{gateway.log_tail()}")
        return 1
    with http_client(gateway.base_url, timeout=5.0) as http:
        ready = http.get("/readyz")
    if ready.status_code != 200:
        print(f"\nAfter the run /readyz answers {ready.status_code}: {ready.text}")
        return 1
    return 0


def _valid_licence_ids(gateway: Gateway) -> list[str]:
    """Identifiers of the demo district's current, valid licences (read from the database)."""
    path = gateway.data_dir / "gateway.sqlite3"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT licence_id FROM licences WHERE status = 'valid' AND superseded_by IS NULL"
            " ORDER BY licence_id"
        ).fetchall()
    return [r[0] for r in rows]


def _verification_phase(
    args: argparse.Namespace,
    gateway: Gateway,
    outdir: Path,
    common: dict[str, Any],
    *,
    audience: str,
    lifetime: int,
    pool: int,
) -> Phase | None:
    """Phase 3: verifications by identifier, tokens pre-signed like the lookups'."""
    if not args.verifications:
        return None
    licence_ids = _valid_licence_ids(gateway)
    if not licence_ids:
        print("  phase 3   skipped: the gateway holds no valid licence")
        return None
    started = time.monotonic()
    tokens_file = _sign_verifications(
        outdir / "verification-tokens.txt",
        gateway.keys_dir,
        pool,
        licence_ids=licence_ids,
        lifetime=lifetime,
        audience=audience,
    )
    print(
        f"  signing   {pool} verification tokens ({len(licence_ids)} licences): "
        f"{time.monotonic() - started:.1f} s"
    )
    print(f"  phase 3   POST /v1/verifications, {args.duration} s ...", flush=True)
    return run_phase(
        Phase("verifications", "VerifyUser", VERIFY_NAME, "POST"),
        **{**common, "max_requests": min(args.max_requests, pool), "tokens_file": tokens_file},
    )


@dataclass
class Round:
    """One round of phase 4: each kind for a few seconds, back to back."""

    bare: Phase
    lookups: Phase
    verifications: Phase

    @property
    def cpu(self) -> tuple[float, float, float]:
        """Gateway CPU µs per request of (bare, lookup, verification) in this round."""
        return (
            self.bare.server_cpu_us_per_request,
            self.lookups.server_cpu_us_per_request,
            self.verifications.server_cpu_us_per_request,
        )


def _interleaved_rounds(
    args: argparse.Namespace,
    gateway: Gateway,
    outdir: Path,
    common: dict[str, Any],
    *,
    audience: str,
    lifetime: int,
    rates: tuple[float, float],
) -> list[Round]:
    """Phase 4: ``--rounds`` rounds of bare, lookups and verifications, ``--round-seconds``
    each, in an order that turns each round (the VM's speed drifts over a run by more than the
    differences sought: three 20 s phases one after the other put the drift on one of them)."""
    licence_ids = _valid_licence_ids(gateway)
    if not args.rounds or not args.verifications or not licence_ids:
        return []
    seconds = args.round_seconds
    print(
        f"  phase 4   {args.rounds} interleaved rounds of bare, lookups and verifications, "
        f"{seconds} s each ...",
        flush=True,
    )
    rounds: list[Round] = []
    for n in range(args.rounds):
        sizes = [math.ceil(rate * seconds * 1.5) + 4 * args.users for rate in rates]
        lookup_tokens, _ = _sign(
            outdir / f"round{n}-lookup-tokens.txt",
            gateway.keys_dir,
            sizes[0],
            lifetime=lifetime,
            audience=audience,
        )
        verification_tokens = _sign_verifications(
            outdir / f"round{n}-verification-tokens.txt",
            gateway.keys_dir,
            sizes[1],
            licence_ids=licence_ids,
            lifetime=lifetime,
            audience=audience,
        )
        kinds = {
            "bare": (Phase(f"round{n}-bare", "HealthzUser", HEALTHZ_NAME, "GET"), None, 0),
            "lookups": (
                Phase(f"round{n}-lookups", "LookupUser", LOOKUP_NAME, "POST"),
                lookup_tokens,
                sizes[0],
            ),
            "verifications": (
                Phase(f"round{n}-verifications", "VerifyUser", VERIFY_NAME, "POST"),
                verification_tokens,
                sizes[1],
            ),
        }
        order = list(kinds)
        order = order[n % 3 :] + order[: n % 3]
        done: dict[str, Phase] = {}
        for kind in order:
            phase, tokens, size = kinds[kind]
            done[kind] = run_phase(
                phase,
                **{
                    **common,
                    "duration": seconds,
                    "max_requests": size or args.max_requests,
                    "tokens_file": tokens,
                },
            )
        rounds.append(Round(done["bare"], done["lookups"], done["verifications"]))
    return rounds


def _pooled_cpu_us(phases: list[Phase]) -> float:
    """Gateway CPU µs per request over several runs of one kind (all CPU / all requests)."""
    requests = sum(p.cpu_requests for p in phases)
    return 1e6 * sum(p.server_cpu_s for p in phases) / requests if requests else math.nan


def print_rounds(rounds: list[Round], primitives: dict[str, Any] | None) -> None:
    """Phase 4's figures: each round's CPU per request and ratios, their medians, and the
    floor ratios against the rounds' pooled figures."""
    if not rounds:
        return
    from loadtests.floor import lookup_floor, verification_floor

    print(
        "Interleaved rounds (phase 4: each kind in turn, the order turned each round; ratios "
        "within a round)"
    )
    print(f"  {'round':<7}{'bare µs':>9}{'lookup µs':>11}{'verif. µs':>11}{'verif./lookup':>15}")
    ratios = []
    for n, r in enumerate(rounds, 1):
        bare_us, lookup_us, verify_us = r.cpu
        ratios.append(verify_us / lookup_us)
        print(f"  {n:<7}{bare_us:>9.0f}{lookup_us:>11.0f}{verify_us:>11.0f}{ratios[-1]:>15.3f}")
    bare_us = _pooled_cpu_us([r.bare for r in rounds])
    lookup_us = _pooled_cpu_us([r.lookups for r in rounds])
    verify_us = _pooled_cpu_us([r.verifications for r in rounds])
    print(
        f"  pooled  {bare_us:>8.0f}{lookup_us:>11.0f}{verify_us:>11.0f}"
        f"{verify_us / lookup_us:>15.3f}"
    )
    print(
        f"  verification / lookup CPU per request, median of rounds  "
        f"{statistics.median(ratios):.3f}   (goal ≤ 1.3)"
    )
    if primitives is not None:
        floor = lookup_floor(primitives, bare_us)
        vfloor = verification_floor(primitives, bare_us)
        print(
            f"  floor ratio against the pooled rounds: lookups {_ratio(floor, lookup_us)} "
            f"(floor {floor:.0f} µs, goal ≥ 0.5), verifications {_ratio(vfloor, verify_us)} "
            f"(floor {vfloor:.0f} µs)"
        )
    print()


def _sm2_phase(
    args: argparse.Namespace,
    common: dict[str, Any],
    *,
    outdir: Path,
    keys_dir: Path,
    audience: str,
    lifetime: int,
    pool: int,
) -> Phase | None:
    """Phase 2c (国密): lookups signed by 区税务局 with SM2, answered with the gateway's SM2
    key; tokens pre-signed like the others'."""
    if not args.sm2:
        return None
    started = time.monotonic()
    tokens_file = outdir / "sm2-tokens.txt"
    write_pool(
        tokens_file,
        sign_pool(
            keys_dir=keys_dir,
            size=pool,
            lifetime=lifetime,
            audience=audience,
            scenarios=SM2_SCENARIOS,
        ),
    )
    print(
        f"  signing   {pool} SM2 lookup tokens: {time.monotonic() - started:.1f} s",
        flush=True,
    )
    print(f"  phase 2c  POST /v1/lookups signed and answered with SM2, {args.duration} s ...")
    return run_phase(
        Phase("sm2", "LookupUser", LOOKUP_NAME, "POST"),
        **{**common, "max_requests": min(args.max_requests, pool), "tokens_file": tokens_file},
    )


def _run(
    args: argparse.Namespace,
    gateway: Gateway,
    outdir: Path,
    *,
    audience: str,
    lifetime: int,
    spawn_rate: float,
) -> int:
    """Start the gateway, run both phases, print the report; return the exit status."""
    print(f"  starting  the gateway on {gateway.base_url} ...", flush=True)
    gateway.start(args.startup_timeout)
    problems = preflight(gateway, audience)
    if problems:
        raise BenchError(
            "the allowed lookups are refused before the run:\n  " + "\n  ".join(problems)
        )
    print(f"  preflight {len(SCENARIOS)} signed lookups answered and verified")

    common: dict[str, Any] = {
        "gateway": gateway,
        "outdir": outdir,
        "users": args.users,
        "spawn_rate": spawn_rate,
        "duration": args.duration,
        "max_requests": args.max_requests,
    }
    print(f"  phase 1   GET /healthz, {args.duration} s ...", flush=True)
    bare = run_phase(Phase("bare", "HealthzUser", HEALTHZ_NAME, "GET"), **common, tokens_file=None)

    # A short lookup warm-up (caches, database pages, connections) that also tells how many
    # tokens the timed phase can use; lookups cannot outrun the bare endpoint either.
    warm_s = max(2, min(5, args.duration // 4))
    warm_pool = min(args.max_requests, math.ceil(bare.rps * warm_s * 1.25) + 4 * args.users)
    print(
        f"  warm-up   POST /v1/lookups, {warm_s} s ({warm_pool} tokens signed first) ...",
        flush=True,
    )
    warmup = run_phase(
        Phase("warmup", "LookupUser", LOOKUP_NAME, "POST"),
        **{
            **common,
            "duration": warm_s,
            "max_requests": warm_pool,
            "tokens_file": _sign(
                outdir / "warmup-tokens.txt",
                gateway.keys_dir,
                warm_pool,
                lifetime=lifetime,
                audience=audience,
            )[0],
        },
    )
    pool_size = args.lookup_pool or min(
        args.max_requests,
        math.ceil(bare.rps * args.duration * 1.25) + 4 * args.users,
        math.ceil(max(warmup.rps, 1.0) * args.duration * 2) + 4 * args.users,
    )
    tokens_file, sign_s = _sign(
        outdir / "tokens.txt", gateway.keys_dir, pool_size, lifetime=lifetime, audience=audience
    )
    print(
        f"  signing   {pool_size} lookup tokens before the timed phase: {sign_s:.1f} s "
        f"({1e6 * sign_s / max(pool_size, 1):.0f} µs each)"
    )
    if sign_s + args.duration + 20 > lifetime:
        raise BenchError(
            "signing took so long that the tokens would expire during the run; "
            "use a smaller --lookup-pool or --duration"
        )
    print(f"  phase 2   POST /v1/lookups, {args.duration} s ...", flush=True)
    lookups = run_phase(
        Phase("lookups", "LookupUser", LOOKUP_NAME, "POST"),
        **{
            **common,
            "max_requests": min(args.max_requests, pool_size),
            "tokens_file": tokens_file,
        },
    )
    paced = None
    if args.paced:
        # 70 % of the closed loop's rate, a fixed rate: the latency the gateway gives below
        # saturation (the goal: p99 ≤ 10 ms there).
        rate = 0.7 * lookups.rps
        paced_pool = min(args.max_requests, math.ceil(rate * args.duration * 1.2) + 4 * args.users)
        paced_file, _ = _sign(
            outdir / "paced-tokens.txt",
            gateway.keys_dir,
            paced_pool,
            lifetime=lifetime,
            audience=audience,
        )
        print(f"  phase 2b  POST /v1/lookups at {rate:.0f}/s (70 % of phase 2) ...", flush=True)
        paced = run_phase(
            Phase("paced", "PacedLookupUser", LOOKUP_NAME, "POST"),
            **{**common, "max_requests": paced_pool, "tokens_file": paced_file},
            rate=rate,
            server_view_of=("/v1/lookups", "lookup"),
        )
    # SM2 costs several times ES256 per signature: half the ES256 pool outlasts the phase.
    sm2 = _sm2_phase(
        args,
        common,
        outdir=outdir,
        keys_dir=gateway.keys_dir,
        audience=audience,
        lifetime=lifetime,
        pool=max(1, pool_size // 2),
    )
    verifications = _verification_phase(
        args, gateway, outdir, common, audience=audience, lifetime=lifetime, pool=pool_size
    )
    rounds = _interleaved_rounds(
        args,
        gateway,
        outdir,
        common,
        audience=audience,
        lifetime=lifetime,
        rates=(lookups.rps, verifications.rps if verifications is not None else 0.0),
    )
    status = _check_gateway_after(gateway)

    print_report(
        bare,
        lookups,
        warmup=warmup,
        verifications=verifications,
        sm2=sm2,
        paced=paced,
        settings=[
            (
                "phase duration",
                f"{args.duration} s each: bare first, then a lookup warm-up of "
                f"{warm_s} s, then lookups",
            ),
            (
                "locust users",
                f"{args.users} (closed loop, no wait), spawn rate {spawn_rate:g}/s, "
                "stats reset once all are running",
            ),
            (
                "request bound",
                f"{args.max_requests} per phase; lookup token pool {pool_size}, "
                f"lifetime {lifetime} s",
            ),
            ("lookup mix", ", ".join(f"{s.department}→{s.resource}" for s in SCENARIOS)),
            (
                "SM2 lookups",
                ", ".join(f"{s.department}→{s.resource}" for s in SM2_SCENARIOS)
                + " (SM2 request key, SM2 answer)"
                if sm2 is not None
                else "skipped (--no-sm2)",
            ),
            (
                "verifications",
                f"by licence identifier, clerks of {', '.join(VERIFIERS)}, over the demo "
                "district's valid licences (seal, signature, record, status, validity checks)"
                if verifications is not None
                else "skipped (--no-verifications, or no demo licences)",
            ),
            (
                "gateway",
                f"`gateway serve`, 1 worker, embedded SQLite + in-process caches "
                f"(unless overridden), {HOST}:{gateway.port}",
            ),
            *[
                (k, v)
                for k, v in gateway.settings.items()
                if k not in ("GATEWAY_HOST", "GATEWAY_PORT")
            ],
            ("latency", "exact, every request of the measured window (locust's CSV: whole ms)"),
            ("server CPU/req", "gateway process CPU time in the measured window / its requests"),
            (
                "CPU %",
                "of one core, over the measured window; other = the machine's busy time "
                "minus both (kernel network work, other processes)",
            ),
        ],
    )
    primitives = None
    if args.floor:
        print("  floor     measuring the primitives in their own process ...", flush=True)
        primitives = measure_floor(args, gateway, audience)
        print_floor(primitives, bare, lookups, verifications, sm2)
    print_rounds(rounds, primitives)
    in_rounds = [p for r in rounds for p in (r.bare, r.lookups, r.verifications)]
    if any(
        p.failures or p.exceptions
        for p in (warmup, bare, lookups, paced, sm2, verifications, *in_rounds)
        if p is not None
    ):
        status = 1
        print("SOME REQUESTS FAILED (listed above).")
    log_problems = gateway.log_problems()
    if log_problems:
        print(f"The gateway logged {len(log_problems)} warning/error line(s); first ones:")
        for line in log_problems[:10]:
            print(f"  {line}")
    else:
        print("The gateway logged no warnings or errors.")
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    extra_env = dict(item.split("=", 1) for item in args.gateway_env)
    lifetime = min(MAX_LIFETIME, int(extra_env.get("GATEWAY_TOKEN_MAX_LIFETIME", MAX_LIFETIME)))
    if args.duration + 30 > lifetime:
        print(
            f"--duration {args.duration} s does not fit in the token lifetime ({lifetime} s)",
            file=sys.stderr,
        )
        return 2

    print("Yiwang Gateway benchmark: bare GET /healthz vs signed POST /v1/lookups")
    _print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="yiwang-bench-"))
    outdir = workdir / "results"
    outdir.mkdir()
    print(f"  workdir   {workdir}")
    gateway = Gateway(workdir=workdir, port=args.port or _free_port(), extra_env=extra_env)
    status = 0
    try:
        with _sigterm_as_interrupt():
            status = _run(
                args,
                gateway,
                outdir,
                audience=extra_env.get("GATEWAY_GATEWAY_ID", "yiwang-gateway"),
                lifetime=lifetime,
                spawn_rate=args.spawn_rate or float(args.users),
            )
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        code = gateway.stop()
        if code not in (None, 0, -signal.SIGTERM):
            print(f"the gateway exited with {code}", file=sys.stderr)
        if args.keep or status not in (0, 130):
            print(f"kept {workdir} (logs, CSVs, data)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
