"""Compact JWS, parsed strictly once: the one place a sender's JOSE bytes are taken apart.

PyJWT's parser is lenient where a gateway must not be: it reads JSON with the standard
library (``NaN``, ``Infinity``, lone surrogates and 1,000-level nesting all pass or raise out
of the request), accepts any JSON type for ``alg``, and checks base64url one character at a
time in Python. Here a token is split once, each segment is checked to be canonical unpadded
base64url, the header is decoded strictly (:func:`gateway.core.wire.decode_json`) into a typed
:class:`JoseHeader`, and the payload is handed on as bytes for the caller's typed decoder.
The signature itself is checked by PyJWT's algorithm objects over ``cryptography``.

Every refusal is a :class:`JoseError` whose ``reason`` comes from a fixed vocabulary — it
never repeats what the sender sent, so it can be stored and shown safely.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

import jwt
import msgspec

from gateway.core.wire import WireError, decode_json

__all__ = [
    "KNOWN_HEADER_MEMBERS",
    "CompactJWS",
    "JoseError",
    "JoseHeader",
    "claims_of",
    "parse_compact",
    "verify",
]

#: Header members with a registered meaning (RFC 7515, RFC 7519) that a refusal may name;
#: any other member is reported as ``other``.
KNOWN_HEADER_MEMBERS: Final = frozenset(
    {
        "alg",
        "kid",
        "typ",
        "cty",
        "jwk",
        "jku",
        "x5u",
        "x5c",
        "x5t",
        "x5t#S256",
        "crit",
        "b64",
        "zip",
        "enc",
    }
)
_B64URL: Final = re.compile(rb"[A-Za-z0-9_-]*")
_MAX_HEADER_BYTES: Final = 1024


class JoseError(ValueError):
    """A compact JWS that cannot be accepted; ``reason`` is from a fixed vocabulary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JoseHeader(msgspec.Struct, frozen=True):
    """The protected header's members the gateway reads, each of the right JSON type."""

    alg: str
    typ: str | None = None
    kid: str | None = None


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS split and decoded once; nothing verified yet."""

    header: JoseHeader
    members: frozenset[str]
    payload: bytes
    signing_input: bytes
    signature: bytes


def _segment(data: bytes) -> bytes:
    # One C-level check of the alphabet, then the canonical form only: padding, stray bytes
    # or non-zero trailing bits would give one token several spellings.
    if not _B64URL.fullmatch(data) or len(data) % 4 == 1:
        raise JoseError("malformed")
    try:
        raw = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise JoseError("malformed") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != data:
        raise JoseError("malformed")
    return raw


def parse_compact(token: bytes | str, *, allowed_members: Collection[str]) -> CompactJWS:
    """Split ``token`` (compact serialisation, ASCII) and decode its header strictly.

    ``allowed_members``: the header members the caller understands; any other — above all
    the key-bearing ``jwk``, ``jku``, ``x5u``, ``x5c`` and the must-understand ``crit`` —
    refuses the token (reason ``header-not-allowed:<names>``, unknown names as ``other``).
    """
    data = token.encode("ascii", "replace") if isinstance(token, str) else token
    data = data.strip()
    parts = data.split(b".")
    if len(parts) != 3:
        raise JoseError("malformed")
    if len(parts[0]) > _MAX_HEADER_BYTES * 4 // 3 + 4:
        raise JoseError("header-too-large")
    header_bytes = _segment(parts[0])
    try:
        raw = decode_json(header_bytes, what="header")
    except WireError:
        raise JoseError("header-malformed") from None
    if not isinstance(raw, dict):
        raise JoseError("header-malformed")
    extra = set(raw) - set(allowed_members)
    if extra:
        named = sorted({m if m in KNOWN_HEADER_MEMBERS else "other" for m in extra})
        raise JoseError(f"header-not-allowed:{','.join(named)}")
    try:
        header = msgspec.convert(raw, JoseHeader)
    except msgspec.ValidationError as exc:
        raise JoseError(_header_reason(str(exc))) from None
    return CompactJWS(
        header=header,
        members=frozenset(raw),
        payload=_segment(parts[1]),
        signing_input=parts[0] + b"." + parts[1],
        signature=_segment(parts[2]),
    )


def claims_of(jws: CompactJWS) -> dict[str, Any] | None:
    """The payload of ``jws`` as a JSON object, decoded strictly
    (:func:`gateway.core.wire.decode_json`: no ``NaN``, no lone surrogates, bounded depth), or
    None if it is not one. Nothing is verified here: the caller checks the signature."""
    try:
        claims = decode_json(jws.payload, what="claims")
    except WireError:
        return None
    return claims if isinstance(claims, dict) else None


def _header_reason(message: str) -> str:
    for member in ("alg", "typ", "kid"):
        if f"`{member}`" in message or f"$.{member}" in message:
            return f"header-{member}-invalid"
    return "header-malformed"


def verify(jws: CompactJWS, *, alg: str, key: Any) -> bool:
    """Whether ``jws`` carries a valid ``alg`` signature by ``key`` (never raises for a bad
    signature: wrong length, bad encoding and mismatch are all ``False``).

    ``alg`` is the algorithm registered with the key, never the header's choice; the header
    must name the same one.
    """
    if jws.header.alg != alg:
        return False
    if alg == "SM2":
        # The commercial-cryptography profile (docs/sm2.md): SM2 with SM3 over Z‖M, r‖s.
        from gateway.core import sm2  # here: sm2 builds on this module's parsed JWS

        return isinstance(key, sm2.SM2PublicKey) and sm2.verify(jws, key=key)
    try:
        verified: bool = jwt.get_algorithm_by_name(alg).verify(
            jws.signing_input, key, jws.signature
        )
    except (ValueError, TypeError):
        return False
    return verified
