"""Backing up and restoring the gateway's store: :func:`create_backup`, :func:`restore_backup`.

**Consistent while serving.** The embedded SQLite file is copied with SQLite's online backup
API in one step: the copy is made under one read transaction, so it is the database as of one
commit while the writer goes on (WAL lets a reader and the writer work side by side). The
server setup's PostgreSQL database is dumped by ``pg_dump`` (custom format) from a snapshot
this module exports from a repeatable-read transaction, in which it also reads the audit
tree: the manifest's tree size and root are those of the dump, not of a moment before or
after it.

**Secrets, explicitly.** By default a backup holds the database, the policy set and public
key material only, and its manifest lists what it does not hold: the gateway's signing key,
the audit HMAC key and the departments' and e-seals' private keys, which the operator keeps.
``with_secrets`` adds the key store. The backup directory is owner-only either way (0700,
files 0600): the database holds the departments' uploaded records.

**Restore** checks the whole backup (:func:`gateway.backup.manifest.check_backup`) and the
targets before it writes anything: the database must be empty unless replacing it was asked
for (a replaced SQLite file is moved aside, not deleted), and keys are put only into a key
store that holds none. After the restore, the restored tree's size and root are held against
the manifest's.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from gateway import __version__
from gateway.audit.tree import StoredTree, tree_size
from gateway.backup.manifest import (
    FORMAT,
    MANIFEST_NAME,
    AuditState,
    BackupFile,
    FileKind,
    GatewayKey,
    Manifest,
    Setup,
    check_backup,
    encode_manifest,
    file_sha256,
)
from gateway.core import merkle
from gateway.core.keyring import GatewayKey as GatewayKeyRecord
from gateway.core.keyring import GatewayKeyStatus, public_jwk
from gateway.registry.gateway_keys import load_gateway_keys, load_private_keys
from gateway.settings import Settings
from gateway.storage.database import create_database_engine, is_sqlite
from gateway.storage.schema import audit_checkpoints

__all__ = [
    "BackupFailed",
    "BackupReport",
    "RestoreRefused",
    "RestoreReport",
    "create_backup",
    "find_pg_tool",
    "libpq_connection",
    "restore_backup",
]

SQLITE_COPY = "database.sqlite3"
POSTGRES_DUMP = "database.pgdump"
#: The one file of a key store directory that is no key (``keys/README.md`` of a checkout).
KEY_STORE_NOTE = Path("README.md")
GATEWAY_KEY = Path("gateway") / "signing.private.pem"
#: How long a tool (pg_dump, pg_restore) may take before the backup or restore gives up.
TOOL_TIMEOUT_SECONDS = 3600


class BackupFailed(Exception):
    """A backup or restore that could not be done, or was refused, with its reason."""


class RestoreRefused(BackupFailed):
    """A restore refused before it wrote anything (its targets are not fit)."""


@dataclass
class BackupReport:
    """What :func:`create_backup` wrote."""

    directory: Path
    manifest: Manifest


@dataclass
class RestoreReport:
    """What :func:`restore_backup` did, and what the operator must still see to."""

    manifest: Manifest
    database: str  # where the database was restored (the URL without its password)
    keys_placed: int = 0
    policies_placed: int = 0
    moved_aside: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- files, owner-only --------------------------------------------------------------------


def _owner_only_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write a file that must not exist yet, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    path.chmod(mode)


def _copy_new(source: Path, target: Path, *, mode: int = 0o600) -> tuple[int, str]:
    """Copy ``source`` to ``target`` (which must not exist yet) durably; the size and SHA-256
    of what was written, hashed as it was copied."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    target.chmod(mode)
    return size, digest.hexdigest()


