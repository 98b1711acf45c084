"""Licence status lists, after the W3C Bitstring Status List v1.0.

A :class:`StatusList` is a fixed-size array of small integers (``status_size`` bits each,
most significant bit first, entry 0 in the left-most bits of the first byte, as the W3C
specification lays it out). The gateway publishes each list as a JWT it signs with its own key
(:func:`status_list_claims`, signed elsewhere by ``GatewaySigner``) so that a verifier can
fetch whole lists and check any licence on them offline, without telling the gateway which
licence it is looking at.

Licence statuses need more than one bit (valid, suspended, revoked, withdrawn, cancelled), so
the lists use the W3C ``message`` purpose with ``statusSize`` 3 and publish the meaning of each
value in ``statusMessages``. Expiry is not published: it follows from the sealed validity dates.

Indexes are handed out at random among the free entries of a list
(:func:`allocate_status_entry`), so a licence's index says nothing about when it was issued.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import random
import secrets
import zlib
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Annotated, Any

import msgspec

from gateway.core.jose import JoseError, claims_of, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import gateway_public_key
from gateway.core.protocol import TokenType
from gateway.errors import Error, InvalidInput

__all__ = [
    "MIN_ENTRIES",
    "StatusList",
    "StatusListRejected",
    "StatusRef",
    "allocate_status_entry",
    "status_list_claims",
    "verify_gateway_claims",
    "verify_status_list_token",
]


#: The W3C minimum: 131,072 entries (16 KiB uncompressed at one bit each), so that a list is
#: large enough that being on it says little about who the holder is (herd privacy).
MIN_ENTRIES = 131_072

#: The ``typ`` header of a signed status list the gateway publishes.

#: Bits per entry of licence status lists: enough for the five licence statuses.
LICENCE_STATUS_SIZE = 3

#: Slack allowed between the verifier's clock and the gateway's for ``iat``.
CLOCK_SKEW = dt.timedelta(seconds=60)


class StatusListRejected(Error):
    """A signed status list (or other gateway snapshot) failed verification; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatusRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a licence's status is published: the list's id and the entry's index."""

    # Bounded where senders reach them (a sealed licence carries its reference): a URL of
    # printable ASCII, an index any list can have.
    list_id: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[\x21-\x7e]+$")]
    index: Annotated[int, msgspec.Meta(ge=0, lt=2**31)]


