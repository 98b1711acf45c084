"""The signature algorithms a key may use — ES256, EdDSA and SM2 — in one place.

Which key object goes with which ``alg``, how a key becomes a JWK and back, how a compact JWS
is made with it: every signer of the gateway (its answers, checkpoints, status lists, seal
registry snapshots), every key file (a department's, a seal's) and the SDK go through here, so
that an algorithm is added once and checked the same way everywhere. Verification is
:func:`gateway.core.jose.verify`, which dispatches on the same names.

SM2 is the commercial-cryptography profile of ``docs/sm2.md`` (``crv: SM2`` JWKs, ``alg: SM2``,
``r‖s`` signatures over SM3(Z‖M) with the user id ``1234567812345678``); ES256 and EdDSA keys
are ``cryptography``'s, read from JWKs by PyJWT and signed with directly (the same bytes
PyJWT's encoder writes, tests/unit/test_algorithms.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NewType

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.core import sm2
from gateway.core.sm2 import SM2KeyError, SM2PrivateKey, SM2PublicKey
from gateway.errors import ConfigurationError

__all__ = [
    "ALGORITHMS",
    "GATEWAY_ALGORITHMS",
    "KeyId",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "algorithm_of",
    "generate_private_key",
    "header_segment",
    "jwk_thumbprint",
    "load_private_jwk",
    "public_jwk",
    "public_key_from_jwk",
    "sign_compact",
    "sign_with_header",
]

#: Asymmetric algorithms a key may use. Never ``none``, never HS*.
ALGORITHMS: Final = frozenset({"ES256", "EdDSA", "SM2"})
#: What the gateway's own signing keys may use (its answers, checkpoints, documents).
GATEWAY_ALGORITHMS: Final = frozenset({"ES256", "SM2"})

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | SM2PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | SM2PublicKey

KeyId = NewType("KeyId", str)
"""A key identifier (``kid``): the RFC 7638 thumbprint of the public key."""


def algorithm_of(key: PrivateKey | PublicKey) -> str:
    """The one algorithm ``key`` signs with: ES256 for P-256, EdDSA for Ed25519, SM2 for SM2.

    ``ValueError`` for any other key (another curve, RSA): no key here has two algorithms.
    """
    if isinstance(key, SM2PrivateKey | SM2PublicKey):
        return "SM2"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
        key.curve.name == "secp256r1"
    ):
        return "ES256"
    raise ValueError("not an ES256, EdDSA or SM2 key")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> KeyId:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the key's required members: the
    ``kid`` of every key here, SM2's included (docs/sm2.md says why SHA-256)."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}.get(jwk.get("kty", ""))
    if required is None:
        raise ConfigurationError([f"unsupported key type {jwk.get('kty')!r}"])
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return KeyId(jwt.utils.base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode())


def public_jwk(key: PrivateKey | PublicKey, *, alg: str) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (its RFC 7638 thumbprint), ``alg`` and ``use``.

    ``alg`` must be the key's own algorithm (:func:`algorithm_of`): ``ValueError`` otherwise.
    """
    if algorithm_of(key) != alg:
        raise ValueError(f"a {algorithm_of(key)} key does not sign {alg}")
    if isinstance(key, SM2PrivateKey):
        return key.public_key.jwk()
    if isinstance(key, SM2PublicKey):
        return key.jwk()
    public = (
        key.public_key()
        if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
        else key
    )
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.pop("kid", None)
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": alg, "use": "sig"}


def public_key_from_jwk(jwk: Mapping[str, Any], *, alg: str) -> PublicKey:
    """The public key of ``jwk`` for algorithm ``alg``, parsed strictly.

    ``ValueError`` (with a reason that names no value of the sender's) when ``alg`` is not
    allowed, the JWK holds a private member, its key is not ``alg``'s (an SM2 key under ES256,
    a P-384 key, an RSA key) or its ``kid`` is not its thumbprint.
    """
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise ValueError(f"alg {alg!r} is not allowed" if isinstance(alg, str) else "alg")
    if "d" in jwk:
        raise ValueError("a private key where a public key belongs")
    if alg == "SM2":
        try:
            return SM2PublicKey.from_jwk(dict(jwk))
        except SM2KeyError as exc:
            raise ValueError(f"{exc.field}: {exc.reason}") from None
    if jwk.get("crv") == "SM2":
        raise ValueError(f"an SM2 key does not sign {alg}")
    try:
        public = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise ValueError(f"not a {alg} public key") from None
    if not isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"not a {alg} public key")
    try:
        own = algorithm_of(public)
    except ValueError:
        own = None
    if own != alg:
        raise ValueError("ES256 needs a P-256 key" if alg == "ES256" else "EdDSA needs Ed25519")
    if jwk.get("kid", None) not in (None, jwk_thumbprint(jwk)):
        raise ValueError("kid is not the key's thumbprint")
    return public


