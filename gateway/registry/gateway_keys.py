"""The gateway's own signing keys: their lifecycle in the database, their private halves in
files.

Which key signs is one shared fact for every gateway process on every host, so it lives in
the database they all use (table ``gateway_keys``: public JWK, status next / active /
retired, ``published_at``, ``active_from``, ``retired_at``, the planned ``retire_by``); each
process watches it (:class:`gateway.registry.keys.KeyAdministration`) and switches within a
second, with no restart. The private halves never enter the database (its backups and
replicas travel further than the key directory): each is a file
``keys/gateway/<kid>.private.pem`` (ES256) or ``keys/gateway/<kid>.private.jwk.json`` (SM2),
owner-only, created by ``gateway keys rotate`` on the host it runs on and copied to the other
hosts while the key is published as ``next``. The key of a gateway from before key sets
(``keys/gateway/signing.private.pem``) is adopted as the first active ES256 key, and a new
SM2 key beside it (where the system's libcrypto has SM2).

The set holds one active key per algorithm (ES256 and SM2, docs/sm2.md), each rotated on its
own: ``gateway keys rotate --alg SM2``.

Rotation is two runs of one command: the first publishes a next key; the second, once the
next key has been in the JWKS for at least twice the JWKS cache lifetime (every verifier
that caches the JWKS has seen it), makes it active and retires the old one in one
transaction. Retired keys stay in the JWKS, verify-only, with their validity.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError

from gateway.core.algorithms import (
    GATEWAY_ALGORITHMS,
    PrivateKey,
    SigningKey,
    algorithm_of,
    load_private_jwk,
)
from gateway.core.keyring import GatewayKey, GatewayKeyStatus, KeyId, public_jwk
from gateway.errors import ConfigurationError
from gateway.registry.keystore import ensure_gateway_key, write_secret
from gateway.storage.schema import gateway_keys

__all__ = [
    "Rotated",
    "RotationRefused",
    "adopt_first_key",
    "gateway_keys_revision",
    "load_gateway_keys",
    "load_private_keys",
    "retire_gateway_key",
    "rotate_gateway_key",
]

log = logging.getLogger(__name__)

_DEFAULT_ALG = "ES256"
_KID = re.compile(r"[A-Za-z0-9_-]{43}")  # a base64url SHA-256 thumbprint: a safe file name


class RotationRefused(Exception):
    """A rotation or retirement that would break verifiers or the signing (says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotated:
    """What one ``rotate`` did: published a next key, or switched to it."""

    published: KeyId | None = None  # the next key created and published
    activated: KeyId | None = None  # the next key now active...
    retired: KeyId | None = None  # ...and the key it replaced
    early: bool = False  # switched before 2 × the JWKS cache lifetime had passed


def _key_path(keys_dir: Path, kid: str, alg: str = _DEFAULT_ALG) -> Path:
    if not _KID.fullmatch(kid):
        raise ConfigurationError([f"{kid!r} is not a gateway key id"])
    suffix = ".private.jwk.json" if alg == "SM2" else ".private.pem"
    return keys_dir / "gateway" / f"{kid}{suffix}"


def _read_private(path: Path) -> PrivateKey:
    if path.name.endswith(".jwk.json"):
        key = load_private_jwk(path)
        if key.algorithm_name != "SM2":
            raise ConfigurationError([f"{path}: not an SM2 private key"])
        return key.key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise ConfigurationError([f"{path}: not a P-256 private key"])
    return loaded


def load_private_keys(keys_dir: Path) -> dict[str, PrivateKey]:
    """Every gateway private key found under ``keys/gateway``, by its kid (thumbprint).

    A file that cannot be read as one (withdrawn while this runs, damaged) is left out and
    logged: if it held the active key this process signs nothing (503) and says why, which
    is better than a watcher that stops following the key set."""
    found: dict[str, PrivateKey] = {}
    directory = keys_dir / "gateway"
    paths = [*directory.glob("*.private.pem"), *directory.glob("*.private.jwk.json")]
    for path in sorted(paths):
        try:
            key = _read_private(path)
        except (OSError, ValueError, TypeError, ConfigurationError) as exc:
            log.error("gateway key file %s is not usable: %s", path, exc)
            continue
        found[public_jwk(key, alg=algorithm_of(key))["kid"]] = key
    return found


def _key(row: sa.Row[tuple[object, ...]] | sa.RowMapping) -> GatewayKey:
    def utc(value: dt.datetime | None) -> dt.datetime | None:
        # SQLite hands naive datetimes back; they were written in UTC.
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=dt.UTC)

    m = row if isinstance(row, sa.RowMapping) else row._mapping
    published = utc(m["published_at"])
    assert published is not None
    return GatewayKey(
        kid=KeyId(m["kid"]),
        alg=m["alg"],
        status=GatewayKeyStatus(m["status"]),
        public_jwk=json.loads(m["jwk"]),
        published_at=published,
        active_from=utc(m["active_from"]),
        retired_at=utc(m["retired_at"]),
        retire_by=utc(m["retire_by"]),
    )