class StatusList:
    """A mutable status list of ``size`` entries of ``status_size`` bits, all 0 at first."""

    def __init__(
        self,
        list_id: str,
        size: int = MIN_ENTRIES,
        *,
        status_size: int = LICENCE_STATUS_SIZE,
        bits: bytes | None = None,
    ) -> None:
        if size < MIN_ENTRIES:
            raise InvalidInput("status_list.size", f"must be at least {MIN_ENTRIES}")
        if not 1 <= status_size <= 8:
            raise InvalidInput("status_list.status_size", "must be 1 to 8 bits")
        nbytes = (size * status_size + 7) // 8
        if bits is not None and len(bits) != nbytes:
            raise InvalidInput("status_list.bits", f"must be {nbytes} bytes for {size} entries")
        self.list_id = list_id
        self.size = size
        self.status_size = status_size
        self._bits = bytearray(bits if bits is not None else nbytes)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise InvalidInput("status_list.index", f"must be in 0..{self.size - 1}")

    def get(self, index: int) -> int:
        """The value of entry ``index``."""
        self._check(index)
        value = 0
        start = index * self.status_size
        for bit in range(start, start + self.status_size):
            value = (value << 1) | ((self._bits[bit >> 3] >> (7 - (bit & 7))) & 1)
        return value

    def set(self, index: int, value: int) -> None:
        """Set entry ``index`` to ``value`` (which must fit in ``status_size`` bits)."""
        self._check(index)
        if not 0 <= value < (1 << self.status_size):
            raise InvalidInput("status_list.value", f"must fit in {self.status_size} bits")
        start = index * self.status_size
        for offset in range(self.status_size):
            bit = start + offset
            mask = 1 << (7 - (bit & 7))
            if (value >> (self.status_size - 1 - offset)) & 1:
                self._bits[bit >> 3] |= mask
            else:
                self._bits[bit >> 3] &= ~mask & 0xFF

    def bits(self) -> bytes:
        """A copy of the raw (uncompressed) bitstring."""
        return bytes(self._bits)

    def encode(self) -> str:
        """The W3C ``encodedList``: multibase ``u`` + base64url (no padding) of the gzip."""
        # mtime=0 makes the encoding a function of the bits only, so equal lists publish
        # byte-identical documents (cacheable, comparable).
        compressed = gzip.compress(bytes(self._bits), compresslevel=9, mtime=0)
        return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(
        cls,
        list_id: str,
        encoded: str,
        *,
        status_size: int = LICENCE_STATUS_SIZE,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> StatusList:
        """Parse an ``encodedList``; the size is what the bitstring holds.

        ``max_bytes`` caps the decompressed size: a few KiB of gzip can expand enormously.
        """
        if not encoded.startswith("u"):
            raise InvalidInput("encodedList", "must be multibase base64url (prefix 'u')")
        body = encoded[1:]
        try:
            compressed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            raw = inflater.decompress(compressed, max_bytes + 1)
        except (binascii.Error, ValueError, zlib.error):
            raise InvalidInput("encodedList", "is not base64url-encoded gzip") from None
        if len(raw) > max_bytes or inflater.unconsumed_tail or not inflater.eof:
            raise InvalidInput("encodedList", "is truncated or larger than allowed")
        return cls(list_id, len(raw) * 8 // status_size, status_size=status_size, bits=raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatusList) and (
            self.list_id,
            self.size,
            self.status_size,
            self._bits,
        ) == (other.list_id, other.size, other.status_size, other._bits)

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable


def status_list_claims(
    status_list: StatusList,
    *,
    issuer: str,
    now: dt.datetime,
    ttl: dt.timedelta,
    status_messages: Mapping[int, str],
) -> dict[str, Any]:
    """The claims of a signed status list (a W3C ``BitstringStatusListCredential`` as a JWT).

    ``status_messages`` maps each value to its meaning; verifiers read it from the signed list
    rather than from their own copy, so the meanings cannot drift apart.
    """
    iat = int(now.timestamp())
    return {
        "iss": issuer,
        "sub": status_list.list_id,
        "iat": iat,
        "exp": iat + int(ttl.total_seconds()),
        "vc": {
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "credentialSubject": {
                "id": status_list.list_id,
                "type": "BitstringStatusList",
                "statusPurpose": "message",
                "statusSize": status_list.status_size,
                "statusMessages": [
                    {"status": hex(value), "message": message}
                    for value, message in sorted(status_messages.items())
                ],
                "encodedList": status_list.encode(),
            },
        },
    }


def verify_gateway_claims(
    token: str, *, gateway_jwk: Mapping[str, Any], typ: str, issuer: str, now: dt.datetime
) -> dict[str, Any]:
    """Verify a JWS the gateway signed (status list, seal registry snapshot); its claims.

    Checks the signature with the gateway's public JWK (with the key's algorithm, ES256 or
    SM2), the ``typ``, ``kid``, ``iss``, that ``iat`` is not in the future and that ``exp``
    has not passed at ``now``.
    """
    try:
        jws = parse_compact(token, allowed_members={"alg", "kid", "typ"})
    except JoseError as exc:
        raise StatusListRejected(f"not a gateway JWS: {exc.reason}") from None
    try:
        alg, key = gateway_public_key(gateway_jwk)
    except ValueError as exc:
        raise StatusListRejected(f"not a gateway key: {exc}") from None
    # The key's algorithm (ES256 or SM2), never the header's choice.
    if not verify_signature(jws, alg=alg, key=key):
        raise StatusListRejected("signature does not verify with the gateway key")
    header = jws.header
    if header.typ != typ:
        raise StatusListRejected(f"typ must be {typ}")
    if "kid" in gateway_jwk and header.kid != gateway_jwk["kid"]:
        raise StatusListRejected("kid is not the gateway key's")
    claims = claims_of(jws)
    if claims is None:
        raise StatusListRejected("claims are not a strict JSON object")
    if claims.get("iss") != issuer:
        raise StatusListRejected("issued by someone else")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise StatusListRejected("iat and exp must be integers")
    ts = now.timestamp()
    if iat > ts + CLOCK_SKEW.total_seconds():
        raise StatusListRejected("issued in the future")
    if exp <= ts:
        raise StatusListRejected("expired")
    return claims


def verify_status_list_token(
    token: str, *, gateway_jwk: Mapping[str, Any], issuer: str, now: dt.datetime
) -> tuple[StatusList, dict[int, str]]:
    """Verify a signed status list; the list and its value → meaning map."""
    claims = verify_gateway_claims(
        token, gateway_jwk=gateway_jwk, typ=TokenType.STATUS_LIST, issuer=issuer, now=now
    )
    try:
        subject = claims["vc"]["credentialSubject"]
        status_size = subject["statusSize"]
        messages = {int(m["status"], 16): str(m["message"]) for m in subject["statusMessages"]}
        if subject["id"] != claims["sub"] or not isinstance(status_size, int):
            raise StatusListRejected("subject does not match the list")
        status_list = StatusList.decode(
            str(subject["id"]), str(subject["encodedList"]), status_size=status_size
        )
    except (KeyError, TypeError, ValueError, InvalidInput) as exc:
        raise StatusListRejected(f"not a status list credential: {exc}") from None
    return status_list, messages


def allocate_status_entry(
    allocated: Mapping[str, AbstractSet[int]],
    *,
    new_list_id: Callable[[], str],
    size: int = MIN_ENTRIES,
    capacity: int | None = None,
    rng: random.Random | None = None,
    attempts: int = 64,
) -> StatusRef:
    """Choose a free (list, index) for a new licence, at random.

    ``allocated`` maps each existing list to the indexes already handed out (the caller keeps
    them). Indexes are drawn uniformly from the free entries so that neither the index nor the
    choice of list reveals issue order; when every list is full a fresh one is named with
    ``new_list_id``. A list counts as full once ``capacity`` entries (default: all) are
    handed out; a capacity below ``size`` keeps the draws cheap and never lets a list's free
    entries become so few that the next index is guessable. ``rng`` is injectable for tests;
    by default it is the OS CSPRNG because a predictable index would let an observer link
    licences to issue times.
    """
    rng = rng or secrets.SystemRandom()
    limit = size if capacity is None else min(capacity, size)
    open_lists: Sequence[str] = sorted(
        list_id for list_id, used in allocated.items() if len(used) < limit
    )
    if not open_lists:
        return StatusRef(new_list_id(), rng.randrange(size))
    list_id = rng.choice(open_lists)
    used = allocated[list_id]
    # Rejection sampling is uniform over free entries and fast while the list is sparse;
    # a nearly full list falls back to choosing among the enumerated free indexes.
    for _ in range(attempts):
        index = rng.randrange(size)
        if index not in used:
            return StatusRef(list_id, index)
    free = [i for i in range(size) if i not in used]
    return StatusRef(list_id, rng.choice(free))
