"""Shared fixtures: gateways of both setups (embedded; PostgreSQL + Redis), started once per
session — in process (the behaviour tier) and as real subprocesses (the smoke tier)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

from gateway.app.bootstrap import initialise
from gateway.settings import load_settings
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from tests.cluster import RedisCluster, private_redis_cluster
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import GatewayProcess, copy_policies, postgres_database, running_gateway

# ``pytest --hypothesis-profile=fuzz`` runs the property tests 50 times longer (outside the
# suite: the closing notes report what such runs tried and found).
settings.register_profile("fuzz", max_examples=5_000, deadline=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated gateway database on real SQLite, then on real PostgreSQL (a scratch
    database of the local server), for tests that drive the audit writer directly."""
    if request.param == "sqlite":
        e = create_database_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}", busy_timeout_ms=2000)
        migrations.upgrade(e)
        yield e
        e.dispose()
        return
    with postgres_database() as url:
        e = create_database_engine(url, busy_timeout_ms=2000)
        migrations.upgrade(e)
        yield e
        e.dispose()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A fresh, editable copy of the demo district's policy files."""
    return copy_policies(tmp_path / "policies")


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One set of demo keys for the whole session (key generation is the slow part)."""
    root = tmp_path_factory.mktemp("district")
    settings = load_settings(
        {}, overrides={"data_dir": str(root / "data"), "keys_dir": str(root / "keys")}
    )
    initialise(settings, demo=True)
    return root / "keys"


@pytest.fixture(scope="session")
def embedded_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """The embedded default: SQLite file and in-process caches."""
    with running_gateway(tmp_path_factory.mktemp("embedded"), keys_dir, server=False) as gw:
        yield gw


@pytest.fixture(scope="session")
def server_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """The server setup: PostgreSQL and Redis, two worker processes."""
    with running_gateway(tmp_path_factory.mktemp("server"), keys_dir, server=True) as gw:
        yield gw


@pytest.fixture(scope="session")
def embedded_app(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[InProcessGateway]:
    """The embedded default in process: SQLite file, in-process caches, the test client."""
    with in_process_gateway(tmp_path_factory.mktemp("embedded-app"), keys_dir) as gw:
        yield gw


@pytest.fixture(scope="session")
def server_app(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[InProcessGateway]:
    """The server setup's stores in process: a fresh PostgreSQL database and Redis."""
    with in_process_gateway(tmp_path_factory.mktemp("server-app"), keys_dir, server=True) as gw:
        yield gw


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of the session's own: three masters on free ports (tests.cluster)."""
    with private_redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_app(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, redis_cluster: RedisCluster
) -> Iterator[InProcessGateway]:
    """The server setup on a Redis Cluster, in process: a fresh PostgreSQL database and the
    session's cluster (its client told of the first node only: it finds the others)."""
    with in_process_gateway(
        tmp_path_factory.mktemp("cluster-app"),
        keys_dir,
        server=True,
        redis_url=redis_cluster.url(0),
    ) as gw:
        yield gw


_SETUP_FIXTURES = {"embedded": "embedded_app", "server": "server_app", "cluster": "cluster_app"}


@pytest.fixture(params=["embedded", "server"])
def gateway(request: pytest.FixtureRequest) -> InProcessGateway:
    """Each behaviour test runs against both setups' stores, in process (the subprocess
    gateways above are the smoke tier: workers, signals, the command line); those marked
    ``tests.inprocess.ALSO_ON_CLUSTER`` on the server setup with a Redis Cluster too."""
    gw: InProcessGateway = request.getfixturevalue(_SETUP_FIXTURES[request.param])
    return gw


@pytest.fixture(params=["embedded", "server"])
def served_gateway(request: pytest.FixtureRequest) -> GatewayProcess:
    """The smoke tier: a real ``gateway serve`` of each setup (sockets, chunked streams,
    workers, its environment for the command line)."""
    fixture = "embedded_gateway" if request.param == "embedded" else "server_gateway"
    gw: GatewayProcess = request.getfixturevalue(fixture)
    return gw


#: The session's subprocess gateways (the smoke tier's shared ones).
_SESSION_GATEWAYS = {"embedded_gateway", "server_gateway", "served_gateway"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, spread over the workers: xdist's work-stealing scheduler hands each
    worker a contiguous share of the run, so each ``long`` test is put at the head of a
    share (a long test left for the end would keep one core busy while the other idles).
    The browser tests follow the long ones of the last share, together: they share one
    Chromium and one console gateway per worker, which then start once, not on every worker
    (stealing takes from the end of a share, so they stay where they are). Likewise the
    tests of the session's subprocess gateways lead the first share, so that those gateways
    (four processes with the server setup's two workers) start on one worker, not on each."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    browser_dir = Path(__file__).parent / "browser"
    browser = [i for i in items if browser_dir in Path(str(i.path)).parents]
    long = [i for i in items if i.get_closest_marker("long") and i not in browser]
    if not long and not browser:
        return
    placed = {id(i) for i in (*long, *browser)}
    smoke = [
        i
        for i in items
        if id(i) not in placed and _SESSION_GATEWAYS & set(getattr(i, "fixturenames", ()))
    ]
    placed |= {id(i) for i in smoke}
    rest = [i for i in items if id(i) not in placed]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for n, item in enumerate(long):
        shares[n % workers].append(item)
    shares[0].extend(smoke)
    shares[-1].extend(browser)
    size = -(-len(items) // workers)  # the scheduler's shares, rounded up
    ordered: list[pytest.Item] = []
    for share in shares:
        take = max(0, size - len(share))
        ordered.extend(share + rest[:take])
        rest = rest[take:]
    items[:] = ordered + rest
