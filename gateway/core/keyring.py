"""Key ring: the departments' registered public keys and the gateway's own signing key.

Keys are parsed once (when the ring is built) into ``cryptography`` key objects; the hot path
only looks them up by :class:`KeyId`. A ``kid`` from a token header is an untrusted hint: it
selects a key, and the key — not the token — says which department and algorithm it belongs to.

:func:`load_private_jwk` reads a private JWK file (a department's or an e-seal's); the client
SDK and the server's key store both use it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.api_jws import PyJWS

from gateway.core.sm2 import SM2KeyError, SM2PublicKey
from gateway.errors import ConfigurationError, StoreUnavailable

__all__ = [
    "ALLOWED_ALGORITHMS",
    "GATEWAY_KEY_NBF_LEEWAY",
    "REQUEST_ALGORITHMS",
    "SWITCH_GRACE_SECONDS",
    "DepartmentKey",
    "GatewayKey",
    "GatewayKeyRefused",
    "GatewayKeyStatus",
    "GatewaySigner",
    "KeyId",
    "KeyRing",
    "KeyStatus",
    "gateway_key_for",
    "gateway_public_key",
    "jwk_thumbprint",
    "load_private_jwk",
    "public_jwk",
]

_JWS = PyJWS()

KeyId = NewType("KeyId", str)
"""A key identifier (``kid``): the RFC 7638 thumbprint of the public key."""

#: Asymmetric algorithms a department key may use. Never ``none``, never HS*.
ALLOWED_ALGORITHMS = frozenset({"ES256", "EdDSA"})
#: What a department's *request* keys may also use: SM2 (国密, docs/sm2.md). Seals, the SDK's
#: signing and the gateway's own keys take SM2 in a later step; until then only the request
#: path (the key ring and the token verifier) accepts it.
REQUEST_ALGORITHMS = ALLOWED_ALGORITHMS | {"SM2"}

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: What a department's registered key may be (SM2 for request keys only, for now).
DepartmentPublicKey = PublicKey | SM2PublicKey


class KeyStatus(enum.StrEnum):
    """Lifecycle of a registered key. Only ``active`` keys verify new requests."""

    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


def jwk_thumbprint(jwk: Mapping[str, Any]) -> KeyId:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the key's required members."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}.get(jwk.get("kty", ""))
    if required is None:
        raise ConfigurationError([f"unsupported key type {jwk.get('kty')!r}"])
    members = {k: jwk[k] for k in required}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).digest()
    return KeyId(jwt.utils.base64url_encode(digest).decode())


def public_jwk(key: PrivateKey | PublicKey, *, alg: str) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (its thumbprint), ``alg`` and ``use``."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.pop("kid", None)
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": alg, "use": "sig"}


def load_private_jwk(path: Path) -> jwt.PyJWK:
    """A private JWK file (a department's or a seal's), parsed: key object and algorithm."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError([f"{path}: {exc}"]) from None
    if "d" not in data:
        raise ConfigurationError([f"{path}: not a private key"])
    return jwt.PyJWK(data, algorithm=data.get("alg"))


@dataclass(frozen=True, slots=True)
class DepartmentKey:
    """A department's registered public key, parsed once."""

    kid: KeyId
    department: str
    alg: str
    status: KeyStatus
    public_key: DepartmentPublicKey
    jwk: Mapping[str, Any]

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any], *, department: str, status: KeyStatus
    ) -> DepartmentKey:
        """Parse a public JWK; its ``alg`` must be in :data:`REQUEST_ALGORITHMS`."""
        alg = jwk.get("alg")
        if alg not in REQUEST_ALGORITHMS:
            raise ConfigurationError([f"key of {department}: alg {alg!r} is not allowed"])
        if "d" in jwk:
            raise ConfigurationError([f"key of {department}: a private key was registered"])
        if alg == "SM2":
            return cls._sm2(jwk, department=department, status=status)
        parsed = jwt.PyJWK(dict(jwk), algorithm=alg)
        public = parsed.key
        if alg == "ES256" and not (
            isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
        ):
            raise ConfigurationError([f"key of {department}: ES256 needs a P-256 key"])
        if alg == "EdDSA" and not isinstance(public, ed25519.Ed25519PublicKey):
            raise ConfigurationError([f"key of {department}: EdDSA needs an Ed25519 key"])
        kid = jwk_thumbprint(jwk)
        if jwk.get("kid", kid) != kid:
            raise ConfigurationError([f"key of {department}: kid is not the key's thumbprint"])
        return cls(
            kid=kid,
            department=department,
            alg=alg,
            status=status,
            public_key=public,
            jwk=public_jwk(public, alg=alg),
        )

    @classmethod
    def _sm2(cls, jwk: Mapping[str, Any], *, department: str, status: KeyStatus) -> DepartmentKey:
        try:
            public = SM2PublicKey.from_jwk(dict(jwk))
        except SM2KeyError as exc:
            raise ConfigurationError([f"key of {department}: {exc.field}: {exc.reason}"]) from None
        kid = jwk_thumbprint(public.jwk())  # the same RFC 7638 members as every EC key
        return cls(
            kid=kid,
            department=department,
            alg="SM2",
            status=status,
            public_key=public,
            jwk=public.jwk(),
        )


