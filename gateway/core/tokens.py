"""Strict verification of the signed request tokens that departments send.

Every rule of the security section of docs/architecture.md is one explicit step here, and
every failure is a :class:`~gateway.errors.TokenRejected` whose ``reason`` goes to the audit
log only. Time is passed in (``now``) rather than read from the clock, so tests can pin it and
replay windows are computed from the same instant the checks used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from gateway.core.jose import CompactJWS, JoseError, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import ALLOWED_ALGORITHMS, DepartmentKey, KeyId, KeyRing, KeyStatus
from gateway.core.wire import Name, NumericDate, WireError, decode_json
from gateway.errors import TokenRejected

__all__ = [
    "RequestTokenVerifier",
    "VerifiedToken",
]

#: ``typ`` header of a department's lookup request token.
#: ``typ`` header of the gateway's signed lookup answer.
#: Batch lookups: request and answer.
#: Manifests of a service item for an applicant: request and answer.
#: A provider signalling changed records (cache invalidation): request and receipt.
#: A consumer declaring a case closed: request and receipt.

# Header members we understand. Anything else — above all the key-bearing ``jwk``, ``jku``,
# ``x5u``, ``x5c`` and the must-understand ``crit`` — makes the token unacceptable: we never
# follow a key or URL that the token carries, and we cannot honour extensions we do not know.
_ALLOWED_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
_MAX_JTI_LENGTH = 128
_REGISTERED = ("iss", "aud", "iat", "exp", "jti", "nbf")


class _RegisteredClaims(msgspec.Struct, frozen=True):
    """The registered claims every request token carries, each of its type and range.

    Times are whole seconds inside :data:`~gateway.core.wire.NumericDate`'s window: a float,
    a huge integer or anything non-finite is refused here, before any comparison is made.
    """

    iss: Name
    aud: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    iat: NumericDate
    exp: NumericDate
    # Kept in the replay cache and the durable store: printable ASCII, bounded.
    jti: Annotated[
        str, msgspec.Meta(min_length=1, max_length=_MAX_JTI_LENGTH, pattern=r"^[\x21-\x7e]+$")
    ]
    nbf: NumericDate | None = None


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A request token whose signature, header and registered claims all passed."""

    department: str
    kid: KeyId
    alg: str  # the registered key's algorithm (answers may follow it)
    claims: dict[str, Any]
    jti: str
    expires_at: int
    sha256: str


def _registered(claims: dict[str, Any]) -> _RegisteredClaims:
    try:
        return msgspec.convert(claims, _RegisteredClaims)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for name in _REGISTERED:
            if f"`{name}`" in message and message.startswith("Object missing required field"):
                raise TokenRejected(f"missing-{name}") from None
            if message.endswith(f"`$.{name}`"):
                raise TokenRejected(f"claim-{name}-invalid") from None
        raise TokenRejected("invalid") from None


class RequestTokenVerifier:
    """Verifies department request tokens against the key ring.

    ``audience`` is this gateway's id; ``max_lifetime`` caps ``exp - iat``; ``leeway`` is the
    clock skew tolerated on ``exp``/``iat``/``nbf``; ``max_bytes`` caps the compact token.
    """

    def __init__(
        self,
        *,
        keyring: KeyRing,
        audience: str,
        max_lifetime: int = 300,
        leeway: int = 30,
        max_bytes: int = 8192,
    ) -> None:
        self._keyring = keyring
        self._audience = audience
        self._max_lifetime = max_lifetime
        self._leeway = leeway
        self._max_bytes = max_bytes
        self.replay_window = max_lifetime + 2 * leeway

    @property
    def leeway(self) -> int:
        return self._leeway

    @property
    def keyring(self) -> KeyRing:
        """The key ring requests are verified against."""
        return self._keyring

    def use_keyring(self, keyring: KeyRing) -> None:
        """Verify later requests against ``keyring`` (a key was added, retired or revoked).

        One reference swap: a request in flight finishes with the ring it started with.
        """
        self._keyring = keyring

    def verify(
        self, token: bytes, *, typ: str, now: float, max_bytes: int | None = None
    ) -> VerifiedToken:
        """Verify ``token`` (compact JWS bytes) as a request of type ``typ`` at time ``now``."""
        if len(token) > (self._max_bytes if max_bytes is None else max_bytes):
            raise TokenRejected("token-too-large")
        jws, key = self._select_key(token, typ)
        try:
            claims, registered = self._decode(jws, key)
            self._check_times(registered, now)
        except TokenRejected as exc:
            exc.claimed_issuer = key.department
            raise
        return VerifiedToken(
            department=key.department,
            kid=key.kid,
            alg=key.alg,
            claims=claims,
            jti=registered.jti,
            expires_at=registered.exp,
            sha256=hashlib.sha256(token.strip()).hexdigest(),
        )

    def _select_key(self, token: bytes, typ: str) -> tuple[CompactJWS, DepartmentKey]:
        """Header checks; the registered key that ``kid`` names (an untrusted hint)."""
        try:
            jws = parse_compact(token, allowed_members=_ALLOWED_HEADER_MEMBERS)
        except JoseError as exc:
            raise TokenRejected(exc.reason) from None
        header = jws.header
        if header.alg not in ALLOWED_ALGORITHMS:  # also refuses "none" in every spelling and HS*
            raise TokenRejected("alg-not-allowed")
        if header.typ != typ:
            raise TokenRejected("wrong-typ")
        key = self._keyring.get(header.kid) if header.kid is not None else None
        if key is None:
            raise TokenRejected("unknown-kid")
        if key.status is not KeyStatus.ACTIVE:
            raise TokenRejected(f"key-{key.status}", claimed_issuer=key.department)
        if header.alg != key.alg:
            raise TokenRejected("alg-not-allowed-for-key", claimed_issuer=key.department)
        return jws, key

    def _decode(
        self, jws: CompactJWS, key: DepartmentKey
    ) -> tuple[dict[str, Any], _RegisteredClaims]:
        """Signature (with the algorithm registered for the key), then the payload decoded
        strictly, then audience and issuer."""
        if not verify_signature(jws, alg=key.alg, key=key.public_key):
            raise TokenRejected("bad-signature")
        try:
            claims = decode_json(jws.payload, what="payload")
        except WireError:
            raise TokenRejected("payload-malformed") from None
        if not isinstance(claims, dict):
            raise TokenRejected("payload-malformed")
        registered = _registered(claims)
        # The token must be meant for this gateway...
        if registered.aud != self._audience:
            raise TokenRejected("wrong-aud")
        # ...and issued by the department that owns the key that signed it.
        if registered.iss != key.department:
            raise TokenRejected("iss-not-key-owner")
        return claims, registered

    def _check_times(self, claims: _RegisteredClaims, now: float) -> None:
        """Lifetime rules against the caller's ``now`` (whole seconds, all finite)."""
        exp, iat = claims.exp, claims.iat
        if now > exp + self._leeway:
            raise TokenRejected("expired")
        if iat > now + self._leeway:
            raise TokenRejected("issued-in-future")
        if claims.nbf is not None and claims.nbf > now + self._leeway:
            raise TokenRejected("not-yet-valid")
        if exp <= iat:
            raise TokenRejected("exp-before-iat")
        if exp - iat > self._max_lifetime:
            raise TokenRejected("lifetime-too-long")
