"""The manifest of a backup (``backup.json``, written last) and the checks a restore makes
before it touches anything.

A backup directory is complete only when its manifest is there: the manifest is written
after every other file, with the size and SHA-256 of each. :func:`check_backup` holds the
directory against it: every listed file present, a regular file, of its size and hash; no
file that the manifest does not list; every listed path relative and inside the directory.
All problems are reported together.

The hashes catch a damaged, truncated or carelessly edited backup. They cannot stop someone
who rewrites a file *and* the manifest; what stops a rewritten audit log is the log itself:
its checkpoints are signed by the gateway's key, and a witness that followed the gateway sees
a rewritten log as inconsistent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import msgspec

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "AuditState",
    "BackupFile",
    "BackupInvalid",
    "GatewayKey",
    "Manifest",
    "check_backup",
    "decode_manifest",
    "encode_manifest",
    "file_sha256",
]

#: The manifest's format; a restore reads this one only.
FORMAT = 1
MANIFEST_NAME = "backup.json"
#: A manifest is a few kilobytes; anything much larger is not one.
MANIFEST_MAX_BYTES = 1 << 20

Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
#: What a file is: the database (file or dump), a policy file, public key material, or a
#: secret (private keys, the audit HMAC key, operators' tokens).
FileKind = Literal["database", "policy", "public-key", "secret"]
Setup = Literal["sqlite", "postgresql"]


class BackupInvalid(Exception):
    """The backup cannot be restored: every reason found, each in a sentence."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class BackupFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One file of the backup, by its path relative to the backup directory."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    kind: FileKind
    size: _Count
    sha256: Sha256


class AuditState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The audit log in the copy: its stored tree, and the latest signed checkpoint in it."""

    tree_size: _Count
    root: Sha256  # hex RFC 9162 root of the stored tree (of the empty tree when size is 0)
    checkpoint_size: _Count | None
    checkpoint_root: Sha256 | None


_Base64Url = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class GatewayKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The public JWK of the gateway's signing key (P-256, ES256), as its JWKS publishes it."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: _Base64Url
    y: _Base64Url
    kid: _Base64Url  # its RFC 7638 thumbprint
    alg: Literal["ES256"]
    use: Literal["sig"]


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a backup holds and how it was made."""

    format: int
    gateway_version: _Text
    created_at: dt.datetime  # UTC
    setup: Setup
    gateway_id: _Text
    schema_revision: Annotated[str, msgspec.Meta(max_length=64)] | None
    database: _Text  # the path of the database file (a ``database`` entry of ``files``)
    made_with: _Text  # the tool and version that made the database copy
    audit: AuditState
    #: The public key the copy's checkpoints were signed with, when the key store had it.
    gateway_public_jwk: GatewayKey | None
    holds_secrets: bool
    #: The key material this backup does not hold, in words: the operator keeps it.
    not_included: list[Annotated[str, msgspec.Meta(max_length=512)]]
    files: list[BackupFile]


class _Format(msgspec.Struct):
    """The one field read before the rest: a manifest of another format is named as such."""

    format: int


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    """The manifest in ``data``, strictly decoded; :class:`BackupInvalid` naming the field
    otherwise."""
    try:
        found = msgspec.json.decode(data, type=_Format).format
    except msgspec.DecodeError as exc:
        raise BackupInvalid([f"{MANIFEST_NAME} is not a backup manifest: {exc}"]) from None
    if found != FORMAT:
        raise BackupInvalid(
            [f"{MANIFEST_NAME} is of format {found}; this gateway reads format {FORMAT} only"]
        )
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise BackupInvalid([f"{MANIFEST_NAME} is not a usable manifest: {exc}"]) from None
    if manifest.created_at.tzinfo is None:
        raise BackupInvalid([f"{MANIFEST_NAME}: created_at has no time zone"])
    return manifest


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of the regular file at ``path``, read without following a
    symbolic link."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file inside the backup directory, if it cannot."""
    if "\\" in path or "\x00" in path or not path.isprintable():
        return "has characters a backup path does not have"
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        return "is not a path inside the backup directory"
    if pure.as_posix() == MANIFEST_NAME:
        return "is the manifest itself"
    return None


def _listing_problems(manifest: Manifest) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for entry in manifest.files:
        why = _path_problem(entry.path)
        if why:
            problems.append(f"{MANIFEST_NAME}: file {entry.path!r} {why}")
        if entry.path in seen:
            problems.append(f"{MANIFEST_NAME}: file {entry.path!r} is listed twice")
        seen.add(entry.path)
    databases = [f.path for f in manifest.files if f.kind == "database"]
    if databases != [manifest.database]:
        problems.append(
            f"{MANIFEST_NAME}: the database {manifest.database!r} must be the one file of kind"
            f" 'database' (found {databases})"
        )
    secrets = [f.path for f in manifest.files if f.kind == "secret"]
    if bool(secrets) != manifest.holds_secrets:
        problems.append(
            f"{MANIFEST_NAME}: holds_secrets is {str(manifest.holds_secrets).lower()} but"
            f" {len(secrets)} secret files are listed"
        )
    return problems


def check_backup(directory: Path) -> Manifest:
    """The manifest of the backup in ``directory`` once every file has been checked against
    it; :class:`BackupInvalid` with every problem found otherwise."""
    if not directory.is_dir():
        raise BackupInvalid([f"{directory} is not a directory"])
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BackupInvalid(
            [
                f"{directory} holds no {MANIFEST_NAME}: not a backup, or one that did not"
                " finish (the manifest is written last)"
            ]
        )
    if manifest_path.stat().st_size > MANIFEST_MAX_BYTES:
        raise BackupInvalid([f"{MANIFEST_NAME} is larger than any manifest"])
    manifest = decode_manifest(manifest_path.read_bytes())
    problems = _listing_problems(manifest)
    if problems:
        raise BackupInvalid(problems)
    for entry in manifest.files:
        path = directory / entry.path
        try:
            size, sha256 = file_sha256(path)
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        except OSError as exc:
            problems.append(f"{entry.path}: cannot be read ({exc.strerror or exc})")
            continue
        if size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
        elif sha256 != entry.sha256:
            problems.append(f"{entry.path}: its SHA-256 differs from the manifest's (changed)")
    listed = {entry.path for entry in manifest.files} | {MANIFEST_NAME}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if (path.is_symlink() or not path.is_dir()) and relative not in listed:
            problems.append(f"{relative}: not in the manifest (added after the backup)")
    if problems:
        raise BackupInvalid(problems)
    return manifest
