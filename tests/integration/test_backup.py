"""``gateway backup`` and ``gateway restore`` on both setups, with real parts: a gateway that
serves lookups over real HTTP while it is backed up (SQLite's online backup beside the live
writer; ``pg_dump`` of a fresh PostgreSQL database), a restore into a new folder or database,
``gateway audit verify`` and ``gateway serve`` on what was restored, and an outside witness
that followed the original and sees the restored log as consistent.

The original gateways run in this process behind uvicorn (a real socket, no subprocess); the
one ``gateway serve`` per setup is the restored gateway, which is what must be shown to
serve. The commands run in process (``gateway_command``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
import uvicorn

from gateway.app.bootstrap import initialise
from gateway.app.factory import create_app
from gateway.backup.manifest import MANIFEST_NAME, Manifest, decode_manifest
from gateway.backup.service import BackupFailed, find_pg_tool
from gateway.demo.population import people
from gateway.registry.keystore import ensure_gateway_key
from gateway.sdk import GatewayClient, http_client
from gateway.settings import Settings
from tests.inprocess import district_settings
from tests.support import (
    REDIS_URL,
    CommandResult,
    GatewayProcess,
    free_port,
    gateway_command,
    postgres_database,
    redis_reachable,
    unavailable,
)

#: How long a test waits at most for what must happen within a fraction of it.
PATIENCE = 30.0


@dataclass
class Original:
    """A gateway serving over real HTTP in this process, as the operator's running one."""

    setup: str
    settings: Settings
    url: str
    env: dict[str, str]
    stack: contextlib.ExitStack = field(repr=False)

    def client(self, department: str) -> GatewayClient:
        key = Path(self.settings.keys_dir) / "departments" / f"{department}.private.jwk.json"
        return GatewayClient.from_key_file(base_url=self.url, department=department, key_path=key)

    def command(self, *args: str, **env: str) -> CommandResult:
        return gateway_command(*args, env={**self.env, **env})

    def command_in_process_of_its_own(self, *args: str) -> CommandResult:
        return gateway_command(*args, env=self.env, process=True)

    def new_target(self, root: Path) -> dict[str, str]:
        """The environment of a new, empty gateway of the same setup: a new folder (and,
        on the server setup, a new empty database, dropped at the module's end)."""
        env = {
            "GATEWAY_DATA_DIR": str(root / "data"),
            "GATEWAY_KEYS_DIR": str(root / "keys"),
            "GATEWAY_POLICIES_DIR": str(root / "policies"),
        }
        if self.setup == "server":
            env["GATEWAY_DATABASE_URL"] = self.stack.enter_context(postgres_database())
        return env


def _lookup(client: GatewayClient, n: int) -> int:
    answer = client.lookup(
        resource="resident-identity",
        subject=("resident-id", people()[n % 20].id_number),
        fields=["name"],
        item="000111003000",
        case=f"BK-{n}",
        reason="备份测试",
        operator="clerk-bk",
    )
    return answer.audit_index


