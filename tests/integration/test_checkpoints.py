"""Signed checkpoints on a quiet gateway: however an entry got into the log (a request, or a
``gateway`` command in another process that runs no checkpoint loop), the serving process
covers it within its checkpoint interval without any further traffic; and the loop goes on
after an unexpected failure (one exception used to end it for the process's life, leaving
every later entry uncovered)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.transparency import Checkpoint, TransparencyLog
from gateway.demo.population import companies
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import gateway_command

#: How long a test waits at most for what must happen within a fraction of it.
PATIENCE = 20.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    with in_process_gateway(
        tmp_path_factory.mktemp("checkpoints"), keys_dir, audit_checkpoint_seconds=0.2
    ) as gateway:
        yield gateway


def _covered(gw: InProcessGateway) -> bool:
    latest = gw.runtime.transparency.latest()
    return latest is not None and latest.size >= gw.audit_count()


def _wait_until_covered(gw: InProcessGateway) -> None:
    deadline = time.monotonic() + PATIENCE
    while not _covered(gw):
        assert time.monotonic() < deadline, "the log's last entries stayed uncovered"
        time.sleep(0.1)


def test_a_quiet_gateway_covers_its_last_entries(gw: InProcessGateway) -> None:
    with gw.client("service-centre") as c:
        c.lookup(
            resource="enterprise-registration",
            subject=("uscc", companies()[3].uscc),
            fields=["name"],
            item="000201002000",
            case="YW-2026-CP-1",
            reason="检查点测试",
            operator="clerk-cp",
        )
    _wait_until_covered(gw)  # no further request needed

    # An entry written by a command (its own engine and audit log, no checkpoint loop).
    env = {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_DATABASE_URL": gw.database_url,
    }
    before = gw.audit_count()
    done = gateway_command(
        "users", "add", "officer-cp", "--role", "auditor", "--password-stdin",
        "--operator", "admin-cp", env=env, stdin="Audit-Desk-2026!\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert gw.audit_count() == before + 1
    _wait_until_covered(gw)


class _FailsOnce(TransparencyLog):
    """The real checkpointer, except that its first attempt fails with an error that is not
    the database's (a fault no real component can be made to raise on demand)."""

    attempts = 0

    def make_checkpoint(self, now: dt.datetime) -> Checkpoint | None:
        self.attempts += 1
        if self.attempts == 1:
            raise RuntimeError("an unexpected failure")
        return super().make_checkpoint(now)


def test_the_checkpoint_loop_goes_on_after_an_unexpected_error(gw: InProcessGateway) -> None:
    runtime = gw.runtime
    log = _FailsOnce(
        engine=runtime.engine, signer=runtime.signer, gateway_id=gw.settings.gateway_id,
        interval=0.05,
    )  # fmt: skip

    async def run_past_the_failure() -> None:
        task = asyncio.create_task(log.run())
        try:
            deadline = time.monotonic() + PATIENCE
            while log.attempts < 3:  # failed once, then tried again, and again
                assert not task.done(), "the loop ended"
                assert time.monotonic() < deadline, "the loop stopped trying"
                await asyncio.sleep(0.05)
            assert not task.done()
        finally:
            task.cancel()

    asyncio.run(run_past_the_failure())
    # What it signs after the failure is a real checkpoint of the whole log.
    with gw.client("service-centre") as c:
        c.lookup(
            resource="enterprise-registration",
            subject=("uscc", companies()[4].uscc),
            fields=["name"],
            item="000201002000",
            case="YW-2026-CP-2",
            reason="检查点测试",
            operator="clerk-cp",
        )
    made = log.make_checkpoint(dt.datetime.now(dt.UTC))
    latest = runtime.transparency.latest()
    assert latest is not None
    assert latest.size == gw.audit_count()
    assert made is None or made.size == latest.size  # the gateway's own loop may be first
