"""The README's command blocks work as written, in order, as a new user pastes them.

Every ``sh`` block marked ``<!-- readme-test -->`` runs in bash, in a fresh copy of the
repository's policies and examples with the project's ``.venv`` beside them (as in a clone),
against a gateway this test starts there with ``.venv/bin/gateway serve``: real processes, no
``GATEWAY_*`` variable but the port. The one change made to a block: the README's address,
http://127.0.0.1:8080, becomes this gateway's (the test may not take port 8080). At the end
`gateway demo` runs once more: after the README's upload, licence and suspension it still
tells its story.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.launcher import GatewayLauncher
from tests.support import ROOT, free_port

README = ROOT / "README.md"
MARKED = re.compile(r"<!-- readme-test -->\n```sh\n(.*?)```", re.DOTALL)
README_ADDRESS = "http://127.0.0.1:8080"


def readme_blocks() -> list[str]:
    return MARKED.findall(README.read_text(encoding="utf-8"))


def test_the_marked_blocks_hold_no_placeholder() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 6, "the README marks its command blocks"
    for block in blocks:
        # A reader pastes these: no <a USCC>, <licence id> or [--option] left to fill in.
        assert not re.search(r"<[a-z][^>]*>|\[--", block), block


class Clone:
    """A copy of what a clone holds for the README's commands, and its running gateway."""

    def __init__(self, home: Path, keys_dir: Path) -> None:
        self.home = home
        for folder in ("policies", "docs/examples"):
            shutil.copytree(ROOT / folder, home / folder)
        # The session's demo keys, so that the start does not generate them again.
        shutil.copytree(keys_dir, home / "keys")
        (home / ".venv").symlink_to(Path(sys.prefix))
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env["GATEWAY_PORT"] = str(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, block: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.replace(README_ADDRESS, self.url)],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def clone(tmp_path: Path, keys_dir: Path) -> Iterator[Clone]:
    clone = Clone(tmp_path / "clone", keys_dir)
    launcher = GatewayLauncher(
        command=[str(clone.home / ".venv" / "bin" / "gateway"), "serve"],
        env=clone.env,
        cwd=clone.home,
        log_path=tmp_path / "gateway.log",
        base_url=clone.url,
    )
    launcher.start(60)
    try:
        yield clone
    finally:
        launcher.stop()


@pytest.mark.long
def test_every_marked_block_works_as_written_in_order(clone: Clone) -> None:
    outputs = []
    for block in readme_blocks():
        done = clone.run(block)
        assert done.returncode == 0, (
            f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        outputs.append(done.stdout)
    out = "\n".join(outputs)
    # What the blocks are there to show, seen in what they printed.
    assert "UNEXPECTED" not in out
    assert "91430602MA4L3XXX0H" in out  # gateway id uscc
    assert "rows accepted: 11" in out
    assert "rows rejected: 1" in out
    assert (clone.home / "rejected.csv").read_text(encoding="utf-8").count("\n") == 2
    assert '"status": "失业"' in out  # the uploaded register, read by 区民政局
    assert "verdict: valid" in out  # the README's licence, online and offline
    assert "valid -> suspended" in out
    # The quarterly report: the demo's history, the checkpoint it rests on, both forms verified.
    assert re.search(r"demo history written: [1-9]\d* audit entries", out)
    assert "数据共享“免提交”工作情况通报  2026Q4" in out
    assert re.search(r"计算依据: 已签名检查点 size [1-9]\d* root [0-9a-f]{64}", out)
    assert out.count("OK: the report matches the entries") == 2
    for name in ("report.json", "public.json", "report.csv", "report.xlsx"):
        assert (clone.home / name).stat().st_size > 0, name
    # The demo again, after all that: the same story, nothing unexpected.
    again = clone.run(".venv/bin/gateway demo")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "UNEXPECTED" not in again.stdout