def generate_private_key(alg: str) -> PrivateKey:
    """A new private key for ``alg`` from the platform's CSPRNG."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "SM2":
        return sm2.generate_private_key()
    raise ConfigurationError([f"alg {alg!r} is not allowed for a key (ES256, EdDSA or SM2)"])


def sign_compact(payload: bytes, *, key: PrivateKey, alg: str, headers: Mapping[str, Any]) -> str:
    """A compact JWS of ``payload`` signed by ``key`` with ``alg`` and the protected header
    ``{"alg", "typ": "JWT", **headers}`` (keys sorted, as PyJWT writes them; ``headers`` may
    name another ``alg`` only to make a token that must be refused)."""
    return sign_with_header(header_segment(alg, headers), payload, key=key, alg=alg)


def header_segment(alg: str, headers: Mapping[str, Any]) -> bytes:
    """The first segment of a compact JWS: the protected header ``{"alg", "typ": "JWT",
    **headers}``, keys sorted, base64url. The same for every JWS one signer makes of one
    kind: a signer keeps it (:meth:`gateway.core.keyring.GatewaySigner.sign`)."""
    header = json.dumps(
        {"typ": "JWT", "alg": alg, **headers}, separators=(",", ":"), sort_keys=True
    )
    return _b64(header.encode())


def sign_with_header(header: bytes, payload: bytes, *, key: PrivateKey, alg: str) -> str:
    """A compact JWS of ``payload`` under the :func:`header_segment` ``header``, signed by
    ``key`` with ``alg`` (which must be the key's).

    The signature calls are ``cryptography``'s (and SM2's, :mod:`gateway.core.sm2`)
    directly: PyJWT's encoder around the same calls cost ~11 µs more per answer, a third of
    an ES256 signature (docs/performance.md).
    """
    if algorithm_of(key) != alg:
        raise ValueError(f"a {algorithm_of(key)} key does not sign {alg}")
    signing_input = header + b"." + _b64(payload)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, _ES256))
        signature = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
    else:  # Ed25519 and SM2 keys sign the input themselves, r‖s for SM2
        signature = key.sign(signing_input)
    return (signing_input + b"." + _b64(signature)).decode("ascii")


_ES256: Final = ec.ECDSA(hashes.SHA256())
_P256_BYTES: Final = 32


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A private key with the one algorithm it signs with: what a key file holds.

    ``key_id`` is always the thumbprint of the public key (a file's own ``kid`` must agree).
    Built by :meth:`from_jwk`, :meth:`generate` or :func:`load_private_jwk`; its ``repr``
    never shows the secret.
    """

    key: PrivateKey
    algorithm_name: str
    key_id: KeyId

    @classmethod
    def of(cls, key: PrivateKey) -> SigningKey:
        """``key`` with its algorithm and thumbprint."""
        alg = algorithm_of(key)
        return cls(key=key, algorithm_name=alg, key_id=public_jwk(key, alg=alg)["kid"])

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        """A new key for ``alg``."""
        return cls.of(generate_private_key(alg))

    @classmethod
    def from_jwk(cls, data: Mapping[str, Any]) -> SigningKey:
        """A private JWK (``d`` present), strictly: its ``alg`` must be the key's own
        algorithm, its ``kid`` (if any) the thumbprint. ``ValueError`` otherwise."""
        if not isinstance(data, Mapping) or "d" not in data:
            raise ValueError("not a private key")
        alg = data.get("alg")
        if data.get("crv") == "SM2":
            if alg not in (None, "SM2"):
                raise ValueError(f"an SM2 key does not sign {alg}")
            try:
                key: PrivateKey = SM2PrivateKey.from_jwk(dict(data))
            except SM2KeyError as exc:
                raise ValueError(f"{exc.field}: {exc.reason}") from None
        else:
            if not isinstance(alg, str) or alg not in ALGORITHMS:
                raise ValueError(f"alg {alg!r} is not allowed" if isinstance(alg, str) else "alg")
            try:
                parsed = jwt.PyJWK(dict(data), algorithm=alg).key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                raise ValueError(f"not a {alg} private key") from None
            if not isinstance(parsed, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
                raise ValueError(f"not a {alg} private key")
            key = parsed
        signing = cls.of(key)
        if alg is not None and signing.algorithm_name != alg:
            raise ValueError(f"a {signing.algorithm_name} key does not sign {alg}")
        if data.get("kid", signing.key_id) != signing.key_id:
            raise ValueError("kid is not the key's thumbprint")
        return signing

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK, with ``kid``, ``alg`` and ``use``."""
        return public_jwk(self.key, alg=self.algorithm_name)

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK (for a key file: never logged, never sent)."""
        if isinstance(self.key, SM2PrivateKey):
            return self.key.private_jwk()
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.key, as_dict=True)
        return {**jwk, "kid": self.key_id, "alg": self.algorithm_name, "use": "sig"}

    def signature(self, signing_input: bytes) -> bytes:
        """The raw JWS signature of ``signing_input`` in this key's algorithm (``r‖s`` for
        ES256 and SM2): for a test that builds a token byte by byte."""
        if isinstance(self.key, SM2PrivateKey):
            return self.key.sign(signing_input)
        signed: bytes = jwt.get_algorithm_by_name(self.algorithm_name).sign(signing_input, self.key)
        return signed

    def sign(self, payload: bytes, *, headers: Mapping[str, Any]) -> str:
        """A compact JWS of ``payload``; the header carries this key's ``kid`` unless
        ``headers`` names another (a test of a wrong kid)."""
        return sign_compact(
            payload, key=self.key, alg=self.algorithm_name, headers={"kid": self.key_id, **headers}
        )

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.algorithm_name!r}, kid={self.key_id!r})"


def load_private_jwk(path: Path) -> SigningKey:
    """A private JWK file (a department's, a seal's, an SM2 gateway key's), parsed strictly."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError([f"{path}: {exc}"]) from None
    try:
        return SigningKey.from_jwk(data)
    except ValueError as exc:
        raise ConfigurationError([f"{path}: {exc}"]) from None