class KeyRing:
    """Immutable map from key id to :class:`DepartmentKey`."""

    def __init__(self, keys: Iterable[DepartmentKey]) -> None:
        self._keys: dict[str, DepartmentKey] = {k.kid: k for k in keys}

    def get(self, kid: str) -> DepartmentKey | None:
        """The key registered under ``kid``, whatever its status, or ``None``."""
        return self._keys.get(kid)

    def __len__(self) -> int:
        return len(self._keys)

    def for_department(self, department: str) -> list[DepartmentKey]:
        """All keys registered for ``department``."""
        return [k for k in self._keys.values() if k.department == department]


class GatewayKeyStatus(enum.StrEnum):
    """Lifecycle of one of the gateway's own signing keys.

    ``next``: published in the JWKS, not yet signing (verifiers learn it ahead of use);
    ``active``: signs everything the gateway signs (one key at a time); ``retired``: signs
    nothing any more, stays in the JWKS verify-only so that what it signed still verifies.
    """

    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"


#: Seconds after a key's retirement during which what it signed is still accepted: every
#: gateway process picks up a switch within its watch interval (a second), and a request that
#: arrived just before the switch is signed with the key in force when it arrived.
SWITCH_GRACE_SECONDS = 10

#: Tolerated clock difference between hosts on a key's ``nbf`` (its activation): the answer to
#: a request that arrived a moment before the switch carries that instant as ``iat``.
GATEWAY_KEY_NBF_LEEWAY = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayKey:
    """One of the gateway's signing keys as the key set records it (public half only).

    ``active_from`` is None for a key that was never active, and for the first key of a
    gateway (adopted from before key sets existed: it may have signed anything before).
    ``retire_by`` is the planned retirement (an expiry alert is raised ahead of it).
    """

    kid: KeyId
    alg: str
    status: GatewayKeyStatus
    public_jwk: Mapping[str, Any]
    published_at: dt.datetime
    active_from: dt.datetime | None = None
    retired_at: dt.datetime | None = None
    retire_by: dt.datetime | None = None

    def published(self) -> dict[str, Any]:
        """The key as the JWKS lists it: the public JWK, ``status``, and its validity as
        ``nbf`` (active from) and ``exp`` (the last second it may have signed anything:
        retirement plus :data:`SWITCH_GRACE_SECONDS`), in seconds since the epoch."""
        jwk: dict[str, Any] = {**self.public_jwk, "status": str(self.status)}
        if self.active_from is not None:
            jwk["nbf"] = int(self.active_from.timestamp())
        if self.retired_at is not None:
            jwk["exp"] = int(self.retired_at.timestamp()) + SWITCH_GRACE_SECONDS
        return jwk


class GatewayKeyRefused(ValueError):
    """A gateway JWS whose key the JWKS does not vouch for (the message says why)."""


def gateway_key_for(jwks: Mapping[str, Any], *, kid: object, iat: object) -> dict[str, Any]:
    """The gateway's ES256 JWK that may have signed a JWS with header ``kid`` and claim
    ``iat``, from the JWKS as served; :class:`GatewayKeyRefused` if there is none.

    A key with ``exp`` (retired) vouches only for what was signed by then; a key with ``nbf``
    only for what was signed after it became active (within
    :data:`GATEWAY_KEY_NBF_LEEWAY`). A JWS without a numeric ``iat`` is vouched for only by
    a key with neither. Used by the SDK, the offline verifier and the witness alike.
    """
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else []:
        if not (isinstance(jwk, dict) and jwk.get("kid") == kid and jwk.get("alg") == "ES256"):
            continue
        signed_at = iat if isinstance(iat, int) and not isinstance(iat, bool) else None
        exp, nbf = jwk.get("exp"), jwk.get("nbf")
        if exp is not None and (signed_at is None or not isinstance(exp, int) or signed_at > exp):
            raise GatewayKeyRefused(f"gateway key {kid!r} was retired before this was signed")
        if nbf is not None and (
            signed_at is None
            or not isinstance(nbf, int)
            or signed_at < nbf - GATEWAY_KEY_NBF_LEEWAY
        ):
            raise GatewayKeyRefused(f"gateway key {kid!r} was not active when this was signed")
        return jwk
    raise GatewayKeyRefused(f"no gateway key {kid!r} in the JWKS")