def _regular_files(directory: Path) -> Iterator[Path]:
    """The regular files under ``directory`` (symbolic links are not followed), sorted."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def _holds_keys(keys_dir: Path) -> list[Path]:
    """Every file of the key store: all under ``keys_dir`` but its README (the checkout's
    note on the layout) — so that a part added to the layout later is not left out."""
    if not keys_dir.is_dir():
        return []
    return [p for p in _regular_files(keys_dir) if p.relative_to(keys_dir) != KEY_STORE_NOTE]


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# --- PostgreSQL's tools -------------------------------------------------------------------


@dataclass(frozen=True)
class PgTool:
    """A PostgreSQL client program and its major version."""

    path: str
    major: int
    version: str


_PG_VERSION = re.compile(r"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*)")


def find_pg_tool(name: str, *, at_least: int) -> PgTool:
    """The newest ``name`` (``pg_dump``, ``pg_restore``) on PATH or under
    ``/usr/lib/postgresql/*/bin`` whose major version is ``at_least`` or newer: a dump needs
    a pg_dump at least as new as the server. :class:`BackupFailed` saying what was found
    otherwise."""
    candidates = [shutil.which(name), *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))]
    found: list[PgTool] = []
    for path in dict.fromkeys(c for c in candidates if c):
        try:
            done = subprocess.run(  # noqa: S603 - a PostgreSQL program found above, no shell
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            continue
        match = _PG_VERSION.search(done.stdout)
        if done.returncode == 0 and match:
            found.append(PgTool(path=path, major=int(match.group(2)), version=match.group(1)))
    usable = [tool for tool in found if tool.major >= at_least]
    if not usable:
        seen = ", ".join(f"{t.path} ({t.version})" for t in found) or "none"
        raise BackupFailed(
            f"no {name} of PostgreSQL {at_least} or newer was found (on PATH or under"
            f" /usr/lib/postgresql/*/bin; found: {seen}): install the PostgreSQL {at_least}"
            f" client programs (Debian: postgresql-client-{at_least})"
        )
    return max(usable, key=lambda tool: tool.major)


