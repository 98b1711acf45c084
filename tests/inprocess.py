"""In-process gateways and services: the fast tier of the suite.

:func:`in_process_gateway` builds the whole app with :func:`gateway.app.factory.create_app`
on a migrated temporary SQLite (or a fresh PostgreSQL database) with the in-process guard,
and serves it through Litestar's test client: real HTTP semantics, real crypto, real
database, no subprocess and no port. :class:`InProcessGateway` offers what
:class:`tests.support.GatewayProcess` offers (a signing client per department, the database
behind it), plus the running services themselves for tests that exercise one directly.

Subprocess gateways stay for what only a process can show (workers, kills, restarts, the
``gateway`` command): the smoke tier.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from gateway.app.bootstrap import initialise
from gateway.app.factory import create_app
from gateway.app.runtime import GatewayRuntime
from gateway.sdk import GatewayClient, load_private_jwk
from gateway.settings import Settings, load_settings
from tests.support import (
    REDIS_URL,
    ROOT,
    GatewayProcess,
    postgres_database,
    redis_reachable,
    unavailable,
)

__all__ = [
    "ALSO_ON_CLUSTER",
    "Gateway",
    "InProcessGateway",
    "district_settings",
    "in_process_gateway",
]

#: The test client's base URL (no socket behind it).
BASE_URL = "http://gateway.test"


def district_settings(
    data_dir: Path, keys_dir: Path, *, database_url: str | None = None, **overrides: Any
) -> Settings:
    """Settings of the demo district on ``data_dir`` (SQLite there unless ``database_url``),
    in-process caches, none of the caller's ``GATEWAY_*`` variables."""
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "keys_dir": str(keys_dir),
        "policies_dir": str(ROOT / "policies"),
        "log_level": "warning",
        **overrides,
    }
    if database_url is not None:
        values["database_url"] = database_url
    return load_settings({}, overrides=values)


@dataclass
class InProcessGateway:
    """A gateway app served in this process by Litestar's test client."""

    settings: Settings
    http: TestClient[Any]
    url: str = BASE_URL  # what absolute URLs of this gateway start with (no socket behind it)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def keys_dir(self) -> Path:
        return Path(self.settings.keys_dir)

    @property
    def runtime(self) -> GatewayRuntime:
        """The services the app runs on (built by its lifespan)."""
        runtime: GatewayRuntime = self.http.app.state.runtime
        return runtime

    @property
    def database_url(self) -> str:
        return self.settings.effective_database_url

    def client(self, department: str) -> GatewayClient:
        """A client signing as ``department``, sending through the test client."""
        key = Path(self.settings.keys_dir) / "departments" / f"{department}.private.jwk.json"
        return GatewayClient(
            base_url=BASE_URL,
            department=department,
            key=load_private_jwk(key),
            audience=self.settings.gateway_id,
            http=self.http,
        )

    def audit_entry(self, index: int) -> Mapping[str, Any]:
        """One audit entry straight from the database (not through the gateway)."""
        (row,) = self.audit_rows("idx = :i", i=index)
        return row

    def audit_count(self) -> int:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
        finally:
            engine.dispose()

    def audit_rows(self, where: str = "1=1", **params: Any) -> list[Mapping[str, Any]]:
        """Audit entries straight from the database (not through the gateway), by index."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(f"SELECT * FROM audit_entries WHERE {where} ORDER BY idx"), params
                )
                return [dict(r) for r in rows.mappings()]
        finally:
            engine.dispose()


@contextlib.contextmanager
def in_process_gateway(
    data_dir: Path,
    keys_dir: Path,
    *,
    server: bool = False,
    redis_url: str | None = None,
    **overrides: Any,
) -> Iterator[InProcessGateway]:
    """A started in-process gateway of the demo district (initialised like ``gateway init``):
    SQLite in ``data_dir`` and in-process caches, or (``server``) a fresh PostgreSQL database
    (dropped after) and Redis under a key prefix of its own — the shared Redis, or the one
    ``redis_url`` names (a Redis Cluster of the test's own: ``tests.cluster``)."""
    with contextlib.ExitStack() as stack:
        url = None
        if server:
            why = None if redis_url else redis_reachable()
            if why:
                unavailable("Redis", why)
            url = stack.enter_context(postgres_database())
            overrides = {
                "redis_url": redis_url or REDIS_URL,
                "redis_key_prefix": f"t{secrets.token_hex(4)}",
                **overrides,
            }
        settings = district_settings(data_dir, keys_dir, database_url=url, **overrides)
        initialise(settings, demo=True)
        http = stack.enter_context(TestClient(create_app(settings), base_url=BASE_URL))
        yield InProcessGateway(settings=settings, http=http)


#: Either kind of gateway: what a behaviour test that runs in both tiers is given.
Gateway = GatewayProcess | InProcessGateway


#: Runs a behaviour test of the ``gateway`` fixture on a Redis Cluster as well (the
#: ``cluster_app`` fixture): for the tests that exercise what lives in Redis — replay, rate
#: limits, quotas, closed cases, the lookup cache, readiness — and only those, so that the
#: suite is not run a third time over.
ALSO_ON_CLUSTER = pytest.mark.parametrize(
    "gateway", ["embedded", "server", "cluster"], indirect=True
)


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_log_in(gw: InProcessGateway, username: str, password: str) -> int:
    """Log in to the console through its form (its CSRF cookie and token), as a browser
    would; the answer's status (303 when the log-in succeeded)."""
    gw.http.cookies.clear()
    form = gw.http.get("/console/login")
    token = _CSRF.search(form.text)
    assert token is not None
    answer = gw.http.post(
        "/console/login",
        data={"csrf_token": token.group(1), "username": username, "password": password},
        follow_redirects=False,
    )
    return answer.status_code