#: Members the JWKS adds to a gateway key (see :meth:`GatewayKey.published`).
_LIFECYCLE_MEMBERS = ("status", "nbf", "exp")


def gateway_public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The ES256 public key of a gateway JWK as the JWKS lists it (lifecycle members aside)."""
    public = {k: v for k, v in jwk.items() if k not in _LIFECYCLE_MEMBERS}
    key: PublicKey = jwt.PyJWK(public, algorithm="ES256").key
    return key


@dataclass(frozen=True, slots=True)
class _SigningState:
    """What one swap installs: the active key (if this process holds its private half),
    the keys as published, and the parsed public keys by kid."""

    kid: KeyId | None
    private_key: ec.EllipticCurvePrivateKey | None
    public_jwk: dict[str, Any]
    keys: tuple[GatewayKey, ...]
    jwks: dict[str, Any]


class GatewaySigner:
    """The gateway's signing keys: signs with the active one, publishes all of them (next,
    active, retired) as a JWKS.

    Built with one private key (a key set of one, as a gateway without rotation has), then
    kept current by :meth:`use` whenever the key set changes (one reference swap: a signature
    in progress finishes with the key it started with).
    """

    algorithm = "ES256"

    def __init__(self, *, private_key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        _check_gateway_key(private_key)
        self.issuer = issuer
        jwk = public_jwk(private_key, alg=self.algorithm)
        key = GatewayKey(
            kid=KeyId(jwk["kid"]),
            alg=self.algorithm,
            status=GatewayKeyStatus.ACTIVE,
            public_jwk=jwk,
            published_at=dt.datetime.fromtimestamp(0, dt.UTC),
        )
        self._state = self._build([key], {key.kid: private_key})

    def _build(
        self,
        keys: Sequence[GatewayKey],
        private_keys: Mapping[str, ec.EllipticCurvePrivateKey],
    ) -> _SigningState:
        active = [k for k in keys if k.status is GatewayKeyStatus.ACTIVE]
        if len(active) > 1:
            raise ConfigurationError(["the gateway key set has more than one active key"])
        kid = active[0].kid if active else None
        private = private_keys.get(kid) if kid is not None else None
        if private is not None:
            _check_gateway_key(private)
            if public_jwk(private, alg=self.algorithm)["kid"] != kid:
                raise ConfigurationError([f"the private key filed as {kid} is another key"])
        return _SigningState(
            kid=kid,
            private_key=private,
            public_jwk=dict(active[0].public_jwk) if active else {},
            keys=tuple(keys),
            jwks={"keys": [k.published() for k in keys]},
        )

    def use(
        self,
        keys: Sequence[GatewayKey],
        private_keys: Mapping[str, ec.EllipticCurvePrivateKey],
    ) -> None:
        """Sign with the active key of ``keys`` (its private half from ``private_keys``) and
        publish ``keys`` from now on."""
        self._state = self._build(keys, private_keys)

    @property
    def kid(self) -> KeyId:
        """The active key's id."""
        kid = self._state.kid
        if kid is None:
            raise StoreUnavailable("gateway signing key")
        return kid

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The active key's public JWK."""
        return self._state.public_jwk

    @property
    def keys(self) -> tuple[GatewayKey, ...]:
        """Every key of the set, as last installed."""
        return self._state.keys

    @property
    def can_sign(self) -> bool:
        """Whether this process holds the private half of the active key."""
        return self._state.private_key is not None

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """A compact JWS of ``claims`` with the active key, its ``kid`` and ``typ``.

        :class:`~gateway.errors.StoreUnavailable` (503) if this process does not hold the
        active key's private half (a host the new key has not been copied to): signing with
        any other key would give answers the JWKS does not vouch for.
        """
        state = self._state
        if state.private_key is None or state.kid is None:
            raise StoreUnavailable("gateway signing key")
        # PyJWS signs the payload bytes we give it; msgspec encodes them several times
        # faster than the json module that PyJWT.encode would use.
        return _JWS.encode(
            msgspec.json.encode(claims),
            state.private_key,
            algorithm=self.algorithm,
            headers={"kid": state.kid, "typ": typ},
        )

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set of the gateway's public signing keys: next, active, retired."""
        return self._state.jwks

    def verification_key(self, *, kid: object, iat: object) -> PublicKey | None:
        """The public key of the gateway's own key ``kid`` if the key set vouches for a JWS
        of that ``kid`` signed at ``iat`` (see :func:`gateway_key_for`); else None."""
        try:
            jwk = gateway_key_for(self._state.jwks, kid=kid, iat=iat)
        except GatewayKeyRefused:
            return None
        return gateway_public_key(jwk)


def _check_gateway_key(private_key: object) -> None:
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or (
        private_key.curve.name != "secp256r1"
    ):
        raise ConfigurationError(["the gateway signing key must be a P-256 private key"])
