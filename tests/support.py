"""Test support: real gateway processes, real PostgreSQL and Redis, and the services' rules.

A test that needs PostgreSQL or Redis skips with a message when the service is unreachable,
except under ``CI=true``, where it fails: CI starts both, so a skip there would hide a gap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc.jwk import KeySet

from gateway.audit import AuditEntry, Outcome
from gateway.core.jose import parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.sdk import GatewayClient, http_client
from gateway.sdk._answers import GatewayPublicKey
from gateway.storage.schema import audit_entries
from loadtests.launcher import GatewayLauncher, LaunchError

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class CommandResult:
    """What a ``gateway`` command did: its exit status and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


def gateway_command(
    *args: str,
    env: Mapping[str, str],
    stdin: str = "",
    cwd: Path = ROOT,
    process: bool = False,
    timeout: float = 120,
) -> CommandResult:
    """Run ``gateway ARGS`` with exactly the ``GATEWAY_*`` variables of ``env`` (the caller's
    other variables kept), in ``cwd``.

    In this process through click's runner by default — the command's own code, settings
    read from the environment as a real run reads them, exit status from its ``sys.exit`` —
    since a Python start per command is most of what a command test costs. ``process``: as
    ``python -m gateway.app`` in a process of its own, for the tests that show the console
    script itself works. An exception the command does not handle ends it with status 1 and
    its traceback on stderr, as it would in a process.
    """
    variables = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    variables.update(env)
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.app", *args],
            cwd=cwd,
            check=False,
            env=variables,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CommandResult(done.returncode, done.stdout, done.stderr)

    import traceback

    from click.testing import CliRunner

    from gateway.app.commands import main

    # GATEWAY_HOME too: `gateway --home` sets it for the command (its workers inherit it), and
    # the runner restores only the variables it was given.
    unset: dict[str, str | None] = {
        k: None for k in {*os.environ, "GATEWAY_HOME"} if k.startswith("GATEWAY_")
    }
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(
            main, list(args), input=stdin, env={**unset, **env}, prog_name="gateway"
        )
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return CommandResult(result.exit_code, result.stdout, stderr)


def copy_policies(target: Path) -> Path:
    """A copy of the demo district's policy files, to edit in a test."""
    shutil.copytree(ROOT / "policies", target)
    return target


