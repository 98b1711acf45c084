"""A request that ends in an unexpected exception is on the record before its 500 goes out.

The gateway's own app (the real plugin: routes, problem details, the audit hook) gets one
extra route that fails the way a bug would; the entry is read back from the database.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar, Request, post
from litestar.testing import TestClient

from gateway.app.bootstrap import initialise
from gateway.app.factory import GatewayPlugin
from gateway.http.problems import AUDIT_CONTEXT
from gateway.settings import Settings, load_settings
from tests.support import REDIS_URL, postgres_database, redis_reachable, unavailable


class _Boom(RuntimeError):
    pass


@post("/test/boom", status_code=200)
async def boom(request: Request[Any, Any, Any]) -> None:
    # What a route leaves for the entry before it fails.
    request.state[AUDIT_CONTEXT] = {"request_hash": "cd" * 32, "department": "tax"}
    raise _Boom("secret text that must not reach the caller")


@pytest.fixture(params=["embedded", "server"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, keys_dir: Path) -> Iterator[Settings]:
    """The embedded setup, or the server setup on a fresh PostgreSQL database and Redis."""
    overrides = {"data_dir": str(tmp_path / "data"), "keys_dir": str(keys_dir)}
    with contextlib.ExitStack() as stack:
        if request.param == "server":
            why = redis_reachable()
            if why:
                unavailable("Redis", why)
            overrides |= {
                "database_url": stack.enter_context(postgres_database()),
                "redis_url": REDIS_URL,
                "redis_key_prefix": f"t{secrets.token_hex(4)}",
            }
        s = load_settings({}, overrides=overrides)
        initialise(s, demo=False)
        yield s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Litestar]]:
    app = Litestar(plugins=[GatewayPlugin(settings)], route_handlers=[boom])
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _entry(settings: Settings, index: int) -> dict[str, Any]:
    engine = sa.create_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(sa.text("SELECT * FROM audit_entries WHERE idx = :i"), {"i": index})
                .mappings()
                .one()
            )
            return dict(row)
    finally:
        engine.dispose()


def test_an_unexpected_exception_is_recorded_before_the_opaque_500(
    client: TestClient[Litestar], settings: Settings
) -> None:
    response = client.post("/test/boom", content=b"x")
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "urn:yiwang:problem:internal"
    assert "secret" not in response.text
    assert "_Boom" not in response.text
    entry = _entry(settings, body["audit_index"])
    assert entry["event"] == "request:internal-error"
    assert entry["reason_code"] == "internal-error"
    assert entry["decision"] == "refused"
    assert entry["department"] == "tax"
    assert entry["request_hash"] == "cd" * 32
    # The exception's type and the route's template — not its text, not the raw path.
    assert entry["detail"] == "_Boom in POST /test/boom"


def test_when_the_failure_cannot_be_recorded_the_answer_is_503(
    client: TestClient[Litestar],
) -> None:
    runtime = client.app.state.runtime
    runtime.audit.stop()  # the audit writer is gone: nothing can be made durable
    response = client.post("/test/boom", content=b"x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "secret" not in response.text
