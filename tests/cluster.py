"""A real Redis Cluster of the test's own: three masters (no replicas) from the machine's
``redis-server`` on free ports of 127.0.0.1, in a temporary directory, formed with
``redis-cli --cluster create`` — never the shared Redis on 6379.

No persistence: a node killed and started again keeps its place in the cluster (its
``nodes.conf``, which Redis Cluster writes whatever the persistence settings) but comes back
empty, like a node that lost its memory. Where the binaries are missing the test skips
locally and fails under ``CI=true``, like every other store the suite needs.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support import free_port, unavailable

__all__ = ["ClusterNode", "RedisCluster", "private_redis_cluster"]

#: How long a node may not answer before the others mark it failed. Short, so that a test of
#: a lost node sees the cluster go down (and come back) within a second or two.
NODE_TIMEOUT_MS = 1000


@dataclass
class ClusterNode:
    """One master of the cluster: its own redis-server process and directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    # Named, not left to Redis's default (port + 10000), which would be past 65535 for
    # most of the ports the system hands out.
    bus_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ClusterNode:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                *(str(binary), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.directory), "--save", "", "--appendonly", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-port", str(self.bus_port)),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), self.client(timeout=0.2) as client:
                if client.ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A plain (not cluster) client of this node alone."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout)

    def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as this node sees it."""
        with self.client() as client:
            reply: dict[str, str] = client.execute_command("CLUSTER INFO")
        return reply

    def keys(self, pattern: str) -> list[str]:
        """The keys this node holds that match ``pattern``."""
        with self.client() as client:
            return sorted(k.decode() for k in client.scan_iter(match=pattern, count=1000))

    def flush(self) -> None:
        """Forget everything this node holds (its slots stay its own)."""
        with self.client() as client:
            client.flushall()

    def freeze(self) -> None:
        """SIGSTOP: its connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


@dataclass
class RedisCluster:
    """Three masters covering the 16384 slots between them."""

    root: Path
    nodes: list[ClusterNode] = field(default_factory=list)

    def url(self, *seeds: int) -> str:
        """The gateway's ``redis+cluster://`` URL naming the nodes at ``seeds`` (indexes; all
        of them by default) as the ones the client first asks for the cluster's layout."""
        chosen = [self.nodes[i] for i in seeds] if seeds else self.nodes
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in chosen)

    def start(self) -> RedisCluster:
        if shutil.which("redis-cli") is None:
            unavailable("redis-cli", "not installed")
        self.nodes = [ClusterNode(self.root / f"node-{i}").start() for i in range(3)]
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 20) -> None:
        """Until every node says ``cluster_state:ok`` and knows all three masters."""
        self.wait_state("ok", among=self.nodes, timeout=timeout)

    def wait_state(self, state: str, *, among: list[ClusterNode], timeout: float = 20) -> None:
        """Until each node of ``among`` says ``cluster_state:<state>`` (``ok``, ``fail``)
        while knowing all three masters."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                infos = [n.info() for n in among]
                if all(
                    i["cluster_state"] == state and i["cluster_known_nodes"] == "3" for i in infos
                ):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the Redis Cluster did not reach cluster_state:{state}")

    def node_of(self, key: str) -> ClusterNode:
        """The master serving ``key``'s hash slot, by the cluster's own slot table."""
        with self.nodes[0].client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            # Each entry: first slot, last slot, then the master's [host, port, id, ...].
            ranges = client.execute_command("CLUSTER SLOTS")
        for low, high, master, *_ in ranges:
            if int(low) <= slot <= int(high):
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(f"no master serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def private_redis_cluster() -> Iterator[RedisCluster]:
    root = Path(tempfile.mkdtemp(prefix="yiwang-redis-cluster-"))
    cluster = RedisCluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
