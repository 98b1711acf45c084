"""Strict verification of the signed request tokens that departments send.

Every rule of DESIGN.md's security section is one explicit step here, and every failure is a
:class:`~gateway.errors.TokenRejected` whose ``reason`` goes to the audit log only. Time is
passed in (``now``) rather than read from the clock, so tests can pin it and replay windows
are computed from the same instant the checks used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec

from gateway.core.keyring import ALLOWED_ALGORITHMS, DepartmentKey, KeyId, KeyRing, KeyStatus
from gateway.errors import TokenRejected

__all__ = [
    "BATCH_REQUEST_TYP",
    "BATCH_RESULT_TYP",
    "CASE_CLOSE_REQUEST_TYP",
    "CASE_CLOSE_RESULT_TYP",
    "INVALIDATE_REQUEST_TYP",
    "INVALIDATE_RESULT_TYP",
    "LOOKUP_REQUEST_TYP",
    "LOOKUP_RESULT_TYP",
    "MANIFEST_REQUEST_TYP",
    "MANIFEST_RESULT_TYP",
    "RequestTokenVerifier",
    "VerifiedToken",
]

#: ``typ`` header of a department's lookup request token.
LOOKUP_REQUEST_TYP = "yiwang-lookup+jwt"
#: ``typ`` header of the gateway's signed lookup answer.
LOOKUP_RESULT_TYP = "yiwang-lookup-result+jwt"
#: Batch lookups: request and answer.
BATCH_REQUEST_TYP = "yiwang-lookup-batch+jwt"
BATCH_RESULT_TYP = "yiwang-lookup-batch-result+jwt"
#: Manifests of a service item for an applicant: request and answer.
MANIFEST_REQUEST_TYP = "yiwang-manifest+jwt"
MANIFEST_RESULT_TYP = "yiwang-manifest-result+jwt"
#: A provider signalling changed records (cache invalidation): request and receipt.
INVALIDATE_REQUEST_TYP = "yiwang-invalidate+jwt"
INVALIDATE_RESULT_TYP = "yiwang-invalidated+jwt"
#: A consumer declaring a case closed: request and receipt.
CASE_CLOSE_REQUEST_TYP = "yiwang-case-close+jwt"
CASE_CLOSE_RESULT_TYP = "yiwang-case-closed+jwt"

# Header members we understand. Anything else — above all the key-bearing ``jwk``, ``jku``,
# ``x5u``, ``x5c`` and the must-understand ``crit`` — makes the token unacceptable: we never
# follow a key or URL that the token carries, and we cannot honour extensions we do not know.
_ALLOWED_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
_MAX_JTI_LENGTH = 128


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A request token whose signature, header and registered claims all passed."""

    department: str
    kid: KeyId
    claims: dict[str, Any]
    jti: str
    expires_at: float
    sha256: str


def _peek_header(text: str) -> dict[str, Any]:
    """Read the protected header without verifying it, only to choose the key.

    PyJWT then parses and verifies the whole token; reading the header here first spares a
    second full parse (PyJWT's ``get_unverified_header`` decodes every segment).
    """
    segment = text.split(".", 1)[0]
    header = msgspec.json.decode(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    if not isinstance(header, dict) or text.count(".") != 2:
        raise ValueError("not a compact JWS")
    return header


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int in Python; a JSON true is not a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"claim-{name}-not-numeric")
    return float(value)


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
        text, key, header = self._select_key(token, typ)
        claims = self._decode(text, key, header)
        try:
            exp, jti = self._check_times(claims, now)
        except TokenRejected as exc:
            exc.claimed_issuer = key.department
            raise
        return VerifiedToken(
            department=key.department,
            kid=key.kid,
            claims=claims,
            jti=jti,
            expires_at=exp,
            sha256=hashlib.sha256(token.strip()).hexdigest(),
        )

    def _select_key(self, token: bytes, typ: str) -> tuple[str, DepartmentKey, dict[str, Any]]:
        """Header checks; the registered key that ``kid`` names (an untrusted hint)."""
        try:
            text = token.decode("ascii").strip()
            header = _peek_header(text)
        except (UnicodeDecodeError, ValueError, binascii.Error, msgspec.DecodeError):
            raise TokenRejected("malformed") from None

        extra = set(header) - _ALLOWED_HEADER_MEMBERS
        if extra:
            raise TokenRejected(f"header-not-allowed:{','.join(sorted(extra))}")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:  # also refuses "none" in every spelling and HS*
            raise TokenRejected("alg-not-allowed")
        if header.get("typ") != typ:
            raise TokenRejected("wrong-typ")
        kid = header.get("kid")
        key = self._keyring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRejected("unknown-kid")
        if key.status is not KeyStatus.ACTIVE:
            raise TokenRejected(f"key-{key.status}", claimed_issuer=key.department)
        if alg != key.alg:
            raise TokenRejected("alg-not-allowed-for-key", claimed_issuer=key.department)
        return text, key, header

    def _decode(self, text: str, key: DepartmentKey, peeked: dict[str, Any]) -> dict[str, Any]:
        """Signature, audience, issuer and presence of the registered claims."""
        try:
            verified = jwt.decode_complete(
                text,
                key=key.public_key,
                # Only the algorithm registered with this key: never trust the header's choice.
                algorithms=[key.alg],
                # The token must be meant for this gateway...
                audience=self._audience,
                # ...and issued by the department that owns the key that signed it.
                issuer=key.department,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    # Time claims are checked below against the caller's ``now``.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": ["iss", "aud", "iat", "exp", "jti"],
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad-signature", claimed_issuer=key.department) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong-aud", claimed_issuer=key.department) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("iss-not-key-owner", claimed_issuer=key.department) from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing-{exc.claim}", claimed_issuer=key.department) from None
        except jwt.InvalidTokenError:  # includes a ``crit`` header PyJWT itself refuses
            raise TokenRejected("invalid", claimed_issuer=key.department) from None
        # The key was chosen from our own quick read of the header; the header PyJWT verified
        # must be exactly that one, or the two parsers disagreed about an unsigned hint.
        if verified["header"] != peeked:
            raise TokenRejected("header-mismatch", claimed_issuer=key.department)
        claims: dict[str, Any] = verified["payload"]
        if not isinstance(claims, dict):
            raise TokenRejected("invalid", claimed_issuer=key.department)
        return claims

    def _check_times(self, claims: dict[str, Any], now: float) -> tuple[float, str]:
        """Lifetime rules against the caller's ``now``; returns ``exp`` and ``jti``."""
        exp = _number(claims, "exp")
        iat = _number(claims, "iat")
        if now > exp + self._leeway:
            raise TokenRejected("expired")
        if iat > now + self._leeway:
            raise TokenRejected("issued-in-future")
        if "nbf" in claims and _number(claims, "nbf") > now + self._leeway:
            raise TokenRejected("not-yet-valid")
        if exp <= iat:
            raise TokenRejected("exp-before-iat")
        if exp - iat > self._max_lifetime:
            raise TokenRejected("lifetime-too-long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_LENGTH:
            raise TokenRejected("bad-jti")
        return exp, jti
