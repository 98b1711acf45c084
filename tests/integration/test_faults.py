"""Promises that survive faults, tried with real stores the tests kill, freeze, flush and
fill: their own redis-server and PostgreSQL cluster on other ports (tests/faults.py), an
SQLite file on a small tmpfs — never the shared servers.

Each test asserts the promises the fault must not break: no 200 while a store is down; every
200's entry present with its exact token hash; no replay accepted after any loss; no closed
case reopened; no quota reset; no "released" entry without an answer (or, if a commit landed
after its request gave up, a correction entry naming it); and the log verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
import sqlalchemy as sa

from gateway.audit.verify import verify_log
from gateway.demo.population import companies, people
from gateway.registry.keystore import department_private_jwk
from gateway.sdk import tls_context
from tests.faults import private_postgres, private_redis
from tests.support import ROOT, GatewayProcess, copy_policies, edit_file, postgres_database

pytestmark = pytest.mark.timeout(240)

JWT = {"Content-Type": "application/jwt"}
QUOTA = 3  # the demo grant g-civil-identity, cut from 50 subjects a day to 3


# --- tokens and answers --------------------------------------------------------------------


class Sender:
    """Signs lookups for one department with its demo key."""

    def __init__(self, gateway: GatewayProcess, department: str = "service-centre") -> None:
        self.gateway = gateway
        self.department = department
        self.key = department_private_jwk(gateway.keys_dir, department)

    def token(self, *, n: int = 0, case: str = "F-0001", **query: Any) -> str:
        now = int(time.time())
        item = query.pop("item", "000201002000")
        return self.key.sign(
            json.dumps(
                {
                    "iss": self.department,
                    "aud": "yiwang-gateway",
                    "iat": now,
                    "exp": now + 240,
                    "jti": uuid.uuid4().hex,
                    "purpose": {"item": item, "case": case, "reason": "故障测试"},
                    "operator": "clerk-f",
                    "query": query
                    or {
                        "resource": "enterprise-registration",
                        "subject": {"type": "uscc", "id": companies()[n % 100].uscc},
                        "fields": ["name", "status"],
                    },
                }
            ).encode(),
            headers={"typ": "yiwang-lookup+jwt"},
        )

    def quota_token(self, person: int) -> str:
        return self.token(
            item="000105001000",
            resource="resident-identity",
            subject={"type": "resident-id", "id": people()[person].id_number},
            fields=["birth_date"],
        )

    def send(self, token: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(
            self.gateway.url + "/v1/lookups",
            content=token,
            headers=JWT,
            timeout=timeout,
            verify=tls_context(),  # a new connection each time, but not a new CA bundle
        )


def _status_or_cut(sender: Sender, token: str) -> int:
    """The status of the answer, or 0 when the connection was cut before one."""
    try:
        return sender.send(token).status_code
    except httpx.TransportError:
        return 0


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def entries(gateway: GatewayProcess) -> list[dict[str, Any]]:
    engine = sa.create_engine(gateway.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT idx, event, decision, reason_code, request_hash, withholds, detail "
                    "FROM audit_entries ORDER BY idx"
                )
            ).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def assert_truthful(gateway: GatewayProcess, answered: set[str]) -> None:
    """Every release has its answer, or a correction naming it; the log verifies."""
    log = entries(gateway)
    assert [e["idx"] for e in log] == list(range(1, len(log) + 1))  # gap-free
    withheld = {e["withholds"] for e in log if e["withholds"] is not None}
    for e in log:
        if e["event"] == "lookup:record:released" and e["idx"] not in withheld:
            assert e["request_hash"] in answered, e
    jwks = httpx.get(gateway.url + "/.well-known/jwks.json", timeout=10).json()
    engine = sa.create_engine(gateway.database_url)
    try:
        report = verify_log(engine, gateway_jwks=jwks, issuer="yiwang-gateway")
    finally:
        engine.dispose()
    assert report.ok, report.problems


def statuses(sender: Sender, tokens: list[str], workers: int = 8) -> list[int]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r.status_code for r in pool.map(sender.send, tokens)]


@contextlib.contextmanager
def gateway(data_dir: Path, keys_dir: Path, policies: Path, **env: str) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        data_dir=data_dir, keys_dir=keys_dir, env={"GATEWAY_POLICIES_DIR": str(policies), **env}
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    directory = copy_policies(tmp_path / "policies")
    edit_file(
        directory, "grants.toml", "max_subjects_per_day = 50", f"max_subjects_per_day = {QUOTA}"
    )
    return directory


def close_case(sender: Sender, case: str) -> None:
    now = int(time.time())
    token = sender.key.sign(
        json.dumps(
            {
                "iss": sender.department,
                "aud": "yiwang-gateway",
                "iat": now,
                "exp": now + 60,
                "jti": uuid.uuid4().hex,
                "case": case,
                "operator": "clerk-f",
                "reason": "办结",
            }
        ).encode(),
        headers={"typ": "yiwang-case-close+jwt"},
    )
    response = httpx.post(
        sender.gateway.url + "/v1/cases:close", content=token, headers=JWT, timeout=10
    )
    assert response.status_code == 200, response.text


def before_the_loss(gw: GatewayProcess) -> tuple[list[str], set[str]]:
    """Answered lookups, a closed case and an exhausted quota: what a loss must not undo."""
    sender, civil = Sender(gw), Sender(gw, "civil-affairs")
    answered = [sender.token(n=n) for n in range(5)]
    assert statuses(sender, answered) == [200] * 5
    close_case(sender, "F-CLOSED")
    assert sender.send(sender.token(case="F-CLOSED")).status_code == 403
    quota = [civil.quota_token(p) for p in range(QUOTA)]
    assert statuses(civil, quota) == [200] * QUOTA
    over = civil.send(civil.quota_token(QUOTA))
    assert over.status_code == 403
    assert over.json()["reason"] == "quota-exhausted"
    return answered, {token_hash(t) for t in answered + quota}


def after_the_loss(gw: GatewayProcess, answered: list[str], ok: set[str]) -> set[str]:
    """Nothing the loss could have undone is undone; the hashes of every token answered."""
    sender, civil = Sender(gw), Sender(gw, "civil-affairs")
    replays = [sender.send(t) for t in answered]
    assert [r.status_code for r in replays] == [409] * len(answered)
    closed = sender.send(sender.token(case="F-CLOSED"))
    assert closed.status_code == 403
    assert closed.json()["reason"] == "case-closed"
    over = civil.send(civil.quota_token(QUOTA + 1))
    assert over.status_code == 403
    assert over.json()["reason"] == "quota-exhausted"
    again = civil.quota_token(0)  # a subject counted today may be read again
    assert civil.send(again).status_code == 200
    fresh = [sender.token(n=20 + n) for n in range(6)]
    assert statuses(sender, fresh) == [200] * 6
    ok = ok | {token_hash(t) for t in [again, *fresh]}
    assert_truthful(gw, ok)
    return ok


# --- 1, 2, 5: the cache lost ---------------------------------------------------------------


@pytest.mark.long
def test_a_redis_restarted_empty_forgets_no_promise(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    with (
        private_redis() as store,
        postgres_database() as database,
        gateway(
            tmp_path / "data",
            keys_dir,
            policies,
            GATEWAY_DATABASE_URL=database,
            GATEWAY_REDIS_URL=store.url,
            GATEWAY_WORKERS="2",
        ) as gw,
    ):
        answered, ok = before_the_loss(gw)
        store.restart_empty()
        # Pooled connections that sat through the restart are replaced at once: no 503.
        sender = Sender(gw)
        right_after = [sender.token(n=40 + n) for n in range(24)]
        assert statuses(sender, right_after) == [200] * 24
        ok = after_the_loss(gw, answered, ok | {token_hash(t) for t in right_after})
        # A partial loss — the closed case's key alone — is caught by the durable check.
        client = redis.Redis.from_url(store.url)
        for key in client.scan_iter("*:case:F-CLOSED"):
            client.delete(key)
        client.close()
        refused = sender.send(sender.token(case="F-CLOSED"))
        assert refused.status_code == 403
        entry = next(e for e in entries(gw) if e["idx"] == refused.json()["audit_index"])
        assert (entry["reason_code"], entry["decision"]) == ("case-closed", "refused")
        assert "durable" in entry["detail"]
        # Redis down: 503 within its timeout, never a 200, nothing released.
        store.kill()
        started = time.monotonic()
        down = sender.send(sender.token(n=90))
        assert down.status_code == 503
        assert time.monotonic() - started < 3
        assert_truthful(gw, ok)


def test_a_restarted_embedded_gateway_forgets_no_promise(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    data = tmp_path / "data"
    with gateway(data, keys_dir, policies) as gw:
        answered, ok = before_the_loss(gw)
        assert gw.proc is not None
        gw.proc.kill()  # SIGKILL: no shutdown, no flush
        gw.proc.wait(timeout=10)
        gw.proc = None
        gw.start()
        after_the_loss(gw, answered, ok)


# --- 3, 6: the audit write does not finish in time -------------------------------------------


@pytest.mark.long
def test_a_locked_database_releases_nothing_and_the_token_can_be_resent(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    env = {
        "GATEWAY_AUDIT_TIMEOUT_SECONDS": "0.5",
        "GATEWAY_AUDIT_COMMIT_GRACE_SECONDS": "0.5",
        "GATEWAY_DB_BUSY_TIMEOUT_MS": "2500",
        "GATEWAY_READINESS_TIMEOUT_SECONDS": "0.5",
    }
    with gateway(tmp_path / "data", keys_dir, policies, **env) as gw:
        sender = Sender(gw)
        first = sender.token(n=1)
        assert sender.send(first).status_code == 200
        blocker = sa.create_engine(gw.database_url)
        tokens = [sender.token(n=n) for n in range(12)]
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            started = time.monotonic()
            refused = [sender.send(t) for t in tokens]
            ready = httpx.get(gw.url + "/readyz", timeout=10)
            conn.exec_driver_sql("ROLLBACK")
        blocker.dispose()
        assert [r.status_code for r in refused] == [503] * len(tokens)
        assert ready.status_code == 503
        assert time.monotonic() - started < 40
        time.sleep(3)  # the writer's last locked batch ends, committed or not
        log = entries(gw)
        withheld = {e["withholds"] for e in log if e["withholds"] is not None}
        resend, answered = [], {token_hash(first)}
        for token, r in zip(tokens, refused, strict=True):
            released = [
                e
                for e in log
                if e["request_hash"] == token_hash(token) and e["event"] == "lookup:record:released"
            ]
            if r.json()["token_consumed"] is False:
                # Honest: its entry was never taken into a commit, the token was released.
                assert r.headers["retry-after"] == "1"
                assert not released, (r.json(), log)
                resend.append(token)
            else:
                # It gave up while its commit was under way: the outcome was unknown, so it
                # said "send a new token"; if the entry landed, a correction names it.
                assert "retry-after" not in r.headers
                assert all(e["idx"] in withheld for e in released)
        assert resend  # the queued ones were withdrawn
        assert statuses(sender, resend) == [200] * len(resend)
        answered |= {token_hash(t) for t in resend}
        assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 200
        assert_truthful(gw, answered)


def _answered_before(gw: GatewayProcess) -> set[str]:
    # The first lookup of a test (its token is not kept): the entry that precedes the fault.
    log = entries(gw)
    return {log[0]["request_hash"]} if log else set()


# --- 3, 4: PostgreSQL frozen, a second process frozen holding the lock ------------------------


@pytest.mark.long
def test_a_frozen_or_killed_postgresql_answers_503_and_the_log_stays_truthful(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    env = {
        "GATEWAY_AUDIT_TIMEOUT_SECONDS": "1",
        "GATEWAY_AUDIT_COMMIT_GRACE_SECONDS": "1",
        "GATEWAY_READINESS_TIMEOUT_SECONDS": "1",
    }
    with (
        private_postgres() as cluster,
        private_redis() as store,
        gateway(
            tmp_path / "data",
            keys_dir,
            policies,
            GATEWAY_DATABASE_URL=cluster.url,
            GATEWAY_REDIS_URL=store.url,
            GATEWAY_WORKERS="2",
            **env,
        ) as gw,
    ):
        sender = Sender(gw)
        before = [sender.token(n=n) for n in range(4)]
        assert statuses(sender, before) == [200] * 4
        frozen = [sender.token(n=10 + n) for n in range(8)]
        cluster.freeze()
        try:
            started = time.monotonic()
            during = statuses(sender, frozen)
            elapsed = time.monotonic() - started
            ready = httpx.get(gw.url + "/readyz", timeout=10)
        finally:
            cluster.thaw()
        assert during == [503] * len(frozen)  # never a 200 while the store is frozen
        assert elapsed < 15
        assert ready.status_code == 503
        time.sleep(3)  # the stuck commit ends; a release that landed gets its correction
        after = [sender.token(n=30 + n) for n in range(4)]
        assert statuses(sender, after) == [200] * 4
        # Killed: 503 at once — also from a worker that is replaced while the database is
        # down (its start must not fail: a failed start would stop the whole gateway).
        cluster.kill()
        assert gw.proc is not None
        workers = [
            w
            for w in psutil.Process(gw.proc.pid).children(recursive=True)
            if "multiprocessing" in " ".join(w.cmdline())
        ]
        workers[0].kill()
        time.sleep(3)  # the supervisor notices and starts a replacement
        killed = [_status_or_cut(sender, sender.token(n=50 + n)) for n in range(4)]
        log = gw.log_path.read_text(errors="replace")[-4000:] if gw.log_path else ""
        assert gw.proc.poll() is None, log  # the gateway is still there
        assert set(killed) <= {503, 0}, log  # no 200 while the store is down
        assert 503 in killed, log
        cluster.start()
        deadline, back = time.monotonic() + 20, sender.token(n=60)
        while sender.send(back).status_code != 200:
            assert time.monotonic() < deadline, "no 200 within 20 s of the restart"
            back = sender.token(n=60)
            time.sleep(0.1)
        assert_truthful(gw, {token_hash(t) for t in [*before, *after, back]})


_HOLD_THE_LOCK = """
import os, signal, sys
import sqlalchemy as sa
from gateway.storage.database import create_database_engine
engine = create_database_engine(sys.argv[1])
conn = engine.connect()
conn.begin()
conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x796977616E67)))
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_a_frozen_process_holding_the_sequencer_lock_stops_no_gateway(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    with (
        private_postgres() as cluster,
        private_redis() as store,
        gateway(
            tmp_path / "data",
            keys_dir,
            policies,
            GATEWAY_DATABASE_URL=cluster.url,
            GATEWAY_REDIS_URL=store.url,
        ) as gw,
    ):
        sender = Sender(gw)
        assert sender.send(sender.token(n=0)).status_code == 200
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_THE_LOCK, cluster.url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == b"locked"
            time.sleep(0.2)
            assert psutil.Process(holder.pid).status() == psutil.STATUS_STOPPED
            started = time.monotonic()
            tokens = [sender.token(n=n) for n in range(6)]
            answered = statuses(sender, tokens)
            elapsed = time.monotonic() - started
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
        # The frozen session died (idle in transaction) and took its lock with it.
        assert answered == [200] * len(tokens)
        assert elapsed < 8
        assert_truthful(gw, {token_hash(t) for t in tokens} | _answered_before(gw))


# --- workers and gateways killed ------------------------------------------------------------


def test_a_killed_worker_forgets_no_answered_token(
    tmp_path: Path, keys_dir: Path, policies: Path
) -> None:
    with (
        private_redis() as store,
        postgres_database() as database,
        gateway(
            tmp_path / "data",
            keys_dir,
            policies,
            GATEWAY_DATABASE_URL=database,
            GATEWAY_REDIS_URL=store.url,
            GATEWAY_WORKERS="2",
        ) as gw,
    ):
        sender = Sender(gw)
        answered = [sender.token(n=n) for n in range(8)]
        assert statuses(sender, answered) == [200] * 8
        assert gw.proc is not None
        workers = psutil.Process(gw.proc.pid).children(recursive=True)
        victims = [w for w in workers if "multiprocessing" in " ".join(w.cmdline())]
        assert victims
        victims[0].kill()
        store.restart_empty()  # and the cache with it
        deadline = time.monotonic() + 20
        replays: list[int] = []
        while time.monotonic() < deadline:
            replays = [sender.send(t).status_code for t in answered]
            if 503 not in replays and 502 not in replays:
                break
            time.sleep(0.5)
        assert replays == [409] * len(answered)
        assert_truthful(gw, {token_hash(t) for t in answered})


# --- the disk full --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_503_then_recovers(
    small_disk: Path, keys_dir: Path, policies: Path
) -> None:
    with gateway(small_disk / "data", keys_dir, policies, GATEWAY_READINESS_MIN_FREE_MB="1") as gw:
        sender = Sender(gw)
        first = sender.token(n=0)
        assert sender.send(first).status_code == 200
        filler = small_disk / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        with contextlib.suppress(OSError), filler.open("ab") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        time.sleep(0.05)  # the audit writer reads the free space at most every 10 ms
        tokens = [sender.token(n=n) for n in range(1, 30)]
        full = [sender.send(t).status_code for t in tokens]
        ready = httpx.get(gw.url + "/readyz", timeout=10)
        filler.unlink()
        assert 200 not in full, full  # nothing released without its entry
        assert set(full) == {503}
        assert ready.status_code == 503
        again = [sender.token(n=50 + n) for n in range(5)]
        assert statuses(sender, again) == [200] * 5
        assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 200
        assert_truthful(gw, {token_hash(t) for t in [first, *again]})


