"""The policy watcher takes a changed file set only once it is whole.

An administrator's editor or script rewrites a file in place: truncate, then write. A grants
file cut short is still valid TOML (fewer grants), so a watcher that read it in between would
put a set in force that refuses what both the old and the new set allow. Real files in a
temporary directory, the embedded setup's store, the real parser.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from gateway.core.policy import PolicySet, load_policy_set
from gateway.policy.store import InProcessPolicyStore
from gateway.policy.watcher import PolicyWatcher
from tests.support import copy_policies

GRANTS = "grants.toml"


def _watcher(directory: Path, in_force: list[PolicySet], refused: list[list[str]]) -> PolicyWatcher:
    async def on_change(_old: PolicySet, _new: PolicySet) -> None:
        return None

    async def on_refused(problems: list[str]) -> None:
        refused.append(problems)

    return PolicyWatcher(
        directory=directory,
        store=InProcessPolicyStore(),
        apply=in_force.append,
        current=lambda: in_force[-1],
        on_change=on_change,
        on_refused=on_refused,
        settle=0.2,
    )


def _first_grant_cut(text: str) -> str:
    """The file as it stands half-written: everything before its second ``[[grant]]``."""
    second = text.index("[[grant]]", text.index("[[grant]]") + 1)
    return text[:second]


def test_a_file_still_being_written_is_not_taken(tmp_path: Path) -> None:
    directory = copy_policies(tmp_path / "policies")
    original = (directory / GRANTS).read_text(encoding="utf-8")
    start = load_policy_set(directory)
    in_force: list[PolicySet] = [start]
    refused: list[list[str]] = []
    watcher = _watcher(directory, in_force, refused)
    final = original.replace('id = "', 'id = "x-', 1)  # a valid change of the first grant's id

    def write_in_two_steps() -> None:
        (directory / GRANTS).write_text(_first_grant_cut(final), encoding="utf-8")
        time.sleep(0.05)  # inside the settle time: the watcher must not read the cut file
        (directory / GRANTS).write_text(final, encoding="utf-8")

    async def run() -> None:
        writer = threading.Thread(target=write_in_two_steps)
        writer.start()
        await asyncio.sleep(0.01)  # the first write is on disk, the second not yet
        await watcher.tick()
        writer.join()
        await watcher.tick()  # the next look, the file whole and unchanged

    asyncio.run(run())
    versions = [p.version for p in in_force]
    assert refused == []
    assert len(versions) == 2, versions  # the set at start, then the whole new file only
    assert in_force[-1].version == load_policy_set(directory).version != start.version


def test_a_file_that_is_not_utf8_is_refused_and_the_watcher_keeps_going(tmp_path: Path) -> None:
    directory = copy_policies(tmp_path / "policies")
    start = load_policy_set(directory)
    in_force: list[PolicySet] = [start]
    refused: list[list[str]] = []
    watcher = _watcher(directory, in_force, refused)
    (directory / GRANTS).write_bytes(b"# \xe6\x88 cut inside a character\n")
    asyncio.run(watcher.tick())
    assert [p.version for p in in_force] == [start.version]
    assert len(refused) == 1
    assert "is not UTF-8" in refused[0][0]
