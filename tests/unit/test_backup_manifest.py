"""The backup manifest's checks: a restore refuses a backup that is incomplete, changed, grown
or described by a manifest it cannot trust, before touching anything — each reason named."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backup.manifest import (
    FORMAT,
    MANIFEST_NAME,
    AuditState,
    BackupFile,
    BackupInvalid,
    FileKind,
    GatewayKey,
    Manifest,
    check_backup,
    decode_manifest,
    encode_manifest,
)

CONTENTS: dict[str, tuple[FileKind, bytes]] = {
    "database.sqlite3": ("database", b"SQLite format 3\x00" + bytes(range(256)) * 8),
    "public/gateway.public.jwk.json": ("public-key", b'{"kty": "EC"}\n'),
    "policies/grants.toml": ("policy", b"[[grant]]\n"),
    "keys/audit-hmac.key": ("secret", b"00" * 32),
}


GATEWAY_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "wXpCUo_XCsYRFaujcAAHc4KsaxaPx9kLQNSIOm8TG8A",
    "y": "hVaC1FVsDkeQiejT-TbOEwYYfuEGrhyHiHJswmlHusc",
    "kid": "82anPncjLCrtavSKtpaeXokCGTLa2T0FWG7Elm8TNek",
    "alg": "ES256",
    "use": "sig",
}


def _manifest(files: list[BackupFile], **changes: object) -> Manifest:
    manifest = Manifest(
        format=FORMAT,
        gateway_version="0.1.0",
        created_at=dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC),
        setup="sqlite",
        gateway_id="yiwang-gateway",
        schema_revision="0008",
        database="database.sqlite3",
        made_with="SQLite online backup",
        audit=AuditState(tree_size=3, root="ab" * 32, checkpoint_size=3, checkpoint_root="ab" * 32),
        gateway_public_jwk=msgspec.convert(GATEWAY_KEY, GatewayKey),
        holds_secrets=any(f.kind == "secret" for f in files),
        not_included=[],
        files=files,
    )
    return msgspec.structs.replace(manifest, **changes)


def _write_backup(directory: Path, **changes: object) -> Manifest:
    files = []
    for relative, (kind, data) in CONTENTS.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
        files.append(
            BackupFile(
                path=relative, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
        )
    manifest = _manifest(files, **changes)
    (directory / MANIFEST_NAME).write_bytes(encode_manifest(manifest))
    return manifest


def _refusal(directory: Path) -> list[str]:
    with pytest.raises(BackupInvalid) as caught:
        check_backup(directory)
    return caught.value.problems


def test_a_whole_backup_passes_and_its_manifest_reads_back(tmp_path: Path) -> None:
    written = _write_backup(tmp_path)
    assert check_backup(tmp_path) == written


def test_a_backup_without_its_manifest_is_one_that_did_not_finish(tmp_path: Path) -> None:
    _write_backup(tmp_path)
    (tmp_path / MANIFEST_NAME).unlink()
    (problem,) = _refusal(tmp_path)
    assert f"holds no {MANIFEST_NAME}" in problem
    assert "did not finish" in problem


def test_a_changed_byte_of_the_same_size_is_found_by_its_hash(tmp_path: Path) -> None:
    _write_backup(tmp_path)
    path = tmp_path / "database.sqlite3"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert _refusal(tmp_path) == [
        "database.sqlite3: its SHA-256 differs from the manifest's (changed)"
    ]


def test_every_missing_truncated_or_added_file_is_named_at_once(tmp_path: Path) -> None:
    _write_backup(tmp_path)
    (tmp_path / "policies" / "grants.toml").unlink()
    with (tmp_path / "database.sqlite3").open("r+b") as f:
        f.truncate(10)
    (tmp_path / "public" / "departments").mkdir()
    (tmp_path / "public" / "departments" / "tax.public.jwk.json").write_text("{}")
    problems = _refusal(tmp_path)
    assert "policies/grants.toml: missing" in problems
    assert any(p.startswith("database.sqlite3: 10 bytes, the manifest says") for p in problems)
    assert "public/departments/tax.public.jwk.json: not in the manifest" in " ".join(problems)
    assert len(problems) == 3


def test_a_symbolic_link_in_place_of_a_listed_file_is_not_followed(tmp_path: Path) -> None:
    _write_backup(tmp_path)
    real = tmp_path.parent / f"{tmp_path.name}-elsewhere.key"
    real.write_bytes(CONTENTS["keys/audit-hmac.key"][1])
    (tmp_path / "keys" / "audit-hmac.key").unlink()
    os.symlink(real, tmp_path / "keys" / "audit-hmac.key")
    (problem,) = _refusal(tmp_path)
    assert problem.startswith("keys/audit-hmac.key: cannot be read")


@pytest.mark.parametrize(
    "path", ["../outside.toml", "/etc/passwd", "policies//grants.toml", "policies/./x", "a\\b"]
)
def test_a_listed_path_outside_the_backup_is_refused_before_any_file_is_read(
    tmp_path: Path, path: str
) -> None:
    _write_backup(tmp_path)
    manifest = check_backup(tmp_path)
    hostile = BackupFile(path=path, kind="policy", size=0, sha256="00" * 32)
    tampered = msgspec.structs.replace(manifest, files=[*manifest.files, hostile])
    (tmp_path / MANIFEST_NAME).write_bytes(encode_manifest(tampered))
    (problem,) = _refusal(tmp_path)
    assert problem.startswith(f"{MANIFEST_NAME}: file {path!r}")


def test_a_file_listed_twice_and_a_second_database_are_refused(tmp_path: Path) -> None:
    _write_backup(tmp_path)
    manifest = check_backup(tmp_path)
    twice = msgspec.structs.replace(manifest, files=[*manifest.files, manifest.files[0]])
    (tmp_path / MANIFEST_NAME).write_bytes(encode_manifest(twice))
    problems = _refusal(tmp_path)
    assert f"{MANIFEST_NAME}: file 'database.sqlite3' is listed twice" in problems
    assert any("must be the one file of kind 'database'" in p for p in problems)


def test_a_manifest_that_hides_its_secrets_is_refused(tmp_path: Path) -> None:
    _write_backup(tmp_path, holds_secrets=False)
    (problem,) = _refusal(tmp_path)
    assert "holds_secrets is false but 1 secret files are listed" in problem


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: {**m, "format": 2}, "of format 2; this gateway reads format 1 only"),
        (lambda m: {**m, "surprise": True}, "unknown field `surprise`"),
        (lambda m: {**m, "setup": "oracle"}, "`$.setup`"),
        (lambda m: {**m, "audit": {**m["audit"], "root": "xyz"}}, "`$.audit.root`"),
        (lambda m: {**m, "audit": {**m["audit"], "tree_size": -1}}, "`$.audit.tree_size`"),
        (
            lambda m: {**m, "files": [{**m["files"][0], "size": "12"}, *m["files"][1:]]},
            "`$.files[0].size`",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "database"}, "missing required field"),
        (lambda m: {**m, "created_at": "2026-12-01T08:00:00"}, "created_at has no time zone"),
        (lambda m: {**m, "gateway_public_jwk": {"kty": "EC"}}, "`$.gateway_public_jwk`"),
        (
            lambda m: {**m, "gateway_public_jwk": {**GATEWAY_KEY, "kty": "oct", "k": "c2VjcmV0"}},
            "`$.gateway_public_jwk",
        ),
    ],
)
def test_a_manifest_is_decoded_strictly_and_the_field_named(
    tmp_path: Path, change: object, named: str
) -> None:
    _write_backup(tmp_path)
    raw = msgspec.json.decode((tmp_path / MANIFEST_NAME).read_bytes())
    assert callable(change)
    (tmp_path / MANIFEST_NAME).write_bytes(msgspec.json.encode(change(raw)))
    (problem,) = _refusal(tmp_path)
    assert named in problem


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b'{"format": "1"}'])
def test_what_is_not_a_manifest_is_said_to_be_none(data: bytes) -> None:
    with pytest.raises(BackupInvalid) as caught:
        decode_manifest(data)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{MANIFEST_NAME} is not a backup manifest")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(sorted(CONTENTS)), position=st.integers(0, 10_000), bit=st.integers(0, 7)
)
def test_any_flipped_bit_of_any_file_is_refused(
    tmp_path_factory: pytest.TempPathFactory, which: str, position: int, bit: int
) -> None:
    directory = tmp_path_factory.mktemp("flip")
    _write_backup(directory)
    path = directory / which
    data = bytearray(path.read_bytes())
    data[position % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))
    assert _refusal(directory) == [f"{which}: its SHA-256 differs from the manifest's (changed)"]
