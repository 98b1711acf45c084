"""``python -m loadtests.scale`` (``make bench-scale``): the same requests on a small and a
large district, in one run; how each one's cost grows with the district.

Two private gateways are started the way ``make bench`` starts one (embedded SQLite,
temporary data and keys directories, 127.0.0.1 only), and both keep running:

1. the **small** district: the demo district as ``gateway init`` makes it;
2. the **large** district: the same, then grown in bulk before the gateway starts on it —
   ``--entries`` audit entries with their Merkle tree (``gateway.audit.bulk``: rows and
   perfect-subtree hashes inserted in large transactions, the tree computed in memory),
   ``--licences`` licences (copies of a demo licence under new identifiers and holders),
   ``--grants`` grants (with a service item of their own each) and ``--subjects`` records
   in every table of every provider's source database.

On both it measures four operations with the same client (``--concurrency`` threads, each
request once, bounded by ``--requests`` and ``--seconds``), in ``--rounds`` interleaved
rounds — small, large, large, small, … — so that the machine's drift during the run (on a
shared VM, ±10 % from one minute to the next) weighs on both districts alike; each
district's rounds are pooled. The operations: signed lookups of demo subjects,
licence verifications by identifier, inclusion proofs of random entries in the whole tree,
and an officer's search (one department's newest entries). It prints the gateway's CPU per
request and the latency of each, the growth ratio large / small per operation (the issue's
goal: at most 1.15) and the resident memory of the gateway's process after each run.

Generating the large district takes minutes (about two for a million entries on a 2-vCPU
machine); ``--entries 100000`` etc. give a quicker run. Nothing here is a timed assertion:
only ratios measured in the same run are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa

from gateway.audit.bulk import bulk_append
from gateway.storage.database import create_database_engine
from loadtests.bench import HOST, REPO, BenchError, Gateway, _free_port, _valid_licence_ids
from loadtests.district import DEPARTMENTS, synthetic_entries
from loadtests.tokens import SCENARIOS, VERIFIERS, sign_pool, sign_verification_pool

__all__ = ["main"]

OPERATIONS = ("lookup", "verification", "inclusion proof", "officer search")
#: The departments the officer's search asks for: those whose lookups and verifications the
#: run makes, so each search reads a full page of entries in the small district as in the
#: large one (a department with no entry in the small district answers an empty page there,
#: which compared a cheap request with a full one).
SEARCHED = tuple(sorted({s.department for s in SCENARIOS} | set(VERIFIERS)))
GOAL = 1.15


@dataclass
class Measured:
    """One operation on one district."""

    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Measured) -> None:
        """Pool ``other`` (a round of the same operation on the same district) into this."""
        self.requests += other.requests
        self.failures += other.failures
        self.seconds += other.seconds
        self.server_cpu_s += other.server_cpu_s
        self.latencies += other.latencies
        self.errors += other.errors[: max(0, 5 - len(self.errors))]

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.server_cpu_s / self.requests if self.requests else math.nan

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


Request = Callable[[httpx.Client], httpx.Response]


def _drive(gateway: Gateway, requests: list[Request], *, threads: int, seconds: float) -> Measured:
    """Send each request once from ``threads`` clients; stop at ``seconds`` at the latest."""
    out = Measured()
    queue = iter(requests)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(base_url=gateway.base_url, timeout=10.0) as client:
            while time.monotonic() < deadline:
                with lock:
                    request = next(queue, None)
                if request is None:
                    return
                started = time.perf_counter()
                try:
                    response = request(client)
                    ok = response.status_code == 200
                    why = f"{response.status_code} {response.text[:120]}"
                except httpx.HTTPError as exc:
                    ok, why = False, type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    out.requests += 1
                    out.latencies.append(elapsed)
                    if not ok:
                        out.failures += 1
                        if len(out.errors) < 5:
                            out.errors.append(why)

    cpu = gateway.cpu_seconds()
    started = time.monotonic()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=seconds + 30)
    out.seconds = time.monotonic() - started
    out.server_cpu_s = gateway.cpu_seconds() - cpu
    return out


# ---------------------------------------------------------------------------- the district


def _grow_policies(policies: Path, grants: int) -> int:
    """Add grants (each with a catalogued service item of its own) up to ``grants``."""
    from gateway.core.policy import load_policy_set

    have = len(load_policy_set(policies).grants)
    extra = max(0, grants - have)
    consumers = [d for d in DEPARTMENTS if d not in ("police", "data-bureau")]
    items, granted = [], []
    for i in range(extra):
        code = f"{990000000000 + i}"
        consumer = consumers[i % len(consumers)]
        items.append(
            f'\n[[item]]\ncode = "{code}"\nname = "规模测试事项{i}"\ndepartment = "{consumer}"\n'
            'materials = [{ name = "营业执照", resource = "enterprise-registration" }]\n'
        )
        granted.append(
            f'\n[[grant]]\nid = "g-scale-{i:05d}"\nconsumer = "{consumer}"\n'
            'resource = "enterprise-registration"\nfields = ["name", "status"]\n'
            f'items = ["{code}"]\n'
        )
    with (policies / "catalogue.toml").open("a", encoding="utf-8") as f:
        f.writelines(items)
    with (policies / "grants.toml").open("a", encoding="utf-8") as f:
        f.writelines(granted)
    return len(load_policy_set(policies).grants)


def _grow_sources(sources: Path, subjects: int) -> int:
    """Every table of every provider database to ``subjects`` rows (copies of its first row
    under new keys); the smallest table's size after."""
    smallest = sys.maxsize
    for path in sorted(sources.glob("*.sqlite3")):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for table in tables:
                info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
                names = [c[1] for c in info]
                keys = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]]
                template = conn.execute(f'SELECT * FROM "{table}" LIMIT 1').fetchone()
                have = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                if template is None or not keys or have >= subjects:
                    smallest = min(smallest, have)
                    continue
                key = names.index(keys[0])
                width = max(len(str(template[key])), 8)
                rows = []
                for i in range(subjects - have):
                    row = list(template)
                    row[key] = (
                        (10**9 + i) if isinstance(template[key], int) else f"Z{i:0{width - 1}d}"
                    )
                    rows.append(row)
                marks = ", ".join("?" for _ in names)
                conn.executemany(f'INSERT OR IGNORE INTO "{table}" VALUES ({marks})', rows)
                conn.commit()
                smallest = min(
                    smallest, conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                )
    return smallest