@contextlib.contextmanager
def _served(settings: Settings) -> Iterator[str]:
    """The whole app behind uvicorn on a free port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert thread.is_alive(), "the gateway did not start"
        assert time.monotonic() < deadline, "the gateway did not start in time"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(PATIENCE)


@pytest.fixture(scope="module", params=["embedded", "server"])
def original(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[Original]:
    setup = str(request.param)
    root = tmp_path_factory.mktemp(f"original-{setup}")
    with contextlib.ExitStack() as stack:
        overrides: dict[str, str] = {}
        database_url = None
        if setup == "server":
            why = redis_reachable()
            if why:
                unavailable("Redis", why)
            database_url = stack.enter_context(postgres_database())
            overrides = {"redis_url": REDIS_URL, "redis_key_prefix": f"t{secrets.token_hex(4)}"}
        settings = district_settings(
            root / "data",
            keys_dir,
            database_url=database_url,
            audit_checkpoint_seconds=0.2,
            **overrides,
        )
        initialise(settings, demo=True)
        url = stack.enter_context(_served(settings))
        env = {
            "GATEWAY_DATA_DIR": settings.data_dir,
            "GATEWAY_KEYS_DIR": settings.keys_dir,
            "GATEWAY_POLICIES_DIR": settings.policies_dir,
            **({"GATEWAY_DATABASE_URL": database_url} if database_url else {}),
        }
        yield Original(setup=setup, settings=settings, url=url, env=env, stack=stack)


@dataclass
class Backed:
    """A backup with secrets made while the original served lookups, and what was seen."""

    directory: Path
    manifest: Manifest
    result: CommandResult
    witness_before: Path  # a witness's state from before the backup
    witness_after: Path  # … and from after more lookups than the backup holds
    lookups_during: int


def _wait_for_checkpoint(original: Original, size: int) -> None:
    """Until the original's latest signed checkpoint covers ``size`` entries."""
    deadline = time.monotonic() + PATIENCE
    with http_client(original.url, timeout=10) as http:
        while True:
            answer = http.get("/v1/audit/checkpoint")
            if answer.status_code == 200:
                claims = jwt.decode(answer.text, options={"verify_signature": False})
                if int(claims["size"]) >= size:
                    return
            assert time.monotonic() < deadline, "no checkpoint covered the log"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def backed(original: Original, tmp_path_factory: pytest.TempPathFactory) -> Backed:
    root = tmp_path_factory.mktemp(f"backed-{original.setup}")
    with original.client("hrss") as c:
        last = max(_lookup(c, n) for n in range(5))
    _wait_for_checkpoint(original, last)
    witness_before = root / "witness-before.json"
    seen = original.command("audit", "witness", original.url, "--state", str(witness_before))
    assert seen.returncode == 0, seen.stderr
    assert "first checkpoint" in seen.stdout

    # Lookups go on, from another thread, for as long as the backup runs.
    done: list[int] = []
    stop = threading.Event()

    def keep_looking_up() -> None:
        with original.client("hrss") as c:
            n = 100
            while not stop.is_set():
                done.append(_lookup(c, n))
                n += 1

    looker = threading.Thread(target=keep_looking_up)
    looker.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while len(done) < 3:  # the writer is busy before the copy starts
            assert looker.is_alive(), "the lookups failed"
            assert time.monotonic() < deadline, "no lookup was answered"
            time.sleep(0.01)
        before = len(done)
        directory = root / "backup"
        # In a process of its own, as an operator runs it beside the serving gateway: in this
        # process its Python work would hold the interpreter's lock against the gateway's
        # threads, and the copy can take less time than a lookup's thread handovers then do.
        result = original.command_in_process_of_its_own("backup", str(directory), "--with-secrets")
        during = len(done) - before
    finally:
        stop.set()
        looker.join(PATIENCE)
    assert result.returncode == 0, result.stderr
    manifest = decode_manifest((directory / MANIFEST_NAME).read_bytes())

    with original.client("hrss") as c:
        last = max(_lookup(c, n) for n in range(200, 203))
    _wait_for_checkpoint(original, last)
    witness_after = root / "witness-after.json"
    shutil.copy(witness_before, witness_after)
    grown = original.command("audit", "witness", original.url, "--state", str(witness_after))
    assert grown.returncode == 0, grown.stdout + grown.stderr
    return Backed(directory, manifest, result, witness_before, witness_after, during)