def edit_file(directory: Path, file: str, old: str, new: str) -> None:
    """Replace the first ``old`` in ``directory/file`` (which must contain it) by ``new``."""
    text = (directory / file).read_text(encoding="utf-8")
    assert old in text, old
    (directory / file).write_text(text.replace(old, new, 1), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unavailable(what: str, why: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{what} is not reachable ({why})"
    if IN_CI:
        pytest.fail(message + " — CI must start it", pytrace=False)
    pytest.skip(message + "; skipping")


def apt_install(*packages: str) -> str | None:
    """Install Debian ``packages`` with apt-get (when running as root); why not, if it cannot
    be done. What the suite needs beyond Python — a browser, a JDK, Go — comes this way."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"not root or no apt-get: install the Debian packages {', '.join(packages)}"
    # One installation at a time across the suite's workers: two apt-gets at once fail on
    # dpkg's lock (seen as skipped nginx and Go tests on a fresh machine).
    with open(_APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        ):
            done = subprocess.run(
                [command[0], "-o", "DPkg::Lock::Timeout=300", *command[1:]],
                check=False,
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if done.returncode != 0:
                return f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}"
    return None


#: Held while the suite runs apt-get (every worker of every run on this machine).
_APT_LOCK = Path(tempfile.gettempdir()) / "yiwang-tests-apt.lock"


def postgres_reachable() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver error means "not reachable" here
        return str(exc).splitlines()[0]


def redis_reachable() -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
        return None
    except Exception as exc:
        return str(exc)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test session; dropped afterwards."""
    why = postgres_reachable()
    if why:
        unavailable("PostgreSQL", why)
    name = f"yiwang_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def running_gateway(
    data_dir: Path, keys_dir: Path, *, server: bool, env: Mapping[str, str] | None = None
) -> Iterator[GatewayProcess]:
    """A started gateway: embedded, or (``server``) on a fresh PostgreSQL database and Redis
    with its own key prefix and two workers. Stopped (and its database dropped) afterwards."""
    extra = dict(env or {})
    with contextlib.ExitStack() as stack:
        if server:
            why = redis_reachable()
            if why:
                unavailable("Redis", why)
            extra = {
                "GATEWAY_DATABASE_URL": stack.enter_context(postgres_database()),
                "GATEWAY_REDIS_URL": REDIS_URL,
                "GATEWAY_REDIS_KEY_PREFIX": f"t{secrets.token_hex(4)}",
                "GATEWAY_WORKERS": "2",
                **extra,
            }
        gw = GatewayProcess(data_dir=data_dir, keys_dir=keys_dir, env=extra)
        gw.start()
        stack.callback(gw.stop)
        yield gw


@dataclass
class GatewayProcess:
    """A real gateway (``gateway serve``) in a subprocess, on a free port on 127.0.0.1."""

    data_dir: Path
    keys_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    _launcher: GatewayLauncher | None = field(default=None, repr=False)
    log_path: Path | None = None

    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http(self) -> httpx.Client:
        """An HTTP client of this gateway (relative paths, or absolute URLs under ``url``)."""
        if self._http is None:
            self._http = http_client(self.url, timeout=30)
        return self._http

    @property
    def database_url(self) -> str:
        return self.env.get(
            "GATEWAY_DATABASE_URL", f"sqlite:///{(self.data_dir / 'gateway.sqlite3').resolve()}"
        )

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATA_DIR=str(self.data_dir),
            GATEWAY_KEYS_DIR=str(self.keys_dir),
            GATEWAY_POLICIES_DIR=str(ROOT / "policies"),
            GATEWAY_PORT=str(self.port),
            GATEWAY_LOG_LEVEL="warning",
        )
        env.update(self.env)
        return env

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """``gateway serve`` through the launcher the benchmark uses too."""
        self.log_path = self.data_dir / f"gateway-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._launcher = GatewayLauncher(
            command=[sys.executable, "-m", "gateway.app", "serve"],
            env=self.environment(),
            cwd=ROOT,
            log_path=self.log_path,
            base_url=self.url,
        )
        try:
            self._launcher.start(timeout)
        except LaunchError as exc:
            raise RuntimeError(str(exc)) from None
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running ``gateway serve`` process (tests kill and freeze it)."""
        return None if self._launcher is None else self._launcher.proc

    @proc.setter
    def proc(self, value: subprocess.Popen[bytes] | None) -> None:
        # A test that killed the process itself says it is gone.
        if self._launcher is not None:
            self._launcher.proc = value

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._launcher is not None:
            self._launcher.stop(signal.SIGINT, timeout=10)

    def client(self, department: str) -> GatewayClient:
        return GatewayClient.from_key_file(
            base_url=self.url,
            department=department,
            key_path=self.keys_dir / "departments" / f"{department}.private.jwk.json",
        )

    def audit_entry(self, index: int) -> Mapping[str, object]:
        """Read one audit entry straight from the database (not through the gateway)."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                row = (
                    conn.execute(
                        sa.text("SELECT * FROM audit_entries WHERE idx = :i"), {"i": index}
                    )
                    .mappings()
                    .one()
                )
                return dict(row)
        finally:
            engine.dispose()

    def audit_count(self) -> int:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM audit_entries")).scalar_one())
        finally:
            engine.dispose()


def es256_only(jwks: Mapping[str, object]) -> dict[str, list[dict[str, object]]]:
    """The gateway's JWKS with its ES256 keys only. The gateway publishes an SM2 key beside
    its ES256 one (docs/sm2.md); joserfc and PyJWT, the independent JOSE libraries these
    tests check ES256 answers with, know no SM2 curve (SM2 signatures are checked with the
    openssl command line and gmalglib: tests/integration/test_sm2_*)."""
    keys = jwks.get("keys")
    assert isinstance(keys, list)
    return {"keys": [k for k in keys if isinstance(k, dict) and k.get("alg") == "ES256"]}


def es256_key_set(jwks: Mapping[str, object]) -> KeySet:
    """:func:`es256_only` as a joserfc key set."""
    return KeySet.import_key_set(es256_only(jwks))  # type: ignore[arg-type]


def signed_claims(token: str, *, key: GatewayPublicKey, audience: str) -> dict[str, Any]:
    """The claims of a gateway answer whose signature verifies with ``key`` in the key's
    algorithm (ES256 or SM2) and whose ``aud`` is ``audience`` — its times unchecked, for
    the tests that move the gateway's clock."""
    jws = parse_compact(token, allowed_members={"alg", "kid", "typ"})
    assert jws.header.kid == key.key_id
    assert verify_signature(jws, alg=key.algorithm, key=key.key)
    claims: dict[str, Any] = json.loads(jws.payload)
    assert claims["aud"] == audience
    return claims


def audit_entry(i: int) -> AuditEntry:
    """The ``i``-th of a run of released-lookup entries (``detail`` = ``i``), for tests that
    drive the audit writer directly."""
    return AuditEntry(
        at=dt.datetime.now(dt.UTC),
        event="lookup:record:released",
        decision=Outcome.ALLOWED,
        department=f"dept-{i % 3}",
        detail=str(i),
    )


def stored_details(engine: sa.Engine) -> list[tuple[int, str]]:
    """Every audit entry's (index, detail) in the database, by index."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_entries.c.idx, audit_entries.c.detail).order_by(audit_entries.c.idx)
        ).all()
    return [(int(idx), str(detail)) for idx, detail in rows]
