"""Key ring: the departments' registered public keys and the gateway's own signing key.

Keys are parsed once (when the ring is built) into ``cryptography`` key objects; the hot path
only looks them up by :class:`KeyId`. A ``kid`` from a token header is an untrusted hint: it
selects a key, and the key — not the token — says which department and algorithm it belongs to.

:func:`load_private_jwk` reads a private JWK file (a department's or an e-seal's); the client
SDK and the server's key store both use it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.core.algorithms import (
    ALGORITHMS,
    GATEWAY_ALGORITHMS,
    KeyId,
    PrivateKey,
    PublicKey,
    SigningKey,
    algorithm_of,
    header_segment,
    jwk_thumbprint,
    load_private_jwk,
    public_jwk,
    public_key_from_jwk,
    sign_with_header,
)
from gateway.core.jose import CompactJWS, JoseError, claims_of, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.errors import ConfigurationError, StoreUnavailable

__all__ = [
    "ALLOWED_ALGORITHMS",
    "GATEWAY_ALGORITHMS",
    "GATEWAY_KEY_NBF_LEEWAY",
    "SWITCH_GRACE_SECONDS",
    "DepartmentKey",
    "GatewayKey",
    "GatewayKeyRefused",
    "GatewayKeyStatus",
    "GatewaySigner",
    "KeyId",
    "KeyRing",
    "KeyStatus",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "gateway_key_for",
    "gateway_public_key",
    "jwk_thumbprint",
    "load_private_jwk",
    "public_jwk",
    "verify_gateway_jws",
]

#: Asymmetric algorithms a department's key (request or seal) may use: ES256, EdDSA and SM2
#: (国密, docs/sm2.md). Never ``none``, never HS*.
ALLOWED_ALGORITHMS = ALGORITHMS


class KeyStatus(enum.StrEnum):
    """Lifecycle of a registered key. Only ``active`` keys verify new requests."""

    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


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
        """Parse a public JWK; its ``alg`` must be in :data:`ALLOWED_ALGORITHMS` and its key
        that algorithm's (:func:`~gateway.core.algorithms.public_key_from_jwk`)."""
        alg = jwk.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise ConfigurationError([f"key of {department}: alg {alg!r} is not allowed"])
        if "d" in jwk:
            raise ConfigurationError([f"key of {department}: a private key was registered"])
        try:
            public = public_key_from_jwk(jwk, alg=alg)
        except ValueError as exc:
            raise ConfigurationError([f"key of {department}: {exc}"]) from None
        published = public_jwk(public, alg=alg)
        return cls(
            kid=KeyId(published["kid"]),
            department=department,
            alg=alg,
            status=status,
            public_key=public,
            jwk=published,
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
    """The gateway's JWK (ES256 or SM2) that may have signed a JWS with header ``kid`` and
    claim ``iat``, from the JWKS as served; :class:`GatewayKeyRefused` if there is none.

    A key with ``exp`` (retired) vouches only for what was signed by then; a key with ``nbf``
    only for what was signed after it became active (within
    :data:`GATEWAY_KEY_NBF_LEEWAY`). A JWS without a numeric ``iat`` is vouched for only by
    a key with neither. Used by the SDK, the offline verifier and the witness alike.
    """
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else []:
        # Whatever the JWKS holds (it may come from the network): a key of a gateway algorithm
        # named by kid, or not this key; an unhashable alg is not a gateway algorithm either.
        alg = jwk.get("alg") if isinstance(jwk, dict) else None
        if not (
            isinstance(jwk, dict)
            and jwk.get("kid") == kid
            and isinstance(alg, str)
            and alg in GATEWAY_ALGORITHMS
        ):
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


def gateway_public_key(jwk: Mapping[str, Any]) -> tuple[str, PublicKey]:
    """The algorithm and public key of a gateway JWK as the JWKS lists it (lifecycle members
    aside); ``ValueError`` for a key that is not a gateway key's (ES256 or SM2)."""
    alg = jwk.get("alg")
    if not isinstance(alg, str) or alg not in GATEWAY_ALGORITHMS:
        raise ValueError("not a gateway key (ES256 or SM2)")
    public = {k: v for k, v in jwk.items() if k not in _LIFECYCLE_MEMBERS}
    return alg, public_key_from_jwk(public, alg=alg)


#: What a gateway JWS's header may carry.
_GATEWAY_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})


