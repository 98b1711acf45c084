"""The key store of the embedded setup: files under ``keys/``.

Private keys are created on first run with owner-only permissions and never committed
(``.gitignore`` keeps them out). Layout::

    keys/gateway/signing.private.pem          the gateway's first ES256 signing key
    keys/gateway/<kid>.private.pem             an ES256 key made by `gateway keys rotate`;
    keys/gateway/<kid>.private.jwk.json        an SM2 one (OpenSSL's PEM of SM2 keys is not
                                               one `cryptography` reads); which key signs is
                                               in the database (gateway.registry.gateway_keys)
    keys/audit-hmac.key                        secret for keyed subject hashes in the audit log
    keys/departments/<id>.private.jwk.json     a demo department's private key (its side)
    keys/departments/<id>.public.jwk.json      the same key's public half (registered with us)
    keys/seals/<seal id>.private.jwk.json      a demo e-seal's private key (the issuer's side);
                                               its public half is registered as the seal
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.algorithms import SigningKey, load_private_jwk
from gateway.errors import ConfigurationError

__all__ = [
    "department_private_jwk",
    "department_public_jwks",
    "ensure_audit_hmac_key",
    "ensure_department_key",
    "ensure_gateway_key",
    "ensure_operator_token",
    "ensure_seal_key",
    "load_private_jwk",
    "load_seal_key",
    "write_secret",
]


def write_secret(path: Path, data: bytes) -> None:
    """Write a new owner-only file (never over an existing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def ensure_gateway_key(keys_dir: Path) -> ec.EllipticCurvePrivateKey:
    """Load the gateway's signing key, creating it on first run."""
    path = keys_dir / "gateway" / "signing.private.pem"
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ConfigurationError([f"{path}: not an EC private key"])
    return loaded


def ensure_audit_hmac_key(keys_dir: Path) -> bytes:
    """Load the audit subject-hashing secret, creating it on first run."""
    path = keys_dir / "audit-hmac.key"
    if not path.exists():
        write_secret(path, secrets.token_hex(32).encode())
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise ConfigurationError([f"{path}: must hold hexadecimal"]) from None
    if len(key) < 32:
        raise ConfigurationError([f"{path}: must hold at least 32 bytes"])
    return key


def ensure_operator_token(keys_dir: Path, role: str) -> Path:
    """Create a bearer token for an operator role (e.g. ``admin``) on first run."""
    path = keys_dir / "operators" / f"{role}.token"
    if not path.exists():
        write_secret(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path


def _new_key_file(path: Path, alg: str) -> None:
    """A new private JWK file for ``alg`` (ES256, EdDSA or SM2) at ``path``; an existing
    one (another process made it a moment ago) is kept."""
    key = SigningKey.generate(alg)
    with contextlib.suppress(FileExistsError):
        write_secret(path, json.dumps(key.private_jwk(), indent=2).encode())


def ensure_department_key(keys_dir: Path, department: str, *, alg: str) -> dict[str, Any]:
    """Create a demo department's key pair if it has none; return its public JWK."""
    private_path = keys_dir / "departments" / f"{department}.private.jwk.json"
    public_path = keys_dir / "departments" / f"{department}.public.jwk.json"
    if not private_path.exists():
        _new_key_file(private_path, alg)
        public_path.unlink(missing_ok=True)
    if not public_path.exists():
        public_path.write_text(
            json.dumps(load_private_jwk(private_path).public_jwk(), indent=2) + "\n"
        )
    result: dict[str, Any] = json.loads(public_path.read_text())
    return result


def department_private_jwk(keys_dir: Path, department: str) -> SigningKey:
    """The demo department's private key from ``keys/departments``."""
    return load_private_jwk(keys_dir / "departments" / f"{department}.private.jwk.json")


def department_public_jwks(keys_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Public JWKs found under ``keys/departments``, by department id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((keys_dir / "departments").glob("*.public.jwk.json")):
        department = path.name.removesuffix(".public.jwk.json")
        found.setdefault(department, []).append(json.loads(path.read_text()))
    return found


_SEAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _seal_key_path(keys_dir: Path, seal_id: str) -> Path:
    # The seal id becomes a file name: no separators, no leading dot.
    if not _SEAL_ID.fullmatch(seal_id):
        raise ConfigurationError([f"seal id {seal_id!r} is not usable as a key file name"])
    return keys_dir / "seals" / f"{seal_id}.private.jwk.json"


def ensure_seal_key(keys_dir: Path, seal_id: str, *, alg: str) -> dict[str, Any]:
    """Create a demo e-seal's private key if it has none; return the public JWK.

    The private JWK lives in ``keys/seals/<seal_id>.private.jwk.json`` (owner-only, never
    committed); it is created only when missing, so a seal keeps its key across runs. An
    existing key of another algorithm is a configuration error, not silently replaced.
    """
    path = _seal_key_path(keys_dir, seal_id)
    if not path.exists():
        _new_key_file(path, alg)  # another process's key, if it made one a moment ago
    private = load_private_jwk(path)
    if private.algorithm_name != alg:
        raise ConfigurationError([f"{path}: holds an {private.algorithm_name} key, not {alg}"])
    return private.public_jwk()


def load_seal_key(keys_dir: Path, seal_id: str) -> SigningKey:
    """A demo e-seal's private key from ``keys/seals`` (the key object and its algorithm)."""
    return load_private_jwk(_seal_key_path(keys_dir, seal_id))
