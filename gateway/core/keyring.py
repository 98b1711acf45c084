"""Key ring: the departments' registered public keys and the gateway's own signing key.

Keys are parsed once (when the ring is built) into ``cryptography`` key objects; the hot path
only looks them up by :class:`KeyId`. A ``kid`` from a token header is an untrusted hint: it
selects a key, and the key — not the token — says which department and algorithm it belongs to.

:func:`load_private_jwk` reads a private JWK file (a department's or an e-seal's); the client
SDK and the server's key store both use it.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.api_jws import PyJWS

from gateway.errors import ConfigurationError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DepartmentKey",
    "GatewaySigner",
    "KeyId",
    "KeyRing",
    "KeyStatus",
    "jwk_thumbprint",
    "load_private_jwk",
    "public_jwk",
]

_JWS = PyJWS()

KeyId = NewType("KeyId", str)
"""A key identifier (``kid``): the RFC 7638 thumbprint of the public key."""

#: Asymmetric algorithms a department key may use. Never ``none``, never HS*.
ALLOWED_ALGORITHMS = frozenset({"ES256", "EdDSA"})

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


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
    public_key: PublicKey
    jwk: Mapping[str, Any]

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any], *, department: str, status: KeyStatus
    ) -> DepartmentKey:
        """Parse a public JWK; its ``alg`` must be in :data:`ALLOWED_ALGORITHMS`."""
        alg = jwk.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise ConfigurationError([f"key of {department}: alg {alg!r} is not allowed"])
        if "d" in jwk:
            raise ConfigurationError([f"key of {department}: a private key was registered"])
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


class GatewaySigner:
    """The gateway's signing key: signs answers and publishes its public half as a JWKS."""

    algorithm = "ES256"

    def __init__(self, *, private_key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or (
            private_key.curve.name != "secp256r1"
        ):
            raise ConfigurationError(["the gateway signing key must be a P-256 private key"])
        self._private_key = private_key
        self.issuer = issuer
        self.public_jwk = public_jwk(private_key, alg=self.algorithm)
        self.kid = KeyId(self.public_jwk["kid"])

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """A compact JWS of ``claims`` with this key, ``kid`` and the given ``typ``."""
        # PyJWS signs the payload bytes we give it; msgspec encodes them several times
        # faster than the json module that PyJWT.encode would use.
        return _JWS.encode(
            msgspec.json.encode(claims),
            self._private_key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, "typ": typ},
        )

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set of the gateway's public signing keys."""
        return {"keys": [self.public_jwk]}
