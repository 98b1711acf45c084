"""The writer's adaptive group commit (``linger``) on real SQLite and PostgreSQL: entries that
come close together share commits, an entry that comes alone is written at once, and either
way every entry is durable, in order and gap-free."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from gateway.audit import GroupCommitAuditLog
from tests.support import audit_entry, stored_details


async def _spaced(log: GroupCommitAuditLog, count: int, gap: float) -> list[int]:
    """``count`` appends started ``gap`` seconds apart, each in its own task (a request)."""
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(log.append(audit_entry(i))))
        await asyncio.sleep(gap)
    return list(await asyncio.gather(*tasks))


def _appended(log: GroupCommitAuditLog, count: int, gap: float) -> list[int]:
    """:func:`_spaced` on a started ``log``, stopped after."""
    log.start()
    try:
        return asyncio.run(_spaced(log, count, gap))
    finally:
        log.stop()


def test_entries_that_come_close_together_share_commits(audit_engine: sa.Engine) -> None:
    # 20 entries 5 ms apart, a linger of 50 ms: once the writer has seen two gaps that short,
    # each commit waits for the entries of the next 50 ms (about ten) instead of taking one.
    log = GroupCommitAuditLog(engine=audit_engine, linger=0.05, timeout=30)
    indexes = _appended(log, 20, 0.005)
    assert log.lingered >= 1
    assert log.batches_committed <= 6, log.batches_committed  # 1 + 1 + two of about ten
    assert indexes == sorted(indexes) == list(range(indexes[0], indexes[0] + 20))
    assert [detail for _, detail in stored_details(audit_engine)] == [str(i) for i in range(20)]


def test_an_entry_that_comes_alone_is_written_at_once(audit_engine: sa.Engine) -> None:
    # Entries 60 ms apart with a linger of 10 ms: never "under load" (four lingers apart or
    # more), so no commit waits.
    log = GroupCommitAuditLog(engine=audit_engine, linger=0.01, timeout=30)
    indexes = _appended(log, 6, 0.06)
    assert log.lingered == 0
    assert log.batches_committed == 6
    assert [idx for idx, _ in stored_details(audit_engine)] == indexes


async def _until_lingered(log: GroupCommitAuditLog, gap: float, deadline: float) -> int:
    """Bursts of appends ``gap`` apart until a commit has lingered (a slow commit on a busy
    machine can take a whole burst into one batch, leaving nothing to linger for); how many."""
    appended = 0
    while log.lingered == 0 and time.monotonic() < deadline:
        appended += len(await _spaced(log, 12, gap))
    return appended


def test_the_first_entry_after_a_pause_does_not_wait(audit_engine: sa.Engine) -> None:
    # A burst teaches the writer that entries come close together; after a pause longer than
    # four lingers, the next entry is written at once all the same.
    log = GroupCommitAuditLog(engine=audit_engine, linger=0.02, timeout=30)
    log.start()
    try:
        appended = asyncio.run(_until_lingered(log, 0.002, time.monotonic() + 20))
        lingered = log.lingered
        asyncio.run(asyncio.sleep(0.2))
        asyncio.run(log.append(audit_entry(99)))
    finally:
        log.stop()
    assert lingered >= 1
    assert log.lingered == lingered
    assert len(stored_details(audit_engine)) == appended + 1


def test_no_linger_is_the_plain_group_commit(audit_engine: sa.Engine) -> None:
    log = GroupCommitAuditLog(engine=audit_engine, timeout=30)
    indexes = _appended(log, 10, 0.001)
    assert log.lingered == 0
    assert [idx for idx, _ in stored_details(audit_engine)] == indexes