def verify_gateway_jws(
    token: str | bytes, *, jwks: Mapping[str, Any], typ: str | None
) -> tuple[CompactJWS, dict[str, Any]]:
    """A JWS the gateway signed (an answer, a receipt, a checkpoint, a status list, a seal
    registry snapshot), verified against its JWKS as served: the parsed JWS and its claims.

    The steps, each refusing with :class:`GatewayKeyRefused` and a reason:

    1. parse strictly (canonical base64url, a header of ``alg``, ``kid``, ``typ`` only);
    2. ``typ`` must be ``typ`` (unless None: the caller checks it);
    3. the claims must be a JSON object (read before the signature only to learn ``iat``);
    4. the key is the one ``kid`` names among the gateway's keys, in force at ``iat``
       (:func:`gateway_key_for`);
    5. the signature must verify with that key's algorithm — the key's, never the header's.

    What the claims say (issuer, audience, times) is the caller's to check.
    """
    try:
        jws = parse_compact(token, allowed_members=_GATEWAY_HEADER_MEMBERS)
    except JoseError as exc:
        raise GatewayKeyRefused(f"not a gateway JWS ({exc.reason})") from None
    if typ is not None and jws.header.typ != typ:
        raise GatewayKeyRefused(f"typ must be {typ}")
    claims = claims_of(jws)
    if claims is None:
        raise GatewayKeyRefused("claims are not a strict JSON object")
    jwk = gateway_key_for(jwks, kid=jws.header.kid, iat=claims.get("iat"))
    try:
        alg, key = gateway_public_key(jwk)
    except ValueError as exc:
        raise GatewayKeyRefused(f"gateway key {jws.header.kid!r} is not usable: {exc}") from None
    if not verify_signature(jws, alg=alg, key=key):
        raise GatewayKeyRefused("signature does not verify with the gateway key")
    return jws, claims


@dataclass(frozen=True, slots=True)
class _ActiveKey:
    """The active key of one algorithm: its id, public JWK and (if this process holds it)
    its private half."""

    kid: KeyId
    public_jwk: dict[str, Any]
    private_key: PrivateKey | None
    #: The protected header's segment for each ``typ`` this key has signed: the same bytes
    #: every time (a few kinds of document), so made once.
    headers: dict[str, bytes] = field(default_factory=dict)

    def header(self, alg: str, typ: str) -> bytes:
        """The header segment of a ``typ`` document signed by this key (``alg``: its own)."""
        segment = self.headers.get(typ)
        if segment is None:
            segment = header_segment(alg, {"kid": self.kid, "typ": typ})
            if len(self.headers) < _MAX_KEPT_HEADERS:
                self.headers[typ] = segment
        return segment


#: More kinds of document than the gateway signs: a bound, not a limit.
_MAX_KEPT_HEADERS = 64


@dataclass(frozen=True, slots=True)
class _SigningState:
    """What one swap installs: the active key of each algorithm, the keys as published."""

    active: Mapping[str, _ActiveKey]
    keys: tuple[GatewayKey, ...]
    jwks: dict[str, Any]
    #: Every key of the set parsed once per swap: what this gateway checks its own JWSs with.
    public_keys: Mapping[str, tuple[str, PublicKey]]


