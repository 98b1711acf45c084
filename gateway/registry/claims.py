"""A department's own key requests, as the gateway validates them; and the proof that it
holds a new key.

Both are compact JWS signed with one of the department's **active** keys, with the
registered claims every request token carries (``iss aud iat exp jti``); the answers are
JWTs signed by the gateway for the department::

    POST /v1/keys            typ yiwang-key-register+jwt
        claims  operator, jwk (the new public JWK), proof, expires_at? (epoch seconds)
        answer  yiwang-key-registered+jwt   {department, kid, status, expires_at}
    POST /v1/keys:retire     typ yiwang-key-retire+jwt
        claims  operator, kid (one of the department's active keys)
        answer  yiwang-key-retired+jwt      {department, kid, status, previous}

The **proof of possession** is a compact JWS signed by the *new* key (``typ``
``yiwang-key-proof+jwt``, ``alg`` the key's), whose payload binds it to this act:
``{"department": <id>, "kid": <the new key's thumbprint>, "aud": <the gateway's id>,
"jti": <the registration request's jti>}``. An administrator registering a key for a
department (no request token) gets a proof with ``iat`` (within five minutes of now) instead
of ``jti``. A proof is therefore good for one registration of one key for one department.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from gateway.core.jose import JoseError, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import ALLOWED_ALGORITHMS, DepartmentKey, KeyStatus, jwk_thumbprint
from gateway.core.protocol import TokenType
from gateway.core.wire import Name, NumericDate, ShortText, Text, WireError, convert, decode_json
from gateway.errors import ConfigurationError, InvalidInput

__all__ = [
    "CLAIM_TYPES",
    "PROOF_MAX_AGE_SECONDS",
    "KeyRegistration",
    "KeyRetirement",
    "check_new_key",
    "parse_key_registration_claims",
    "parse_key_retirement_claims",
]

_PRINTABLE = r"^[\x21-\x7e]+$"
#: How old (or how far ahead) an administrator's proof's ``iat`` may be.
PROOF_MAX_AGE_SECONDS = 300
#: Members that only a private (or symmetric) key has.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_Jwk = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=16, pattern=_PRINTABLE)], ShortText | Text],
    msgspec.Meta(max_length=16),
]
_Proof = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=_PRINTABLE)]
_Kid = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class _KeyRegistrationClaims(msgspec.Struct, frozen=True):
    operator: Name
    jwk: _Jwk
    proof: _Proof
    expires_at: NumericDate | None = None


class _KeyRetirementClaims(msgspec.Struct, frozen=True):
    operator: Name
    kid: _Kid


#: The structure each request's own claims decode into, by the request's ``typ``.
CLAIM_TYPES: dict[str, type[msgspec.Struct]] = {
    TokenType.KEY_REGISTER: _KeyRegistrationClaims,
    TokenType.KEY_RETIRE: _KeyRetirementClaims,
}


@dataclass(frozen=True, slots=True)
class KeyRegistration:
    """A department registers its next key (not yet checked: see :func:`check_new_key`)."""

    department: str
    operator: str
    jwk: Mapping[str, Any]
    proof: str
    expires_at: int | None
    jti: str


@dataclass(frozen=True, slots=True)
class KeyRetirement:
    """A department retires one of its active keys."""

    department: str
    operator: str
    kid: str


def parse_key_registration_claims(department: str, claims: dict[str, Any]) -> KeyRegistration:
    """Validate the claims of a verified key registration token."""
    body = convert(claims, _KeyRegistrationClaims)
    return KeyRegistration(
        department, body.operator, body.jwk, body.proof, body.expires_at, str(claims["jti"])
    )


def parse_key_retirement_claims(department: str, claims: dict[str, Any]) -> KeyRetirement:
    """Validate the claims of a verified key retirement token."""
    body = convert(claims, _KeyRetirementClaims)
    return KeyRetirement(department, body.operator, body.kid)


def check_new_key(
    jwk: Mapping[str, Any],
    *,
    department: str,
    proof: str,
    audience: str,
    jti: str | None,
    expires_at: int | None,
    now: float,
) -> DepartmentKey:
    """The parsed new key of ``department`` if ``jwk`` is a usable public key and ``proof``
    shows the sender holds its private half for this act (see the module docstring); else
    :class:`InvalidInput` naming the field (``jwk``, ``jwk.alg``, ``jwk.kid``, ``proof``,
    ``expires_at``). ``jti``: the registration request's; None for an administrator's."""
    if not isinstance(jwk, Mapping):
        raise InvalidInput("jwk", "must be a JSON object (a public JWK)")
    if _PRIVATE_MEMBERS & set(jwk):
        raise InvalidInput("jwk", "must be a public key: it has a private part")
    alg = jwk.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise InvalidInput("jwk.alg", "must be ES256, EdDSA or SM2")
    try:
        kid = jwk_thumbprint(jwk)
    except (ConfigurationError, KeyError, TypeError):
        raise InvalidInput("jwk", "is not an EC P-256, SM2 or Ed25519 public key") from None
    if "kid" in jwk and jwk["kid"] != kid:
        raise InvalidInput("jwk.kid", "is not the key's RFC 7638 thumbprint")
    if "use" in jwk and jwk["use"] != "sig":
        raise InvalidInput("jwk.use", "must be sig")
    try:
        key = DepartmentKey.from_jwk(
            {k: v for k, v in jwk.items() if k not in ("key_ops",)},
            department=department,
            status=KeyStatus.ACTIVE,
        )
    except Exception:  # any unusable key: the field says which, never the library's text
        raise InvalidInput("jwk", f"is not a usable {alg} public key") from None
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at", "is not in the future")
    _check_proof(proof, key=key, department=department, audience=audience, jti=jti, now=now)
    return key


def _check_proof(
    proof: str, *, key: DepartmentKey, department: str, audience: str, jti: str | None, now: float
) -> None:
    try:
        compact = parse_compact(proof.strip(), allowed_members={"alg", "kid", "typ"})
        if compact.header.alg != key.alg or not verify_signature(
            compact, alg=key.alg, key=key.public_key
        ):
            raise JoseError("bad-signature")
        payload = decode_json(compact.payload, what="proof")
    except (JoseError, WireError, UnicodeError):
        raise InvalidInput("proof", "does not verify with the new key") from None
    if compact.header.typ != TokenType.KEY_PROOF:
        raise InvalidInput("proof", f"must have typ {TokenType.KEY_PROOF}")
    if compact.header.kid is not None and compact.header.kid != key.kid:
        raise InvalidInput("proof", "names another key in its kid")
    if not isinstance(payload, dict) or (
        payload.get("department"),
        payload.get("kid"),
        payload.get("aud"),
    ) != (department, key.kid, audience):
        raise InvalidInput("proof", "must sign this department, the new key's kid and aud")
    if jti is not None:
        if payload.get("jti") != jti:
            raise InvalidInput("proof", "must sign this request's jti")
        return
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or abs(iat - now) > PROOF_MAX_AGE_SECONDS:
        raise InvalidInput("proof", f"must carry an iat within {PROOF_MAX_AGE_SECONDS} s of now")
