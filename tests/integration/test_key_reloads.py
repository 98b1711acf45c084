"""The key ring is reloaded one reload at a time: a reload begun before a change (the
watcher's, once a second) never finishes after the reload that change forced, so it never
puts the older ring back — a revoked key verifying again, a new key refused."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.app.bootstrap import initialise
from gateway.audit import GroupCommitAuditLog
from gateway.core.keyring import GatewaySigner, KeyRing, KeyStatus
from gateway.core.tokens import RequestTokenVerifier
from gateway.registry import keystore
from gateway.registry.keys import KeyAdministration
from gateway.registry.store import load_keyring
from gateway.storage.database import create_database_engine
from tests.inprocess import district_settings


@pytest.fixture
def district(tmp_path: Path, keys_dir: Path) -> Iterator[tuple[sa.Engine, Path]]:
    """The demo district's database and a copy of the session's keys."""
    keys = tmp_path / "keys"
    shutil.copytree(keys_dir, keys)
    settings = district_settings(tmp_path / "data", keys)
    initialise(settings, demo=True)
    engine = create_database_engine(settings.effective_database_url, busy_timeout_ms=5000)
    try:
        yield engine, keys
    finally:
        engine.dispose()


def test_a_reload_begun_before_a_revocation_never_puts_the_revoked_key_back(
    district: tuple[sa.Engine, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, keys = district
    verifier = RequestTokenVerifier(keyring=KeyRing([]), audience="g")
    audit = GroupCommitAuditLog(engine=engine)
    administration = KeyAdministration(
        engine=engine,
        verifier=verifier,
        audit=audit,
        signer=GatewaySigner(private_key=keystore.ensure_gateway_key(keys), issuer="g"),
        keys_dir=keys,
    )
    # The first reload after the ring is read (the watcher's) is held until it is let go:
    # the revocation and its own reload happen meanwhile. The ring is read for real.
    read_first, let_go = threading.Event(), threading.Event()
    loads: list[str] = []

    def held_load(e: sa.Engine) -> KeyRing:
        ring = load_keyring(e)
        loads.append(threading.current_thread().name)
        if len(loads) == 2:  # the watcher's (the first is the start's)
            read_first.set()
            let_go.wait(10)
        return ring

    monkeypatch.setattr("gateway.registry.keys.load_keyring", held_load)

    async def run() -> str:
        await administration.refresh(force=True)
        key = verifier.keyring.for_department("market")[0]
        assert key.status is KeyStatus.ACTIVE
        department, kid = key.department, key.kid
        watcher = asyncio.ensure_future(administration.refresh(force=True))
        await asyncio.to_thread(read_first.wait, 10)  # it has read the ring before the change
        revocation = asyncio.ensure_future(
            administration.revoke(
                department=department, kid=kid, reason="泄露", by="admin", now=time.time()
            )
        )
        # Long enough for the revocation and its reload to finish, were they not to wait.
        await asyncio.sleep(0.3)
        let_go.set()
        await asyncio.gather(watcher, revocation)
        return kid

    audit.start()
    try:
        kid = asyncio.run(run())
    finally:
        audit.stop()
    assert len(loads) == 3  # start, watcher, the revocation's: each read the ring
    key = verifier.keyring.get(kid)
    assert key is not None
    assert key.status is KeyStatus.REVOKED