def libpq_connection(url: str) -> tuple[str, dict[str, str]]:
    """The database URL as the PostgreSQL programs take it (no driver name, no password),
    and their environment: the password goes through PGPASSWORD, never the command line."""
    parsed = make_url(url)
    # Built anew: URL.set(password=None) keeps the password (None there means "unchanged").
    conninfo = sa.URL.create(
        drivername="postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return conninfo, env


def _run_tool(command: list[str], *, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(  # noqa: S603 - PostgreSQL's programs, arguments as a list, no shell
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupFailed(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        raise BackupFailed(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


# --- what the copy holds ------------------------------------------------------------------


def _audit_state(conn: sa.Connection) -> AuditState:
    size = tree_size(conn)
    tree = StoredTree(conn)
    tree.frontier(size)
    latest = conn.execute(
        sa.select(audit_checkpoints.c.size, audit_checkpoints.c.root)
        .order_by(audit_checkpoints.c.size.desc())
        .limit(1)
    ).first()
    return AuditState(
        tree_size=size,
        root=merkle.root(size, tree).hex(),
        checkpoint_size=None if latest is None else int(latest.size),
        checkpoint_root=None if latest is None else str(latest.root),
    )


def _schema_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def _require_schema(conn: sa.Connection, where: str) -> None:
    if not sa.inspect(conn).has_table("audit_entries"):
        raise BackupFailed(f"{where} holds no gateway schema: nothing to back up")


def _known_revisions() -> set[str]:
    """The schema revisions this gateway's migrations know."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gateway.storage import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


# --- backup -------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupFailed("the database is not an SQLite file")
    return Path(database)


def _backup_sqlite(database: Path, copy: Path, *, busy_timeout_ms: int) -> str:
    """Copy the live SQLite ``database`` to ``copy``; how it was copied, in words."""
    if not database.is_file():
        raise BackupFailed(f"there is no database at {database}")
    # mode=rw: open the gateway's file, never create an empty one in its place.
    source = sqlite3.connect(
        database.resolve().as_uri() + "?mode=rw", uri=True, timeout=busy_timeout_ms / 1000
    )
    target = sqlite3.connect(copy)
    try:
        # pages=-1: all pages in one step, under one read transaction of the source — the copy
        # is the database as of one commit. Step by step, each write of the live gateway in
        # between would restart the copy.
        source.backup(target, pages=-1)
        # One self-contained file: no -wal beside the copy.
        target.execute("PRAGMA journal_mode=DELETE")
        # quick_check: every page and b-tree sound, at a fifth of integrity_check's time (which
        # also matches each index to its table: 2.1 s against 0.4 s for 56 MB here). The log's
        # content is checked by the tree's root, and in depth by `gateway audit verify`.
        (verdict,) = target.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupFailed(f"the copy of {database} fails SQLite's quick check: {verdict}")
    except sqlite3.Error as exc:
        raise BackupFailed(f"SQLite's online backup of {database} failed: {exc}") from None
    finally:
        target.close()
        source.close()
    copy.chmod(0o600)
    return f"SQLite online backup (SQLite {sqlite3.sqlite_version})"


def _read_copy(copy: Path) -> tuple[AuditState, str | None]:
    engine = sa.create_engine(f"sqlite:///{copy}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _require_schema(conn, f"the database copied to {copy}")
            return _audit_state(conn), _schema_revision(conn)
    finally:
        engine.dispose()


def _snapshot_engine(url: str) -> sa.Engine:
    """An engine for the backup's own transaction: repeatable read, and none of the serving
    engine's idle-in-transaction limit (the snapshot must live until pg_dump has taken it)."""
    return sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="REPEATABLE READ",
        connect_args={
            "connect_timeout": 5,
            "options": "-c idle_in_transaction_session_timeout=0 -c statement_timeout=60000",
        },
    )


def _backup_postgres(url: str, dump: Path) -> tuple[str, AuditState, str | None]:
    """Dump the PostgreSQL database at ``url`` to ``dump`` from one exported snapshot; the
    tool's words, the audit state and the schema revision of that snapshot."""
    engine = _snapshot_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            snapshot = str(conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one())
            server_num = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
            server = str(conn.execute(sa.text("SHOW server_version")).scalar_one()).split()[0]
            _require_schema(conn, f"the database {_safe_url(url)}")
            state, revision = _audit_state(conn), _schema_revision(conn)
            tool = find_pg_tool("pg_dump", at_least=server_num // 10000)
            conninfo, env = libpq_connection(url)
            _run_tool(
                [
                    tool.path,
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--no-password",
                    "--lock-wait-timeout=30s",
                    f"--file={dump}",
                    f"--dbname={conninfo}",
                ],
                env=env,
                what=f"pg_dump of {_safe_url(url)}",
            )
    except SQLAlchemyError as exc:
        raise BackupFailed(
            f"the database {_safe_url(url)} does not answer: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()
    # The dump is readable: pg_restore lists what it holds.
    _run_tool(
        [find_pg_tool("pg_restore", at_least=tool.major).path, "--list", str(dump)],
        env=env,
        what="pg_restore --list of the dump",
    )
    dump.chmod(0o600)
    return f"pg_dump {tool.version} (custom format) of PostgreSQL {server}", state, revision


def _gateway_public_jwk(keys_dir: Path) -> GatewayKey | None:
    """The public half of the gateway's signing key, if the key store holds it (never made
    here: a backup creates no key)."""
    path = keys_dir / GATEWAY_KEY
    if not path.is_file():
        return None
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BackupFailed(f"{path}: not an EC private key")
    return msgspec.convert(public_jwk(key, alg="ES256"), GatewayKey)


def _not_included(settings: Settings, *, with_secrets: bool) -> list[str]:
    hmac_where = (
        "GATEWAY_AUDIT_HMAC_KEY (set in the gateway's configuration)"
        if settings.audit_hmac_key
        else "keys/audit-hmac.key"
    )
    hmac = (
        f"the audit HMAC key ({hmac_where}): without it the keyed subjects in the log cannot"
        " be resolved again, and new entries would key subjects differently"
    )
    if with_secrets:
        return [hmac] if settings.audit_hmac_key else []
    return [
        "the gateway's signing key (keys/gateway/signing.private.pem): the checkpoints in the"
        " log are signed with it, and they verify only with it",
        hmac,
        "the departments' private keys (keys/departments/*.private.jwk.json)",
        "the e-seals' private keys (keys/seals/)",
        "the operators' tokens (keys/operators/)",
    ]


class _Listing:
    """The files written into a backup directory so far, each with its size and hash."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.files: list[BackupFile] = []

    def copy(self, source: Path, relative: str, kind: FileKind) -> None:
        _owner_only_dir((self.target / relative).parent)
        size, sha256 = _copy_new(source, self.target / relative)
        self.files.append(BackupFile(path=relative, kind=kind, size=size, sha256=sha256))

    def written(self, relative: str, kind: FileKind) -> None:
        size, sha256 = file_sha256(self.target / relative)
        self.files.append(BackupFile(path=relative, kind=kind, size=size, sha256=sha256))


def _copy_keys_and_policies(
    settings: Settings, listing: _Listing, *, with_secrets: bool
) -> GatewayKey | None:
    """The public key material, the policy set and (``with_secrets``) the key store into the
    backup; the gateway's public key, if the key store holds the gateway's key."""
    keys_dir = Path(settings.keys_dir)
    gateway_jwk = _gateway_public_jwk(keys_dir)
    _owner_only_dir(listing.target / "public")
    if gateway_jwk is not None:
        _write_new(
            listing.target / "public" / "gateway.public.jwk.json",
            _json(msgspec.structs.asdict(gateway_jwk)),
        )
        listing.written("public/gateway.public.jwk.json", "public-key")
    departments = keys_dir / "departments"
    for path in sorted(departments.glob("*.public.jwk.json")) if departments.is_dir() else ():
        listing.copy(path, f"public/departments/{path.name}", "public-key")
    policies = Path(settings.policies_dir)
    for path in _regular_files(policies) if policies.is_dir() else ():
        listing.copy(path, f"policies/{path.relative_to(policies).as_posix()}", "policy")
    if with_secrets:
        for path in _holds_keys(keys_dir):
            public = path.name.endswith(".public.jwk.json")
            relative = f"keys/{path.relative_to(keys_dir).as_posix()}"
            listing.copy(path, relative, "public-key" if public else "secret")
        if not any(f.kind == "secret" for f in listing.files):
            raise BackupFailed(f"--with-secrets: the key store {keys_dir} holds no key")
    return gateway_jwk


def _write_backup(
    settings: Settings, target: Path, *, with_secrets: bool, now: dt.datetime
) -> Manifest:
    url = settings.effective_database_url
    listing = _Listing(target)
    setup: Setup
    if is_sqlite(url):
        setup, database = "sqlite", SQLITE_COPY
        made_with = _backup_sqlite(
            _sqlite_path(url), target / database, busy_timeout_ms=settings.db_busy_timeout_ms
        )
        state, revision = _read_copy(target / database)
    else:
        setup, database = "postgresql", POSTGRES_DUMP
        made_with, state, revision = _backup_postgres(url, target / database)
    listing.written(database, "database")
    gateway_jwk = _copy_keys_and_policies(settings, listing, with_secrets=with_secrets)
    manifest = Manifest(
        format=FORMAT,
        gateway_version=__version__,
        created_at=now.astimezone(dt.UTC),
        setup=setup,
        gateway_id=settings.gateway_id,
        schema_revision=revision,
        database=database,
        made_with=made_with,
        audit=state,
        gateway_public_jwk=gateway_jwk,
        holds_secrets=with_secrets,
        not_included=_not_included(settings, with_secrets=with_secrets),
        files=listing.files,
    )
    for directory in {target, *(p.parent for p in target.rglob("*") if p.is_file())}:
        _fsync_dir(directory)
    # Last, and whole or not at all: a manifest names a finished backup.
    partial = target / f".{MANIFEST_NAME}.partial"
    _write_new(partial, encode_manifest(manifest))
    partial.rename(target / MANIFEST_NAME)
    _fsync_dir(target)
    return manifest


def create_backup(
    settings: Settings, target: Path, *, with_secrets: bool, now: dt.datetime
) -> BackupReport:
    """Back up the gateway of ``settings`` into ``target`` (a new or empty directory) while
    it serves. The manifest is written last: without it the directory is no backup. A backup
    that fails leaves nothing behind (what it had written is removed)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupFailed(f"{target} exists and is not an empty directory: back up into a new one")
    for copied in (Path(settings.keys_dir), Path(settings.policies_dir)):
        if target.resolve().is_relative_to(copied.resolve()):
            raise BackupFailed(f"{target} is inside {copied}, which the backup copies")
    created = not target.exists()
    _owner_only_dir(target)
    try:
        manifest = _write_backup(settings, target, with_secrets=with_secrets, now=now)
    except BaseException:
        # Only what this backup wrote: the directory was new or empty.
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in list(target.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return BackupReport(directory=target, manifest=manifest)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


# --- restore ------------------------------------------------------------------------------


def _sqlite_holds_data(database: Path) -> bool:
    wal = database.with_name(database.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return True
    return database.exists() and database.stat().st_size > 0


def _postgres_relations(url: str) -> int:
    """How many tables, views, sequences… the database at ``url`` holds outside the
    system's schemas."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_catalog.pg_class c"
                        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
                        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
                    )
                ).scalar_one()
            )
    except SQLAlchemyError as exc:
        raise BackupFailed(
            f"the database {_safe_url(url)} does not answer: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def _check_targets(
    settings: Settings, manifest: Manifest, *, replace_database: bool, keep_keys: bool
) -> None:
    """Every reason the restore cannot go ahead, found before anything is written."""
    url = settings.effective_database_url
    target_setup = "sqlite" if is_sqlite(url) else "postgresql"
    problems: list[str] = []
    if manifest.setup != target_setup:
        problems.append(
            f"the backup is of the {manifest.setup} setup, the gateway's database is"
            f" {target_setup} ({_safe_url(url)}): restore into the same setup"
        )
    elif manifest.schema_revision is not None and manifest.schema_revision not in (
        _known_revisions()
    ):
        problems.append(
            f"the backup's schema revision {manifest.schema_revision!r} is unknown to this"
            f" gateway ({__version__}; the backup was made by {manifest.gateway_version}):"
            " restore with a gateway at least as new"
        )
    elif not replace_database:
        if target_setup == "sqlite":
            path = _sqlite_path(url)
            if _sqlite_holds_data(path):
                problems.append(
                    f"the database {path} exists and is not empty: restore into a new data"
                    " directory, or pass --replace-database to move it aside"
                )
        elif (relations := _postgres_relations(url)) > 0:
            problems.append(
                f"the database {_safe_url(url)} is not empty ({relations} tables, sequences"
                " and indexes): restore into an empty database, or pass --replace-database"
                " to drop what the backup holds before restoring it"
            )
    keys_dir = Path(settings.keys_dir)
    present = _holds_keys(keys_dir)
    if manifest.holds_secrets and present and not keep_keys:
        problems.append(
            f"the key store {keys_dir} already holds keys ({len(present)} files, e.g."
            f" {present[0].relative_to(keys_dir)}); restore never overwrites keys: point"
            " GATEWAY_KEYS_DIR at an empty directory, or pass --keep-keys to restore the"
            " database and keep these keys"
        )
    if problems:
        # One reason on the line; several, one a line.
        raise RestoreRefused(problems[0] if len(problems) == 1 else "\n  - ".join(["", *problems]))


def _check_tree(found: AuditState, expected: AuditState, what: str) -> None:
    if (found.tree_size, found.root) != (expected.tree_size, expected.root):
        raise BackupFailed(
            f"{what} holds an audit tree of {found.tree_size} entries, root {found.root};"
            f" the manifest's has {expected.tree_size} entries, root {expected.root}"
        )


def _check_sqlite_copy(copy: Path, expected: AuditState) -> None:
    """``copy`` is a sound SQLite database holding the manifest's audit tree."""
    try:
        conn = sqlite3.connect(copy.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupFailed(f"the backup's database is not a sound SQLite file: {exc}") from None
    if verdict != "ok":
        raise BackupFailed(f"the backup's database fails SQLite's quick check: {verdict}")
    try:
        found, _ = _read_copy(copy)
    except SQLAlchemyError as exc:
        raise BackupFailed(f"the backup's database cannot be read: {exc}") from None
    _check_tree(found, expected, "the backup's database")


def _restore_sqlite(
    source: Path, entry: BackupFile, database: Path, *, expected: AuditState, stamp: str
) -> list[Path]:
    """Put the copy in place of ``database`` (an existing one, and its -wal and -shm, moved
    aside) once it is checked; the paths moved aside."""
    database.parent.mkdir(parents=True, exist_ok=True)
    incoming = database.with_name(database.name + ".restoring")
    incoming.unlink(missing_ok=True)
    try:
        if _copy_new(source, incoming) != (entry.size, entry.sha256):
            raise BackupFailed(f"{entry.path} changed while it was being restored")
        # Before it takes the place of anything: sound, and holding the manifest's tree.
        _check_sqlite_copy(incoming, expected)
    except BackupFailed as exc:
        incoming.unlink(missing_ok=True)
        raise RestoreRefused(str(exc)) from None
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    moved: list[Path] = []
    # The -wal and -shm of a replaced database go with it: a stale -wal beside the restored
    # file would be replayed into it.
    for suffix in ("", "-wal", "-shm"):
        old = database.with_name(database.name + suffix)
        if old.exists():
            aside = database.with_name(f"{database.name}.before-restore-{stamp}{suffix}")
            old.rename(aside)
            moved.append(aside)
    incoming.rename(database)
    _fsync_dir(database.parent)
    return moved


def _restore_postgres(dump: Path, url: str, *, replace_database: bool) -> None:
    conninfo, env = libpq_connection(url)
    tool = find_pg_tool("pg_restore", at_least=0)
    _run_tool(
        [
            tool.path,
            # All or nothing: a restore that fails half-way leaves the database as it was.
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            # Objects belong to the user restoring them, on this server.
            "--no-owner",
            "--no-privileges",
            *(["--clean", "--if-exists"] if replace_database else []),
            f"--dbname={conninfo}",
            str(dump),
        ],
        env=env,
        what=f"pg_restore into {_safe_url(url)}",
    )


def _place_keys(source: Path, manifest: Manifest, keys_dir: Path) -> int:
    placed = 0
    for entry in manifest.files:
        if not entry.path.startswith("keys/"):
            continue
        target = keys_dir / entry.path.removeprefix("keys/")
        _owner_only_dir(target.parent)
        # O_EXCL: a key that appeared meanwhile is kept, and the restore stops.
        try:
            size, sha256 = _copy_new(source / entry.path, target)
        except FileExistsError:
            raise BackupFailed(f"{target} appeared during the restore; it was kept") from None
        if (size, sha256) != (entry.size, entry.sha256):
            target.unlink()
            raise BackupFailed(f"{entry.path} changed while it was being restored")
        placed += 1
    return placed


def _place_policies(source: Path, manifest: Manifest, policies_dir: Path) -> tuple[int, list[str]]:
    """The backup's policy set into ``policies_dir`` if it holds none; otherwise the one there
    is kept, and each difference is noted."""
    entries = [f for f in manifest.files if f.kind == "policy"]
    if not entries:
        return 0, []
    present = any(policies_dir.glob("*.toml")) if policies_dir.is_dir() else False
    if present:
        differing = []
        for entry in entries:
            mine = policies_dir / entry.path.removeprefix("policies/")
            if not mine.is_file() or file_sha256(mine)[1] != entry.sha256:
                differing.append(entry.path.removeprefix("policies/"))
        if not differing:
            return 0, []
        return 0, [
            f"the policy set in {policies_dir} was kept; it differs from the backup's in"
            f" {', '.join(differing)} (the backup's is in {source / 'policies'})"
        ]
    for entry in entries:
        target = policies_dir / entry.path.removeprefix("policies/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if _copy_new(source / entry.path, target, mode=0o644) != (entry.size, entry.sha256):
            target.unlink()
            raise BackupFailed(f"{entry.path} changed while it was being restored")
    return len(entries), []


def _key_warnings(settings: Settings, manifest: Manifest) -> list[str]:
    """What the restored gateway will lack: the private halves of the keys its restored key
    set signs with (the public halves came back with the database, so everything signed
    before still verifies), and the audit HMAC key."""
    keys_dir = Path(settings.keys_dir)
    warnings: list[str] = []
    present = set(load_private_keys(keys_dir)) if (keys_dir / "gateway").is_dir() else set()
    for key in _signing_keys(settings):
        if key.kid not in present:
            # An SM2 key's private half is a JWK file; an ES256 one's a PEM (or, for the
            # first key of a gateway, the signing.private.pem it was adopted from).
            kept = (
                f"{key.kid}.private.jwk.json"
                if key.alg == "SM2"
                else f"{key.kid}.private.pem (or the signing.private.pem)"
            )
            warnings.append(
                f"the {key.status} {key.alg} gateway signing key {key.kid} has no private half"
                f" under {keys_dir / 'gateway'}: put back the {kept} you kept — until then the"
                f" gateway signs nothing with it and answers 503 for what it would sign; what"
                " it signed before still verifies with its JWKS"
            )
    del manifest  # the key set in the restored database says which keys sign, not the file
    if not settings.audit_hmac_key and not (keys_dir / "audit-hmac.key").is_file():
        warnings.append(
            f"there is no audit HMAC key in {keys_dir / 'audit-hmac.key'} (nor"
            " GATEWAY_AUDIT_HMAC_KEY): put back the one you kept, or the keyed subjects in the"
            " log cannot be resolved again"
        )
    return warnings


def _signing_keys(settings: Settings) -> list[GatewayKeyRecord]:
    """The active and next keys of the restored database's gateway key set."""
    engine = create_database_engine(
        settings.effective_database_url, busy_timeout_ms=settings.db_busy_timeout_ms
    )
    try:
        return [
            k
            for k in load_gateway_keys(engine)
            if k.status in (GatewayKeyStatus.ACTIVE, GatewayKeyStatus.NEXT)
        ]
    except SQLAlchemyError as exc:
        raise BackupFailed(
            f"the restored database does not answer: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def _restored_state(settings: Settings) -> AuditState:
    engine = create_database_engine(
        settings.effective_database_url, busy_timeout_ms=settings.db_busy_timeout_ms
    )
    try:
        with engine.connect() as conn:
            return _audit_state(conn)
    except SQLAlchemyError as exc:
        raise BackupFailed(
            f"the restored database does not answer: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def restore_backup(
    settings: Settings,
    source: Path,
    *,
    replace_database: bool,
    keep_keys: bool,
    now: dt.datetime,
) -> RestoreReport:
    """Restore the backup in ``source`` into the gateway of ``settings``: check everything
    first, then the database, the keys (with a backup that holds them, into an empty key
    store) and the policy set (where there is none). The restored audit tree is held against
    the manifest's: SQLite's before the copy takes its place, PostgreSQL's after pg_restore."""
    manifest = check_backup(source)
    _check_targets(settings, manifest, replace_database=replace_database, keep_keys=keep_keys)
    url = settings.effective_database_url
    report = RestoreReport(manifest=manifest, database=_safe_url(url))
    database = next(f for f in manifest.files if f.kind == "database")
    if manifest.setup == "sqlite":
        report.moved_aside = _restore_sqlite(
            source / database.path,
            database,
            _sqlite_path(url),
            expected=manifest.audit,
            stamp=now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        )
    else:
        _restore_postgres(source / database.path, url, replace_database=replace_database)
        _check_tree(
            _restored_state(settings),
            manifest.audit,
            f"the database restored into {report.database} (from the backup's dump, whose hash"
            " matched)",
        )
    if manifest.holds_secrets and not keep_keys:
        report.keys_placed = _place_keys(source, manifest, Path(settings.keys_dir))
    report.policies_placed, report.notes = _place_policies(
        source, manifest, Path(settings.policies_dir)
    )
    report.warnings = _key_warnings(settings, manifest)
    return report
