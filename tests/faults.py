"""Stores a test may kill, freeze, flush and restart: its own redis-server and its own
PostgreSQL cluster on free ports of 127.0.0.1 — never the shared ones on 6379 and 5432.

A PostgreSQL cluster needs an unprivileged user to run as (initdb refuses root): ``postgres``
when the tests run as root, the current user otherwise. Where the binaries are missing the
test skips locally and fails under ``CI=true``, like every other store the suite needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support import free_port, unavailable

__all__ = ["PostgresCluster", "RedisServer", "private_postgres", "private_redis"]


@dataclass
class RedisServer:
    """A redis-server of the test's own (no persistence: a restart comes back empty)."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "not installed")
        self.proc = subprocess.Popen(
            [
                *(str(binary), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None

    def restart_empty(self) -> None:
        """Kill it and start a new one on the same port: everything it held is gone."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/initdb")) if root.exists() else []
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster of the test's own, in a temporary directory."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        bin_dir = _pg_bin()
        assert bin_dir is not None
        command = [str(bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> PostgresCluster:
        if _pg_bin() is None:
            unavailable("PostgreSQL binaries", "initdb not found")
        data = self.root / "data"
        if not data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres")
                self.root.parent.chmod(0o755)
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-N")
        self._run(
            "pg_ctl",
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.root / "log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on",
            "start",
        )
        return self

    def _postmaster(self) -> psutil.Process:
        pid_file = self.root / "data" / "postmaster.pid"
        return psutil.Process(int(pid_file.read_text().split()[0]))

    def _processes(self) -> list[psutil.Process]:
        postmaster = self._postmaster()
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        """SIGSTOP the server and every backend: connections stay open, nothing answers.

        The postmaster first, so that it forks no backend after the children are listed (one
        forked between a listing and the postmaster's stop would go on answering); then the
        children, listed again until a listing finds none that is not stopped yet."""
        postmaster = self._postmaster()
        postmaster.send_signal(signal.SIGSTOP)
        stopped: set[int] = {postmaster.pid}
        while fresh := [p for p in postmaster.children(recursive=True) if p.pid not in stopped]:
            for p in fresh:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGSTOP)
                stopped.add(p.pid)

    def thaw(self) -> None:
        for p in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server and its backends (it recovers from its WAL at the next start)."""
        with contextlib.suppress(FileNotFoundError, psutil.NoSuchProcess):
            processes = self._processes()
            for p in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGCONT)
                    p.kill()
            psutil.wait_procs(processes, timeout=5)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.thaw()
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # another user. In the temporary directory the suite was given (``make test``: a tmpfs).
    root = Path(tempfile.mkdtemp(prefix="yiwang-pg-"))
    cluster = PostgresCluster(root / "cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
