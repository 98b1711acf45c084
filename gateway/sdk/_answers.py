"""Verified answers from the gateway, and the JWKS cache they are verified against."""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from gateway.core.jose import JoseError, claims_of, parse_compact
from gateway.core.jose import verify as verify_signature
from gateway.core.keyring import GatewayKeyRefused, PublicKey, gateway_key_for, gateway_public_key
from gateway.core.licences import Check, Verdict
from gateway.errors import ConfigurationError
from gateway.sdk._problems import AnswerRejected

__all__ = [
    "GatewayPublicKey",
    "IssuedLicence",
    "JwksCache",
    "SignedAnswer",
    "VerificationReceipt",
    "verify_answer",
]


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """A verified answer from the gateway: its JWT as received and the claims it carries."""

    token: str
    claims: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """The released fields."""
        data: dict[str, Any] = self.claims["data"]
        return data

    @property
    def audit_index(self) -> int:
        """Index of the audit entry that recorded this release."""
        return int(self.claims["audit"]["index"])


@dataclass(frozen=True, slots=True)
class IssuedLicence(SignedAnswer):
    """The verified answer to a publication, with the sealed licence that was published."""

    sealed: str


@dataclass(frozen=True, slots=True)
class VerificationReceipt:
    """A verified verification receipt: the verdict, every check, and the signed token.

    ``token`` is the gateway's JWT as received: keep it, anyone with the gateway's JWKS can
    check it later, offline.
    """

    token: str
    claims: dict[str, Any]
    verdict: Verdict
    checks: tuple[Check, ...]
    licence_id: str | None
    audit_index: int

    @classmethod
    def from_answer(cls, answer: SignedAnswer) -> VerificationReceipt:
        """Read a verified receipt answer; :class:`AnswerRejected` if it is not one."""
        claims = answer.claims
        try:
            verdict = Verdict(claims["verdict"])
            checks = msgspec.convert(claims["checks"], tuple[Check, ...])
            licence_id = claims.get("licence_id")
            return cls(
                answer.token,
                claims,
                verdict,
                checks,
                licence_id if isinstance(licence_id, str) else None,
                answer.audit_index,
            )
        except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
            raise AnswerRejected(f"not a verification receipt: {exc}") from None


@dataclass(frozen=True, slots=True)
class GatewayPublicKey:
    """One of the gateway's public keys as the JWKS lists it: its id, algorithm and key."""

    key_id: str
    algorithm: str
    key: PublicKey


class JwksCache:
    """The gateway's public keys: fetched once, refreshed on an unknown ``kid`` (at most once
    per cool-down) and once the copy is older than the ``Cache-Control: max-age`` the gateway
    served it with.

    A rotation needs no refresh in time: the gateway publishes its next key at least twice
    that lifetime before it signs with it, and retired keys stay listed (verify-only, with
    their validity, which :meth:`for_token` checks); refreshing within the lifetime is what
    lets a key's retirement reach this cache."""

    def __init__(self, *, http: httpx.Client, url: str, cooldown: float = 60.0) -> None:
        self._http = http
        self._url = url
        self._cooldown = cooldown
        self._keys: dict[str, GatewayPublicKey] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self._fetched_at: float | None = None
        self._max_age: float | None = None

    def _refresh(self) -> None:
        response = self._http.get(self._url)
        response.raise_for_status()
        served = response.json()
        keys: dict[str, GatewayPublicKey] = {}
        listed = served.get("keys", []) if isinstance(served, dict) else []
        for jwk in listed if isinstance(listed, list) else []:
            # The gateway's keys are ES256 or SM2; a key that is neither, or does not parse
            # as its algorithm's, is left out (a token naming it is then refused).
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                with contextlib.suppress(ValueError, ConfigurationError):
                    alg, key = gateway_public_key(jwk)
                    keys[jwk["kid"]] = GatewayPublicKey(jwk["kid"], alg, key)
        self._keys = keys
        self._jwks = {"keys": [j for j in listed if isinstance(j, dict) and j.get("kid") in keys]}
        self._fetched_at = time.monotonic()
        self._max_age = _max_age(response.headers.get("cache-control", ""))

    def get(self, kid: str) -> GatewayPublicKey:
        """The algorithm and key for ``kid``, refreshing at most once per cool-down when it
        is unknown."""
        age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
        if (
            age is None
            or (kid not in self._keys and age >= self._cooldown)
            or (self._max_age is not None and age >= self._max_age)
        ):
            self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise AnswerRejected(f"unknown gateway key {kid!r}") from None

    def for_token(self, kid: str, *, iat: object) -> GatewayPublicKey:
        """The key for ``kid`` if it was in force at ``iat`` (a retired key vouches only for
        what it signed before its retirement); :class:`AnswerRejected` otherwise. Check the
        signature first: an ``iat`` means something only once it verifies."""
        key = self.get(kid)
        try:
            gateway_key_for(self._jwks, kid=kid, iat=iat)
        except GatewayKeyRefused as exc:
            raise AnswerRejected(str(exc)) from None
        return key


def _max_age(cache_control: str) -> float | None:
    """The ``max-age`` of a ``Cache-Control`` header in seconds (None: not stated)."""
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


#: Members an answer's claims must have.
_REQUIRED_CLAIMS = ("iss", "aud", "iat", "exp", "jti")


def verify_answer(
    answer: str,
    *,
    jwks: JwksCache,
    audience: str,
    typ: str,
    request_token: str | None = None,
    now: float | None = None,
) -> SignedAnswer:
    """Verify a signed answer; :class:`AnswerRejected` (saying why) unless every step holds:

    1. a compact JWS, parsed strictly, with only ``alg``, ``kid`` and ``typ`` in its header;
    2. ``typ`` is ``typ``;
    3. ``kid`` names a gateway key of the JWKS (ES256 or SM2), and the signature verifies
       with it, in the key's algorithm (never the header's choice);
    4. the claims are a JSON object with ``iss``, ``aud``, ``iat``, ``exp``, ``jti``; ``aud``
       is ``audience`` (the department it is meant for); ``exp`` has not passed at ``now``;
    5. the key was in force when the answer says it was signed (``iat``);
    6. (if given) the answer is bound to ``request_token``, by its SHA-256.
    """
    at = time.time() if now is None else now
    try:
        jws = parse_compact(answer, allowed_members={"alg", "kid", "typ"})
    except JoseError as exc:
        raise AnswerRejected(f"answer does not verify: {exc.reason}") from None
    if jws.header.typ != typ or jws.header.kid is None:
        raise AnswerRejected(f"not a gateway answer of type {typ}")
    kid = jws.header.kid
    key = jwks.get(kid)
    if not verify_signature(jws, alg=key.algorithm, key=key.key):
        raise AnswerRejected("answer does not verify: signature")
    claims = claims_of(jws)
    if claims is None:
        raise AnswerRejected("answer does not verify: claims are not a strict JSON object")
    missing = [name for name in _REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise AnswerRejected(f"answer does not verify: no {', '.join(missing)}")
    aud = claims["aud"]
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise AnswerRejected("answer does not verify: meant for another audience")
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise AnswerRejected("answer does not verify: iat and exp must be integers")
    if exp <= at:
        raise AnswerRejected("answer does not verify: it has expired")
    # Once the signature holds, its iat is the gateway's word: was the key in force then?
    jwks.for_token(kid, iat=iat)
    if request_token is not None:
        expected = hashlib.sha256(request_token.encode()).hexdigest()
        request = claims.get("request")
        if not isinstance(request, dict) or request.get("sha256") != expected:
            raise AnswerRejected("answer is not for this request")
    return SignedAnswer(token=answer, claims=claims)