# --- the in-doubt commit: it landed after its request gave up ---------------------------------


def test_a_commit_that_lands_after_its_request_gave_up_is_corrected(tmp_path: Path) -> None:
    import asyncio
    import datetime as dt

    from gateway.audit import AuditEntry, GroupCommitAuditLog, Outcome
    from gateway.errors import StoreUnavailable
    from gateway.storage import migrations
    from gateway.storage.database import create_database_engine

    engine = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    migrations.upgrade(engine)
    slow = threading.Event()

    @sa.event.listens_for(engine, "commit")
    def _slow_commit(conn: Any) -> None:  # a disk that takes its time to sync
        if slow.is_set():
            time.sleep(1.5)

    log = GroupCommitAuditLog(engine=engine, timeout=0.3, grace=0.3)
    log.start()
    released = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department="tax",
        request_hash="ef" * 32,
    )
    try:
        slow.set()
        with pytest.raises(StoreUnavailable):
            asyncio.run(log.append(released))
        slow.clear()
        time.sleep(2)  # the commit lands; the writer corrects it after its next batch
        asyncio.run(
            log.append(AuditEntry(at=dt.datetime.now(dt.UTC), event="x", decision=Outcome.ALLOWED))
        )
        time.sleep(0.5)
    finally:
        log.stop()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT idx, event, withholds FROM audit_entries ORDER BY idx")
        ).all()
    assert rows[0][1] == "lookup:record:released"
    corrections = [r for r in rows if r[1] == "audit:answer:withheld"]
    assert [r[2] for r in corrections] == [rows[0][0]]