def load_gateway_keys(engine: sa.Engine) -> list[GatewayKey]:
    """Every gateway key of the set, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(gateway_keys).order_by(gateway_keys.c.published_at, gateway_keys.c.kid)
        ).all()
    return [_key(r) for r in rows]


def gateway_keys_revision(engine: sa.Engine) -> tuple[int, str]:
    """A cheap fingerprint of the key set: changes whenever a key is added or changed."""
    with engine.connect() as conn:
        count, latest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(gateway_keys.c.updated_at))
        ).one()
    return int(count), str(latest)


def _insert(
    conn: sa.Connection,
    key: PrivateKey,
    *,
    status: GatewayKeyStatus,
    now: dt.datetime,
    retire_by: dt.datetime,
) -> KeyId:
    alg = algorithm_of(key)
    jwk = public_jwk(key, alg=alg)
    conn.execute(
        gateway_keys.insert().values(
            kid=jwk["kid"],
            alg=alg,
            jwk=json.dumps(jwk),
            status=status,
            published_at=now,
            retire_by=retire_by,
            updated_at=now,
        )
    )
    return KeyId(jwk["kid"])


def adopt_first_key(
    engine: sa.Engine, keys_dir: Path, *, now: dt.datetime, lifetime: dt.timedelta
) -> KeyId | None:
    """Make ``keys/gateway/signing.private.pem`` (created if missing) the active ES256 key
    of an empty key set, and a new SM2 key the active SM2 key (where libcrypto has SM2); the
    ES256 kid adopted, or None when the set already had keys.

    The adopted key has no ``active_from``: it may have signed anything before the set
    existed, and all of that must keep verifying. The SM2 key is new: it has signed nothing,
    and no verifier can have been told to expect anything else of an SM2 gateway key.
    """
    key = ensure_gateway_key(keys_dir)
    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(gateway_keys)).scalar():
            return None
    try:
        sm2_key: PrivateKey | None = _new_private_key(keys_dir, "SM2")
    except ConfigurationError as exc:  # a libcrypto without SM2: ES256 alone
        log.warning("no SM2 gateway key: %s", exc)
        sm2_key = None
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(gateway_keys)).scalar():
                adopted = None
            else:
                adopted = _insert(
                    conn, key, status=GatewayKeyStatus.ACTIVE, now=now, retire_by=now + lifetime
                )
                if sm2_key is not None:
                    _insert(
                        conn,
                        sm2_key,
                        status=GatewayKeyStatus.ACTIVE,
                        now=now,
                        retire_by=now + lifetime,
                    )
                    sm2_key = None  # kept: it is in the set now
    except IntegrityError:
        adopted = None  # another process adopted its keys a moment ago
    if sm2_key is not None:  # not used: its file goes
        with contextlib.suppress(OSError):
            _key_path(keys_dir, public_jwk(sm2_key, alg="SM2")["kid"], "SM2").unlink()
    return adopted


def _new_private_key(keys_dir: Path, alg: str) -> PrivateKey:
    signing = SigningKey.generate(alg)
    key = signing.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = json.dumps(signing.private_jwk(), indent=2).encode()
    path = _key_path(keys_dir, signing.key_id, alg)
    # Written aside, then renamed: a process reading the directory meanwhile sees the whole
    # key or none of it.
    partial = path.with_name(path.name + ".partial")
    write_secret(partial, data)
    partial.rename(path)
    return key


def _by_status(conn: sa.Connection, status: GatewayKeyStatus, alg: str) -> list[GatewayKey]:
    rows = conn.execute(
        sa.select(gateway_keys)
        .where(gateway_keys.c.status == status, gateway_keys.c.alg == alg)
        .order_by(gateway_keys.c.published_at)
        # Two rotations at once are serialised on the rows they change (PostgreSQL; SQLite
        # serialises every writing transaction anyway).
        .with_for_update()
    ).all()
    return [_key(r) for r in rows]


def rotate_gateway_key(
    engine: sa.Engine,
    keys_dir: Path,
    *,
    now: dt.datetime,
    jwks_max_age: int,
    lifetime: dt.timedelta,
    early: bool = False,
    alg: str = _DEFAULT_ALG,
) -> Rotated:
    """One step of a rotation of the ``alg`` key (see the module docstring): publish a next
    key when there is none; else switch to it, refused (:class:`RotationRefused`) while it
    has been published for less than 2 × ``jwks_max_age`` seconds, unless ``early``. The
    first SM2 key of a set that has none is rotated in the same way: verifiers learn it
    before any answer is signed with it."""
    if alg not in GATEWAY_ALGORITHMS:
        raise ConfigurationError([f"a gateway key is ES256 or SM2, not {alg!r}"])
    with engine.begin() as conn:
        active = _by_status(conn, GatewayKeyStatus.ACTIVE, alg)
        upcoming = _by_status(conn, GatewayKeyStatus.NEXT, alg)
        if not upcoming:
            key = _new_private_key(keys_dir, alg)
            try:
                kid = _insert(
                    conn, key, status=GatewayKeyStatus.NEXT, now=now, retire_by=now + lifetime
                )
            except BaseException:
                with contextlib.suppress(OSError):
                    _key_path(keys_dir, public_jwk(key, alg=alg)["kid"], alg).unlink()
                raise
            return Rotated(published=kid)
        (following,) = upcoming[:1]
        ready_at = following.published_at + dt.timedelta(seconds=2 * jwks_max_age)
        if now < ready_at and not early:
            raise RotationRefused(
                f"the next key {following.kid} was published at "
                f"{following.published_at:%Y-%m-%d %H:%M:%S}Z; verifiers may cache the JWKS "
                f"for {jwks_max_age} s, so it may become active at "
                f"{ready_at:%Y-%m-%d %H:%M:%S}Z (2 × that), not before"
            )
        if not _key_path(keys_dir, following.kid, alg).exists():
            raise RotationRefused(
                f"the next key's private half {_key_path(keys_dir, following.kid, alg)} is not on "
                "this host: copy it to every gateway host, then switch"
            )
        for old in active:
            conn.execute(
                gateway_keys.update()
                .where(gateway_keys.c.kid == old.kid)
                .values(status=GatewayKeyStatus.RETIRED, retired_at=now, updated_at=now)
            )
        conn.execute(
            gateway_keys.update()
            .where(gateway_keys.c.kid == following.kid)
            .values(
                status=GatewayKeyStatus.ACTIVE,
                active_from=now,
                retire_by=now + lifetime,
                updated_at=now,
            )
        )
    return Rotated(
        activated=following.kid,
        retired=active[0].kid if active else None,
        early=now < ready_at,
    )


def retire_gateway_key(
    engine: sa.Engine, keys_dir: Path, kid: str, *, now: dt.datetime
) -> GatewayKeyStatus:
    """Retire ``kid``; its status before. A next key is withdrawn: it never signed anything,
    so its row and its private file go (the audit entry of the act remains) and the JWKS
    stops listing it. The active key is refused — the gateway would have nothing to sign
    with (rotate instead) — and so is a retired one; ``LookupError`` if there is no such key.
    """
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(gateway_keys).where(gateway_keys.c.kid == kid).with_for_update()
        ).first()
        if row is None:
            raise LookupError(kid)
        key = _key(row)
        if key.status is GatewayKeyStatus.ACTIVE:
            raise RotationRefused(
                f"{kid} is the active key: run `gateway keys rotate` to replace it"
            )
        if key.status is GatewayKeyStatus.RETIRED:
            raise RotationRefused(f"{kid} is retired already (since {key.retired_at})")
        conn.execute(gateway_keys.delete().where(gateway_keys.c.kid == kid))
    with contextlib.suppress(OSError):
        _key_path(keys_dir, kid, key.alg).unlink()
    return key.status
