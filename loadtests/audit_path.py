"""``python -m loadtests.audit_path``: what the durable promises cost the audit write path.

The audit writer checks, in each group commit, that every admitted token is used once
(``used_tokens``), that no release falls under a closed case (``closed_cases``) and that no
quota'd grant reads more subjects than it may (``quota_subjects``). This measures the writer
in one run, on a real database (a temporary SQLite file with WAL and ``synchronous=FULL``;
PostgreSQL too with ``--postgres URL``), with the same concurrency (``--concurrency``
requests appending at once, so group commits form as under load) and three kinds of entries:

1. plain entries (no promise to check) — the floor of the write path;
2. entries of admitted requests (a token claim each, a case for half of them);
3. the same with a quota'd grant (a subject counted for each).

It prints microseconds of wall time and of process CPU per entry for each, and the ratios to
the first: the cost of the durable checks per lookup.

``--sizes 0,200000,1000000`` measures instead how the write path grows with the log: the
same log is filled in bulk (entries with their Merkle tree, ``gateway.audit.bulk``) to each
size in turn, and at each the writer appends ``--count`` plain entries in group commits of
``--batch`` (64), ``--concurrency`` at once; it prints wall and CPU µs per entry at each size
and the ratio to the first.

``--processes 1,2,4`` measures instead the sequencer's ceiling across processes (the server
setup: several gateway workers or hosts on one PostgreSQL): that many processes, each with
its own writer, append ``--count`` entries of admitted requests each (``--concurrency`` at once
per process) to one log, started together; it prints the entries made durable per second by
all of them, and checks that the log came out total and gap-free.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
from gateway.audit.bulk import bulk_append
from gateway.audit.promises import CURRENT_CLAIM, TokenClaim
from gateway.cache.protocol import QuotaClaim
from gateway.storage import migrations
from gateway.storage.database import create_database_engine


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department=f"dept-{i % 8}",
        operator="clerk-1",
        service_item="000201002000",
        case_number=f"C-{i % 97}",
        reason="核验",
        resource="enterprise-registration",
        subject_hmac=f"{i:064x}",
        fields=("name", "status"),
        grant_id="g-bench",
        policy_version="v",
        request_hash=uuid.uuid4().hex * 2,
        response_hash=uuid.uuid4().hex * 2,
        latency_ms=1.234,
    )


async def _one(log: GroupCommitAuditLog, i: int, kind: str) -> None:
    if kind != "plain":
        CURRENT_CLAIM.set(
            TokenClaim(
                department=f"dept-{i % 8}",
                jti=uuid.uuid4().hex,
                nonce=uuid.uuid4().hex,
                expires_at=int(time.time()) + 600,
                case=f"C-{i % 97}" if i % 2 else None,
                refused_event="lookup:record:refused",
            )
        )
    quota = (
        QuotaClaim(grant_id="g-bench", day="2026-12-01", subject=f"{i:064x}", limit=10**9)
        if kind == "quota"
        else None
    )
    await log.append(_entry(i), quota=quota)


async def _run(log: GroupCommitAuditLog, count: int, concurrency: int, kind: str) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            # Each append in its own task, as each request is: its own promise context.
            await asyncio.create_task(_one(log, i, kind))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(url: str, count: int, concurrency: int) -> dict[str, tuple[float, float]]:
    engine = create_database_engine(url)
    migrations.upgrade(engine)
    out: dict[str, tuple[float, float]] = {}
    for kind in ("plain", "claims", "quota"):
        log = GroupCommitAuditLog(engine=engine, max_batch=512, timeout=30)
        log.start()
        asyncio.run(_run(log, min(500, count), concurrency, kind))  # warm-up, not timed
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(_run(log, count, concurrency, kind))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        log.stop()
        out[kind] = (wall / count * 1e6, cpu / count * 1e6)
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one()
    engine.dispose()
    assert total == 3 * (count + min(500, count)), total
    return out


async def _append_all(
    log: GroupCommitAuditLog, entries: list[AuditEntry], concurrency: int
) -> None:
    queue = iter(entries)

    async def worker() -> None:
        for entry in queue:
            await log.append(entry)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _sequencer_process(
    *, url: str, count: int, concurrency: int, offset: int, start: Any, results: Any
) -> None:
    """One process of :func:`measure_processes`: its own writer, started at ``start``."""
    engine = create_database_engine(url)
    log = GroupCommitAuditLog(engine=engine, max_batch=512, timeout=60)
    log.start()
    try:
        asyncio.run(_run(log, 50, concurrency, "claims"))  # connect and warm up, not timed
        start.wait(timeout=120)
        began, cpu = time.time(), time.process_time()
        asyncio.run(_run_from(log, offset, count, concurrency))
        results.put((began, time.time(), time.process_time() - cpu))
    finally:
        log.stop()
        engine.dispose()


async def _run_from(log: GroupCommitAuditLog, offset: int, count: int, concurrency: int) -> None:
    queue = iter(range(offset, offset + count))

    async def worker() -> None:
        for i in queue:
            await asyncio.create_task(_one(log, i, "claims"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure_processes(
    url: str, processes: int, count: int, concurrency: int
) -> tuple[float, float]:
    """(entries/s made durable by all, CPU µs per entry) with ``processes`` sequencers."""
    context = multiprocessing.get_context("spawn")
    engine = create_database_engine(url)
    migrations.upgrade(engine)
    with engine.connect() as conn:
        before = int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
    # Every process connects and warms up first; all start together at the barrier.
    start, results = context.Barrier(processes + 1), context.Queue()
    workers = [
        context.Process(
            target=_sequencer_process,
            kwargs={
                "url": url,
                "count": count,
                "concurrency": concurrency,
                "offset": 10**7 * (n + 1),
                "start": start,
                "results": results,
            },
        )
        for n in range(processes)
    ]
    for w in workers:
        w.start()
    start.wait(timeout=120)
    spans = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    with engine.connect() as conn:
        total, lowest, highest = conn.execute(
            sa.text("SELECT count(*), min(idx), max(idx) FROM audit_entries")
        ).one()
    engine.dispose()
    made = processes * count
    assert total == before + made + 50 * processes, (total, before, made)
    assert (lowest, highest) == (1, total), "the log must be gap-free"
    wall = max(end for _, end, _ in spans) - min(began for began, _, _ in spans)
    return made / wall, sum(cpu for _, _, cpu in spans) / made * 1e6


def _processes(args: argparse.Namespace, targets: list[tuple[str, str]]) -> None:
    counts = sorted({int(n) for n in args.processes.split(",")})
    for name, url in targets:
        if name == "sqlite":  # the embedded setup runs one process by design
            continue
        print(
            f"\n{name}: {args.count} entries of admitted requests per process, "
            f"{args.concurrency} at once in each"
        )
        print(f"{'processes':>10}{'entries/s':>11}{'CPU µs/entry':>14}{'× one':>8}")
        first = None
        for n in counts:
            with _scratch(url) as scratch:
                rate, cpu = measure_processes(scratch, n, args.count, args.concurrency)
            first = first or rate
            print(f"{n:>10}{rate:>11.0f}{cpu:>14.1f}{rate / first:>8.2f}", flush=True)


def _thread_cpu(log: GroupCommitAuditLog) -> float:
    """CPU seconds of the log's writer thread so far."""
    thread = log._thread
    assert thread is not None
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def measure_growth(
    url: str, sizes: list[int], count: int, concurrency: int, batch: int
) -> list[tuple[int, float, float, float, float]]:
    """(size, wall µs, process CPU µs, writer-thread CPU µs per entry, bulk fill s) at each
    log size, on one growing log."""
    from loadtests.district import synthetic_entries

    engine = create_database_engine(url)
    migrations.upgrade(engine)
    out: list[tuple[int, float, float, float, float]] = []
    try:
        for size in sizes:
            with engine.connect() as conn:
                now = int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
            fill = time.perf_counter()
            if size > now:
                bulk_append(engine, synthetic_entries(size - now, start=now))
            fill = time.perf_counter() - fill
            log = GroupCommitAuditLog(engine=engine, max_batch=batch, timeout=30)
            log.start()
            # The appended entries are the district's too (random subject HMACs and case
            # numbers): entries whose keys all sort together would only touch a few pages.
            base = max(size, now)
            warm = list(synthetic_entries(min(500, count), start=base))
            timed = list(synthetic_entries(count, start=base + len(warm)))
            try:
                asyncio.run(_append_all(log, warm, concurrency))  # warm-up
                writer = _thread_cpu(log)
                wall, cpu = time.perf_counter(), time.process_time()
                asyncio.run(_append_all(log, timed, concurrency))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                writer = _thread_cpu(log) - writer
            finally:
                log.stop()
            figures = (wall / count * 1e6, cpu / count * 1e6, writer / count * 1e6)
            out.append((size, *figures, fill))
            print(
                f"  {size:>9} entries: {figures[0]:7.1f} µs wall, {figures[1]:6.1f} µs CPU, "
                f"{figures[2]:6.1f} µs in the writer thread per entry (filled in {fill:.0f} s)",
                flush=True,
            )
    finally:
        engine.dispose()
    return out