def _grow_licences(database: Path, licences: int) -> int:
    """Licences up to ``licences``: copies of a demo licence under new ids and holders."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.row_factory = sqlite3.Row
        have = conn.execute("SELECT count(*) FROM licences").fetchone()[0]
        template = conn.execute("SELECT * FROM licences ORDER BY licence_id LIMIT 1").fetchone()
        if template is None or have >= licences:
            return int(have)
        names = template.keys()
        rows = []
        for i in range(licences - have):
            row = dict(template)
            row["licence_id"] = f"{template['licence_id']}-S{i:07d}"
            row["base_id"] = f"{template['base_id']}-S{i:07d}"
            row["holder_id"] = f"S{i:017d}"
            row["superseded_by"] = None
            rows.append(tuple(row[n] for n in names))
        marks = ", ".join("?" for _ in names)
        columns = ", ".join(names)
        conn.executemany(f"INSERT INTO licences ({columns}) VALUES ({marks})", rows)
        conn.commit()
        return int(conn.execute("SELECT count(*) FROM licences").fetchone()[0])


def grow(gateway: Gateway, args: argparse.Namespace) -> dict[str, int | float]:
    """Make the (stopped) gateway's district large, in bulk; what it holds then."""
    started = time.monotonic()
    database = gateway.data_dir / "gateway.sqlite3"
    engine = create_database_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            now = int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
        size = now
        if args.entries > now:
            size = bulk_append(engine, synthetic_entries(args.entries - now, start=now))
    finally:
        engine.dispose()
    audit_s = time.monotonic() - started
    figures: dict[str, int | float] = {
        "entries": size,
        "licences": _grow_licences(database, args.licences),
        "grants": _grow_policies(Path(gateway.settings["GATEWAY_POLICIES_DIR"]), args.grants),
        "subjects per source table (fewest)": _grow_sources(
            gateway.data_dir / "sources", args.subjects
        ),
    }
    figures["audit fill s"] = round(audit_s, 1)
    figures["generation s"] = round(time.monotonic() - started, 1)
    return figures