def _restored(original: Original, backed: Backed, root: Path, *args: str) -> dict[str, str]:
    env = original.new_target(root)
    done = gateway_command("restore", str(backed.directory), *args, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "its audit tree is the backup's" in done.stdout
    return env


def test_a_backup_made_while_serving_is_a_consistent_copy(backed: Backed) -> None:
    audit = backed.manifest.audit
    # Lookups were answered while the copy was made, and the copy is of one moment: its own
    # tree holds every entry up to its size, checked by the restore below and verify there.
    assert backed.lookups_during > 0
    assert audit.tree_size >= 5
    assert audit.checkpoint_size is not None
    assert audit.checkpoint_size <= audit.tree_size
    assert backed.manifest.holds_secrets


def test_with_secrets_every_file_is_owner_only_and_the_backup_warns(backed: Backed) -> None:
    assert "this backup holds SECRETS" in backed.result.stderr
    assert (backed.directory.stat().st_mode & 0o777) == 0o700
    paths = list(backed.directory.rglob("*"))
    assert any(p.name == "signing.private.pem" for p in paths)
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_the_restored_gateway_verifies_serves_and_is_consistent_for_a_witness(
    original: Original, backed: Backed, tmp_path: Path
) -> None:
    env = _restored(original, backed, tmp_path)
    verified = gateway_command("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout
    size = backed.manifest.audit.tree_size
    assert f"entries {size}, tree {size} leaves" in verified.stdout

    serve_env = (
        {"GATEWAY_DATABASE_URL": env["GATEWAY_DATABASE_URL"]} if original.setup == "server" else {}
    )
    if original.setup == "server":
        serve_env |= {
            "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_REDIS_KEY_PREFIX": f"t{secrets.token_hex(4)}",
        }
    restored = GatewayProcess(
        data_dir=Path(env["GATEWAY_DATA_DIR"]),
        keys_dir=Path(env["GATEWAY_KEYS_DIR"]),
        env={**serve_env, "GATEWAY_POLICIES_DIR": env["GATEWAY_POLICIES_DIR"]},
    )
    restored.start()
    try:
        assert restored.http.get("/readyz").status_code == 200
        # It answers with the restored keys, and its log goes on after the backup's entries.
        with GatewayClient.from_key_file(
            base_url=restored.url,
            department="hrss",
            key_path=Path(env["GATEWAY_KEYS_DIR"]) / "departments" / "hrss.private.jwk.json",
        ) as c:
            assert _lookup(c, 300) == size + 1
        state = tmp_path / "witness.json"
        shutil.copy(backed.witness_before, state)
        seen = gateway_command("audit", "witness", restored.url, "--state", str(state), env=env)
        assert seen.returncode == 0, seen.stdout + seen.stderr
        assert seen.stdout.startswith("consistent: ")
        # A witness that saw entries made after the backup is told the truth: they are gone.
        state = tmp_path / "witness-after.json"
        shutil.copy(backed.witness_after, state)
        after = gateway_command("audit", "witness", restored.url, "--state", str(state), env=env)
        assert after.returncode == 1
        assert "INCONSISTENT: the log shrank" in after.stdout
    finally:
        restored.stop()


def _secrets_of(keys_dir: Path) -> dict[str, bytes]:
    """What no backup without secrets may contain: the private part of every key file."""
    found: dict[str, bytes] = {}
    for path in sorted(keys_dir.rglob("*")):
        if not path.is_file() or path.name.endswith(".public.jwk.json") or path.suffix == ".md":
            continue
        data = path.read_bytes()
        if path.name.endswith(".private.jwk.json"):
            data = json.loads(data)["d"].encode()  # the private scalar itself
        found[str(path.relative_to(keys_dir))] = data.strip()
    return found


def test_without_secrets_no_private_key_is_in_any_file_and_the_kept_keys_restore_it(
    original: Original, tmp_path: Path
) -> None:
    with original.client("hrss") as c:  # a log with a signed checkpoint, whatever ran before
        _wait_for_checkpoint(original, _lookup(c, 500))
    directory = tmp_path / "backup"
    made = original.command("backup", str(directory))
    assert made.returncode == 0, made.stderr
    assert "NOT in this backup" in made.stderr
    assert "the gateway's signing key" in made.stderr
    assert "the audit HMAC key" in made.stderr
    assert "SECRETS" not in made.stderr
    keys = _secrets_of(Path(original.settings.keys_dir))
    assert {"gateway/signing.private.pem", "audit-hmac.key", "operators/admin.token"} <= set(keys)
    assert any(name.startswith("seals/") for name in keys)
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            for name, secret in keys.items():
                assert secret not in data, f"{name} is in {path}"
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["holds_secrets"] is False
    assert {f["kind"] for f in manifest["files"]} == {"database", "policy", "public-key"}

    # Restored beside the keys the operator kept: the log verifies.
    env = original.new_target(tmp_path / "kept")
    env["GATEWAY_KEYS_DIR"] = original.settings.keys_dir
    done = gateway_command("restore", str(directory), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr
    verified = gateway_command("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout

    # Restored with no keys at all: the restore says what must be put back before serving.
    bare = original.new_target(tmp_path / "bare")
    done = gateway_command("restore", str(directory), env=bare)
    assert done.returncode == 0, done.stdout + done.stderr
    # Both of the key set's active keys, each with the file its private half is kept in.
    assert "WARNING: the active ES256 gateway signing key" in done.stderr
    assert "WARNING: the active SM2 gateway signing key" in done.stderr
    assert ".private.jwk.json you kept" in done.stderr  # the SM2 key's file
    assert "has no private half" in done.stderr
    assert "WARNING: there is no audit HMAC key" in done.stderr
    assert not Path(bare["GATEWAY_KEYS_DIR"]).exists()

    # Restored beside another gateway key: the key set came back with the database, so the
    # checkpoints verify with the keys that signed them; the restore says that the active
    # key's private half is not there (the gateway would sign nothing, 503, until it is).
    other = original.new_target(tmp_path / "other")
    ensure_gateway_key(Path(other["GATEWAY_KEYS_DIR"]))
    done = gateway_command("restore", str(directory), env=other)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING: the active ES256 gateway signing key" in done.stderr
    verified = gateway_command("audit", "verify", env=other)
    assert verified.returncode == 0, verified.stdout


def _untouched(env: dict[str, str]) -> None:
    """The target of a refused restore holds nothing: no database, no keys, no policies."""
    if "GATEWAY_DATABASE_URL" in env:
        engine = sa.create_engine(env["GATEWAY_DATABASE_URL"])
        try:
            assert not sa.inspect(engine).get_table_names()
        finally:
            engine.dispose()
    assert not Path(env["GATEWAY_DATA_DIR"]).exists()
    assert not Path(env["GATEWAY_KEYS_DIR"]).exists()
    assert not Path(env["GATEWAY_POLICIES_DIR"]).exists()


@pytest.mark.parametrize("changed", ["database", "keys/audit-hmac.key"])
def test_a_tampered_backup_is_refused_and_nothing_is_written(
    original: Original, backed: Backed, tmp_path: Path, changed: str
) -> None:
    copy = tmp_path / "backup"
    shutil.copytree(backed.directory, copy)
    path = copy / (backed.manifest.database if changed == "database" else changed)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    env = original.new_target(tmp_path / "target")
    refused = gateway_command("restore", str(copy), env=env)
    assert refused.returncode == 1
    assert "REFUSED" in refused.stderr
    assert f"{path.relative_to(copy)}: its SHA-256 differs from the manifest's" in refused.stderr
    _untouched(env)
    checked = gateway_command("restore", "--check", str(copy), env=env)
    assert checked.returncode == 1
    assert "its SHA-256 differs" in checked.stderr


def test_a_manifest_that_says_another_tree_than_its_database_is_caught(
    original: Original, backed: Backed, tmp_path: Path
) -> None:
    """The manifest is not hashed: one rewritten to describe another log still lists true
    hashes, and the restore finds the lie in the database itself."""
    copy = tmp_path / "backup"
    shutil.copytree(backed.directory, copy)
    raw = json.loads((copy / MANIFEST_NAME).read_text())
    raw["audit"]["root"] = "0" * 64
    (copy / MANIFEST_NAME).write_text(json.dumps(raw))
    env = original.new_target(tmp_path / "target")
    refused = gateway_command("restore", str(copy), env=env)
    assert refused.returncode == 1
    assert f"the manifest's has {backed.manifest.audit.tree_size} entries, root {'0' * 64}" in (
        refused.stderr
    )
    if original.setup == "embedded":  # checked before the copy takes its place
        assert "nothing was written" in refused.stderr
        assert not list(Path(env["GATEWAY_DATA_DIR"]).iterdir())
        assert not Path(env["GATEWAY_KEYS_DIR"]).exists()


def test_a_backup_is_restored_only_into_its_own_setup(
    original: Original, backed: Backed, tmp_path: Path
) -> None:
    env = original.new_target(tmp_path / "target")
    if original.setup == "embedded":
        env["GATEWAY_DATABASE_URL"] = original.stack.enter_context(postgres_database())
        other = "the backup is of the sqlite setup, the gateway's database is postgresql"
    else:
        del env["GATEWAY_DATABASE_URL"]
        other = "the backup is of the postgresql setup, the gateway's database is sqlite"
    refused = gateway_command("restore", str(backed.directory), env=env)
    assert refused.returncode == 1
    assert other in refused.stderr
    _untouched(env)


def test_an_unfinished_backup_is_refused(
    original: Original, backed: Backed, tmp_path: Path
) -> None:
    copy = tmp_path / "backup"
    shutil.copytree(backed.directory, copy)
    (copy / MANIFEST_NAME).unlink()
    env = original.new_target(tmp_path / "target")
    refused = gateway_command("restore", str(copy), env=env)
    assert refused.returncode == 1
    assert "did not finish" in refused.stderr
    _untouched(env)


def test_a_restore_into_a_store_that_holds_data_or_keys_is_refused(
    original: Original, backed: Backed
) -> None:
    before = _entries(original)
    refused = original.command("restore", str(backed.directory))
    assert refused.returncode == 1
    assert "not restored, nothing was written" in refused.stderr
    assert "is not empty" in refused.stderr
    assert "already holds keys" in refused.stderr
    assert "restore never overwrites keys" in refused.stderr
    # The serving gateway's store is as it was, and it goes on serving.
    assert not list(Path(original.settings.data_dir).glob("*before-restore*"))
    with original.client("hrss") as c:
        assert _lookup(c, 400) > before
    assert _entries(original) == before + 1


def _entries(original: Original) -> int:
    engine = sa.create_engine(original.settings.effective_database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
    finally:
        engine.dispose()


def test_replacing_a_database_is_said_and_keeps_what_was_there(
    original: Original, backed: Backed, tmp_path: Path
) -> None:
    env = _restored(original, backed, tmp_path)
    again = gateway_command("restore", str(backed.directory), env=env)
    assert again.returncode == 1
    assert "is not empty" in again.stderr
    replaced = gateway_command(
        "restore", "--replace-database", "--keep-keys", str(backed.directory), env=env
    )
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    if original.setup == "embedded":
        (aside,) = Path(env["GATEWAY_DATA_DIR"]).glob("gateway.sqlite3.before-restore-*")
        assert "the database that was there is now" in replaced.stdout
        assert aside.stat().st_size > 0
    verified = gateway_command("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout


def test_a_backup_says_why_it_cannot_be_made_and_leaves_nothing(
    original: Original, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "earlier.txt").write_text("an earlier backup")
    refused = original.command("backup", str(full))
    assert refused.returncode == 1
    assert "is not an empty directory" in refused.stderr
    assert [p.name for p in full.iterdir()] == ["earlier.txt"]
    inside = Path(original.settings.policies_dir) / "backup"
    refused = original.command("backup", str(inside))
    assert refused.returncode == 1
    assert "which the backup copies" in refused.stderr
    assert not inside.exists()

    if original.setup == "embedded":
        down = {"GATEWAY_DATA_DIR": str(tmp_path / "no-data")}
        reason = "there is no database at"
    else:
        down = {"GATEWAY_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
        reason = "does not answer"
    failed = original.command("backup", str(tmp_path / "backup"), **down)
    assert failed.returncode == 1
    assert reason in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "backup").exists()


def test_a_pg_dump_older_than_the_server_is_named() -> None:
    with pytest.raises(BackupFailed) as caught:
        find_pg_tool("pg_dump", at_least=99)
    message = str(caught.value)
    assert "no pg_dump of PostgreSQL 99 or newer was found" in message
    assert "postgresql-client-99" in message
    assert find_pg_tool("pg_dump", at_least=0).major >= 10