def _growth(args: argparse.Namespace, targets: list[tuple[str, str]]) -> None:
    sizes = sorted({int(float(s)) for s in args.sizes.split(",")})
    for name, url in targets:
        print(
            f"\n{name}: {args.count} plain entries at each size, group commits of "
            f"{args.batch}, {args.concurrency} at once"
        )
        with _scratch(url) as scratch:
            figures = measure_growth(scratch, sizes, args.count, args.concurrency, args.batch)
        base = figures[0]
        print(
            f"{'log size':>10}{'wall µs':>10}{'CPU µs':>9}{'writer µs':>11}"
            f"{'wall ×':>8}{'CPU ×':>7}{'writer ×':>10}"
        )
        for size, wall, cpu, writer, _ in figures:
            print(
                f"{size:>10}{wall:>10.1f}{cpu:>9.1f}{writer:>11.1f}"
                f"{wall / base[1]:>8.2f}{cpu / base[2]:>7.2f}{writer / base[3]:>10.2f}"
            )


@contextlib.contextmanager
def _scratch(url: str) -> Iterator[str]:
    """``url`` itself for SQLite; a fresh database on a PostgreSQL server, dropped after."""
    if not url.startswith("postgresql"):
        yield url
        return
    name = f"yiwang_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="entries per kind (5000)")
    parser.add_argument("--concurrency", type=int, default=64, help="appends at once (64)")
    parser.add_argument(
        "--postgres",
        help="also measure on this PostgreSQL server (an admin URL: a scratch database is "
        "created there and dropped afterwards)",
    )
    parser.add_argument(
        "--sizes",
        help="measure growth instead: comma-separated log sizes, e.g. 0,200000,1000000",
    )
    parser.add_argument(
        "--processes",
        help="measure the sequencer across processes instead: comma-separated counts, "
        "e.g. 1,2,4 (one log, every process appending at once)",
    )
    parser.add_argument("--batch", type=int, default=64, help="group commit size (--sizes; 64)")
    parser.add_argument(
        "--dir", help="directory for the SQLite file (default: the system's temporary one)"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        targets = [("sqlite", f"sqlite:///{Path(tmp) / 'audit.sqlite3'}")]
        if args.postgres:
            targets.append(("postgresql", args.postgres))
        if args.processes:
            if not args.postgres:
                parser.error("--processes measures the server setup: give --postgres URL")
            _processes(args, targets)
            return
        if args.sizes:
            print(f"SQLite file in {tmp}")
            _growth(args, targets)
            return
        for name, url in targets:
            with _scratch(url) as scratch:
                figures = measure(scratch, args.count, args.concurrency)
            base_wall, base_cpu = figures["plain"]
            print(f"\n{name}: {args.count} entries per kind, {args.concurrency} at once")
            print(f"{'entries':<34}{'wall µs/entry':>14}{'CPU µs/entry':>14}{'ratio':>8}")
            for kind, label in (
                ("plain", "no promise to check"),
                ("claims", "token claim (+ case for half)"),
                ("quota", "token claim + quota subject"),
            ):
                wall, cpu = figures[kind]
                print(f"{label:<34}{wall:>14.1f}{cpu:>14.1f}{wall / base_wall:>8.2f}")
            print(
                f"durable checks per lookup: +{figures['claims'][0] - base_wall:.1f} µs wall, "
                f"+{figures['claims'][1] - base_cpu:.1f} µs CPU "
                f"(+{figures['quota'][1] - base_cpu:.1f} µs CPU with a quota)"
            )


if __name__ == "__main__":
    main()