class GatewaySigner:
    """The gateway's signing keys: signs with the active key of an algorithm, publishes all
    of them (next, active, retired; ES256 and SM2) as one JWKS.

    ``answer_algorithm`` (ES256 or SM2) signs everything by default — answers, receipts,
    checkpoints, status lists, registry snapshots. With ``answers_follow_department``, an
    answer to a department whose request key is SM2 is signed with the active SM2 key (and
    to any other department with ES256), so that a 国密 department verifies SM2 only.

    Built with one private key (a key set of one, as a gateway without rotation has), then
    kept current by :meth:`use` whenever the key set changes (one reference swap: a signature
    in progress finishes with the key it started with).
    """

    def __init__(
        self,
        *,
        private_key: PrivateKey,
        issuer: str,
        answer_algorithm: str | None = None,
        answers_follow_department: bool = False,
    ) -> None:
        alg = _check_gateway_key(private_key)
        if answer_algorithm is not None and answer_algorithm not in GATEWAY_ALGORITHMS:
            raise ConfigurationError([f"answer algorithm {answer_algorithm!r}: ES256 or SM2"])
        self.issuer = issuer
        self.answer_algorithm: str = answer_algorithm or alg
        self.answers_follow_department = answers_follow_department
        jwk = public_jwk(private_key, alg=alg)
        key = GatewayKey(
            kid=KeyId(jwk["kid"]),
            alg=alg,
            status=GatewayKeyStatus.ACTIVE,
            public_jwk=jwk,
            published_at=dt.datetime.fromtimestamp(0, dt.UTC),
        )
        self._state = self._build([key], {key.kid: private_key})

    @staticmethod
    def _build(keys: Sequence[GatewayKey], private_keys: Mapping[str, PrivateKey]) -> _SigningState:
        active: dict[str, _ActiveKey] = {}
        for key in keys:
            if key.status is not GatewayKeyStatus.ACTIVE:
                continue
            if key.alg in active:
                raise ConfigurationError(
                    [f"the gateway key set has more than one active {key.alg} key"]
                )
            private = private_keys.get(key.kid)
            if private is not None:
                if _check_gateway_key(private) != key.alg:
                    raise ConfigurationError(
                        [f"the private key filed as {key.kid} is not {key.alg}"]
                    )
                if public_jwk(private, alg=key.alg)["kid"] != key.kid:
                    raise ConfigurationError([f"the private key filed as {key.kid} is another key"])
            active[key.alg] = _ActiveKey(key.kid, dict(key.public_jwk), private)
        return _SigningState(
            active=active,
            keys=tuple(keys),
            jwks={"keys": [k.published() for k in keys]},
            public_keys={k.kid: _parsed(k) for k in keys},
        )

    def use(self, keys: Sequence[GatewayKey], private_keys: Mapping[str, PrivateKey]) -> None:
        """Sign with the active keys of ``keys`` (their private halves from ``private_keys``)
        and publish ``keys`` from now on."""
        self._state = self._build(keys, private_keys)

    def _active(self, alg: str | None) -> _ActiveKey | None:
        return self._state.active.get(alg or self.answer_algorithm)

    @property
    def algorithm(self) -> str:
        """The algorithm that signs by default (the answer algorithm)."""
        return self.answer_algorithm

    @property
    def kid(self) -> KeyId:
        """The active key's id (of the answer algorithm)."""
        active = self._active(None)
        if active is None:
            raise StoreUnavailable("gateway signing key")
        return active.kid

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The active key's public JWK (of the answer algorithm; empty if there is none)."""
        active = self._active(None)
        return dict(active.public_jwk) if active is not None else {}

    @property
    def keys(self) -> tuple[GatewayKey, ...]:
        """Every key of the set, as last installed."""
        return self._state.keys

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms the set has an active key for."""
        return frozenset(self._state.active)

    @property
    def can_sign(self) -> bool:
        """Whether this process holds the private half of every active key (and there is an
        active key of the answer algorithm)."""
        active = self._state.active
        return self.answer_algorithm in active and all(
            a.private_key is not None for a in active.values()
        )

    def algorithm_for(self, department_alg: str | None) -> str:
        """The algorithm of an answer to a department whose request key is ``department_alg``."""
        # Following, a department is answered in its key's algorithm whenever the set has an
        # active key of it (an EdDSA department, or an SM2 one before the gateway has an SM2
        # key, in the answer algorithm). A key whose private half this process lacks is not
        # skipped: signing with it says 503, as for the answer algorithm's.
        if (
            self.answers_follow_department
            and department_alg is not None
            and department_alg in self._state.active
        ):
            return department_alg
        return self.answer_algorithm

    def sign(self, claims: Mapping[str, Any], *, typ: str, alg: str | None = None) -> str:
        """A compact JWS of ``claims`` with the active key of ``alg`` (default: the answer
        algorithm), its ``kid`` and ``typ``.

        :class:`~gateway.errors.StoreUnavailable` (503) if there is no active key of ``alg``
        or this process does not hold its private half (a host the new key has not been
        copied to): signing with any other key would give answers the JWKS does not vouch
        for, or not in the algorithm the department was promised.
        """
        active = self._active(alg)
        if active is None or active.private_key is None:
            raise StoreUnavailable("gateway signing key")
        alg = alg or self.answer_algorithm
        # msgspec encodes the claims several times faster than the json module would.
        return sign_with_header(
            active.header(alg, typ), msgspec.json.encode(claims), key=active.private_key, alg=alg
        )

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set of the gateway's public signing keys: next, active, retired."""
        return self._state.jwks

    def verification_key(self, *, kid: object, iat: object) -> tuple[str, PublicKey] | None:
        """The algorithm and public key of the gateway's own key ``kid`` if the key set
        vouches for a JWS of that ``kid`` signed at ``iat`` (see :func:`gateway_key_for`)."""
        state = self._state
        try:
            jwk = gateway_key_for(state.jwks, kid=kid, iat=iat)
        except GatewayKeyRefused:
            return None
        return state.public_keys.get(jwk["kid"])


def _parsed(key: GatewayKey) -> tuple[str, PublicKey]:
    try:
        return gateway_public_key(key.public_jwk)
    except ValueError as exc:
        raise ConfigurationError([f"gateway key {key.kid} in the key set: {exc}"]) from None


def _check_gateway_key(private_key: object) -> str:
    """The algorithm of a gateway private key: ES256 (P-256) or SM2."""
    if isinstance(private_key, PrivateKey):
        with contextlib.suppress(ValueError):
            alg = algorithm_of(private_key)
            if alg in GATEWAY_ALGORITHMS:
                return alg
    raise ConfigurationError(["the gateway signing key must be a P-256 or SM2 private key"])
