"""Start a real gateway process and wait until it answers: the one launcher the benchmark
and the test suite's smoke tier share."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.sdk import http_client

__all__ = ["GatewayLauncher", "LaunchError", "problem_lines"]


def problem_lines(log_path: Path) -> list[str]:
    """Lines of a gateway's log that look like errors or warnings."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    marks = ("error", "traceback", "exception", "warning", "critical")
    return [ln for ln in text.splitlines() if any(m in ln.lower() for m in marks)]


class LaunchError(RuntimeError):
    """The gateway exited while starting, or did not answer in time (its log's tail says why)."""


@dataclass
class GatewayLauncher:
    """One gateway process: ``command`` run in ``cwd`` with exactly ``env``, its output in
    ``log_path``; ready when ``base_url + ready_path`` answers 200."""

    command: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    base_url: str
    ready_path: str = "/healthz"
    new_session: bool = False  # its own process group (the benchmark stops it by pid)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until it is ready, or raise :class:`LaunchError`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(self.command),
                cwd=self.cwd,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout
        with http_client(self.base_url, timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    self.proc = None
                    raise LaunchError(
                        f"the gateway exited with {code} while starting:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.ready_path).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    # Why it said it was not ready (a key whose private half is elsewhere, a
                    # store that does not answer) is in its errors, not in the last lines,
                    # which are its answers to the readiness probe.
                    problems = "\n".join(problem_lines(self.log_path)[:10])
                    said = f"its errors and warnings:\n{problems}\nits log ends:\n"
                    raise LaunchError(
                        f"the gateway was not ready after {timeout:.0f} s:\n"
                        + (said if problems else "")
                        + self.log_tail()
                    )
                time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 10.0) -> int | None:
        """Send ``sig``, then SIGKILL after ``timeout`` s; the exit code (None if not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