# ---------------------------------------------------------------------------- the operations


def _operations(
    gateway: Gateway, args: argparse.Namespace
) -> dict[str, Callable[[], list[Request]]]:
    """Each operation's requests, made just before it runs."""
    n = args.requests
    lookups = sign_pool(keys_dir=gateway.keys_dir, size=n)
    licence_ids = _valid_licence_ids(gateway)
    licence_ids = [i for i in licence_ids if "-S" not in i]  # the demo's own, in both
    verifications = sign_verification_pool(
        keys_dir=gateway.keys_dir, size=n, licence_ids=licence_ids
    )

    def proofs() -> list[Request]:
        # Asked after the lookups and verifications (whose entries a small log needs): of the
        # tree as it is then, so every proof exists.
        database = gateway.data_dir / "gateway.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            last = conn.execute(
                "SELECT pos FROM merkle_nodes WHERE level = 0 ORDER BY pos DESC LIMIT 1"
            ).fetchone()
        size = 0 if last is None else int(last[0]) + 1
        return [proof(rng.randrange(1, size + 1), size) for _ in range(n)]

    auditor = (gateway.keys_dir / "operators" / "auditor.token").read_text().strip()
    officer = {"Authorization": f"Bearer {auditor}"}
    rng = random.Random(17)
    jwt = {"Content-Type": "application/jwt"}

    def post(path: str, token: str) -> Request:
        return lambda c: c.post(path, content=token, headers=jwt)

    def proof(index: int, size: int) -> Request:
        return lambda c: c.get("/v1/audit/proofs/inclusion", params={"index": index, "size": size})

    def search(department: str) -> Request:
        params: dict[str, str | int] = {"department": department, "order": "desc", "limit": 50}
        return lambda c: c.get("/v1/audit/entries", params=params, headers=officer)

    return {
        "lookup": lambda: [post("/v1/lookups", t) for _, t in lookups],
        "verification": lambda: [post("/v1/verifications", t) for _, t in verifications],
        "inclusion proof": proofs,
        "officer search": lambda: [search(SEARCHED[i % len(SEARCHED)]) for i in range(n // 4)],
    }


def _rss_mb(gateway: Gateway) -> float:
    rss = 0.0
    for pid in gateway.pids():
        with contextlib.suppress(psutil.Error):
            rss = max(rss, psutil.Process(pid).memory_info().rss / 2**20)
    return rss


#: The order of the districts in each pair of rounds: small, large, then large, small (ABBA),
#: so that a machine getting slower or faster during the run weighs on both alike.
_ORDER = (("small", "large"), ("large", "small"))


def measure(
    gateways: dict[str, Gateway], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Measured]], dict[str, float]]:
    """Every operation on both districts, in ``--rounds`` interleaved rounds each (a short
    warm-up of each first); per district, each operation's pooled figures and the gateway's
    resident memory after, in MB."""
    made = {label: _operations(gw, args) for label, gw in gateways.items()}
    results: dict[str, dict[str, Measured]] = {label: {} for label in gateways}
    for name in OPERATIONS:
        requests = {label: made[label][name]() for label in gateways}
        for label, gw in gateways.items():
            warm = max(10, len(requests[label]) // 10)
            _drive(gw, requests[label][:warm], threads=args.concurrency, seconds=args.seconds)
            requests[label] = requests[label][warm:]
            results[label][name] = Measured()
        share = {label: math.ceil(len(r) / args.rounds) for label, r in requests.items()}
        for n in range(args.rounds):
            for label in _ORDER[n % 2]:
                chunk = requests[label][n * share[label] : (n + 1) * share[label]]
                if chunk:
                    results[label][name].add(
                        _drive(
                            gateways[label],
                            chunk,
                            threads=args.concurrency,
                            seconds=args.seconds / args.rounds,
                        )
                    )
    return results, {label: _rss_mb(gw) for label, gw in gateways.items()}


# ---------------------------------------------------------------------------- main


def _start_district(label: str, workdir: Path, args: argparse.Namespace) -> Gateway:
    """Start the district's gateway (the large one grown in bulk first); left running."""
    policies = workdir / "policies"
    shutil.copytree(REPO / "policies", policies)
    gateway = Gateway(
        workdir=workdir,
        port=_free_port(),
        extra_env={"GATEWAY_POLICIES_DIR": str(policies)},
    )
    print(f"  {label}: starting the gateway (gateway init on first start) ...", flush=True)
    gateway.start(args.startup_timeout)
    if label == "large":
        gateway.stop()
        print("  large: growing the district in bulk ...", flush=True)
        held = grow(gateway, args)
        print(f"  large: {json.dumps(held, ensure_ascii=False)}", flush=True)
        gateway.start(args.startup_timeout)
    return gateway


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.scale", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries (10⁶)")
    parser.add_argument("--licences", type=int, default=100_000, help="licences (10⁵)")
    parser.add_argument("--grants", type=int, default=1_000, help="grants (10³)")
    parser.add_argument(
        "--subjects", type=int, default=100_000, help="records per source table (10⁵)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per operation")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="time bound per operation (30 s)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="interleaved rounds per operation, small and large in turn (4)",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary districts")
    args = parser.parse_args(argv)
    if not 2 <= args.rounds <= 20:
        parser.error("--rounds must be 2..20")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be 1..64")
    if not 20 <= args.requests <= 100_000:
        parser.error("--requests must be 20..100000")
    if not 1 <= args.seconds <= 240:
        parser.error("--seconds must be 1..240 (tokens live 300 s)")
    return args


def _report(
    small: dict[str, Measured], large: dict[str, Measured], rss: tuple[float, float]
) -> int:
    print()
    header = (
        f"{'operation':<18}{'small CPU/req':>15}{'large CPU/req':>15}{'growth':>8}"
        f"{'p50 ms s/l':>14}{'p99 ms s/l':>14}{'req':>11}{'failed':>8}"
    )
    print(header)
    print("-" * len(header))
    status = 0
    growths = []
    for name in OPERATIONS:
        s, lg = small[name], large[name]
        growth = lg.cpu_us / s.cpu_us if s.cpu_us else math.nan
        growths.append(growth)
        print(
            f"{name:<18}{s.cpu_us:>12.0f} µs{lg.cpu_us:>12.0f} µs{growth:>8.2f}"
            f"{s.percentile(0.5):>7.1f}/{lg.percentile(0.5):<6.1f}"
            f"{s.percentile(0.99):>7.1f}/{lg.percentile(0.99):<6.1f}"
            f"{s.requests:>5}/{lg.requests:<5}{s.failures + lg.failures:>8}"
        )
        for why in s.errors + lg.errors:
            print(f"    FAILED: {why}")
        if s.failures or lg.failures:
            status = 1
    print()
    worst = max(growths)
    print(
        f"growth (large / small gateway CPU per request): worst {worst:.2f}, "
        f"median {statistics.median(growths):.2f} (goal ≤ {GOAL})"
    )
    print(
        f"resident memory per worker: small {rss[0]:.0f} MB, large {rss[1]:.0f} MB "
        f"(goal ≤ 200 MB, flat)"
    )
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from loadtests.bench import _print_machine

    print("Yiwang Gateway at scale: a small and a large district, the same requests, one run")
    _print_machine()
    root = Path(tempfile.mkdtemp(prefix="yiwang-scale-"))
    print(f"  workdir   {root}")
    status = 0
    gateways: dict[str, Gateway] = {}
    try:
        for label in ("small", "large"):
            gateways[label] = _start_district(label, root / label, args)
        print("  measuring both, in interleaved rounds ...", flush=True)
        results, rss = measure(gateways, args)
        print(
            f"\n  {HOST}, 1 worker each, embedded SQLite; {args.concurrency} client threads, "
            f"up to {args.requests} requests and {args.seconds:g} s per operation and district, "
            f"in {args.rounds} rounds (small, large, large, small, …)"
        )
        status = _report(results["small"], results["large"], (rss["small"], rss["large"]))
    except BenchError as exc:
        print(f"\nbench-scale failed: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        for gateway in gateways.values():
            gateway.stop()
        if args.keep or status not in (0, 130):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
