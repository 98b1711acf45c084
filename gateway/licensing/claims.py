"""Token types and claims of the licence endpoints, as the gateway validates them.

Every request below is a compact JWS (``application/jwt``) signed by a registered department,
with the registered claims every request token carries (``iss aud iat exp jti``), and every
answer is a JWT signed by the gateway for that department (``aud``), bound to the request's
SHA-256 (``request.sha256``), naming its audit entry (``audit.index``)::

    POST /v1/licences:reserve        typ yiwang-licence-reserve+jwt      (issuer)
        claims  operator, licence_id
        answer  yiwang-licence-reserved+jwt   {licence_id, status: {list_id, index}}
    POST /v1/licences                typ yiwang-licence-issue+jwt        (issuer)
        claims  operator, licence (the sealed licence, a compact JWS)
        answer  yiwang-licence-issued+jwt     {licence_id, status, qr, content_sha256,
                                               supersedes: <older id> | null}
    POST /v1/licences/{id}/status    typ yiwang-licence-status+jwt       (issuer)
        claims  operator, licence_id, action (suspend|reinstate|revoke|withdraw|cancel), reason
        answer  yiwang-licence-status-changed+jwt  {licence_id, status, previous, at}
    POST /v1/verifications           typ yiwang-verification+jwt         (any department)
        claims  operator, purpose {item, case, reason}, and exactly one of
                licence_id | qr | licence
        answer  yiwang-verification-receipt+jwt    {verdict, checks: [{name, outcome,
                detail}], licence_id, input: {kind, sha256}, licence: summary | null,
                status: {list_id, index} | null, checked_at}

    POST /v1/seals                   typ yiwang-seal-register+jwt        (issuer)
        claims  operator, seal {seal_id, name, type, jwk, valid_from, valid_until},
                proof: a compact JWS by the seal's own key, typ yiwang-seal-proof+jwt,
                       payload {"seal_id": <seal_id>, "jti": <this request's jti>}
        answer  yiwang-seal-registered+jwt    {seal_id, kid, status}

Seal status changes are an administrator's (bearer token): ``POST /v1/seals/{id}/status``
with JSON ``{action: suspend|reinstate|revoke, reason, revocation_reason?}``. Public, with no
credentials: ``GET /v1/seals`` (JSON list with histories), ``GET /v1/seals/registry`` (the
signed registry snapshot, typ yiwang-seal-registry+jwt) and ``GET /v1/status-lists/{id}``
(typ yiwang-status-list+jwt), which together with the JWKS let anyone verify offline.

A licence is sealed with a status entry inside it, so an issuer reserves one first
(``licences:reserve``; reserving again for the same identifier returns the same entry).
The receipt is an ordinary gateway JWT: anyone holding the gateway's JWKS can check it later,
offline. The token types are :class:`gateway.core.protocol.TokenType` members (the names below
are aliases of them); the client SDK (:mod:`gateway.sdk`) reads them there, not here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec

from gateway.core.licences import StatusAction
from gateway.core.lookup import Purpose
from gateway.core.protocol import TokenType
from gateway.core.wire import Name, ShortText, Text, convert
from gateway.errors import InvalidInput

__all__ = [
    "CLAIM_TYPES",
    "LICENCE_TOKEN_MAX_BYTES",
    "MAX_SEALED_LICENCE_BYTES",
    "IssueRequest",
    "ReserveRequest",
    "SealRegistration",
    "StatusRequest",
    "VerificationInput",
    "VerificationRequest",
    "parse_issue_claims",
    "parse_reserve_claims",
    "parse_seal_registration_claims",
    "parse_status_claims",
    "parse_verification_claims",
]


#: A sealed licence inside a request token; type-specific fields make some licences long.
MAX_SEALED_LICENCE_BYTES = 48 * 1024
#: Cap of a request token that carries a sealed licence (issuance, verification by document):
#: the licence base64url-encoded once more, plus the other claims.
LICENCE_TOKEN_MAX_BYTES = 72 * 1024

#: Printable ASCII: identifiers, QR payloads and compact JWS.
_PRINTABLE = r"^[\x21-\x7e]+$"
_Name = Name
_Text = Text
_LicenceIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_PRINTABLE)]
_Sealed = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_SEALED_LICENCE_BYTES, pattern=_PRINTABLE)
]
_Qr = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=_PRINTABLE)]
#: A public JWK: a few short text members (``kty``, ``crv``, ``x``, ``y``, ``alg`` …).
_Jwk = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=16, pattern=_PRINTABLE)], ShortText | Text],
    msgspec.Meta(max_length=16),
]


class _ReserveClaims(msgspec.Struct, frozen=True):
    operator: _Name
    licence_id: _LicenceIdText


class _IssueClaims(msgspec.Struct, frozen=True):
    operator: _Name
    licence: _Sealed


class _StatusClaims(msgspec.Struct, frozen=True):
    operator: _Name
    licence_id: _LicenceIdText
    action: StatusAction
    reason: _Text


class _VerificationClaims(msgspec.Struct, frozen=True):
    operator: _Name
    purpose: Purpose
    licence_id: _LicenceIdText | None = None
    qr: _Qr | None = None
    licence: _Sealed | None = None


class _SealClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seal_id: _Name
    name: _Text
    type: _Name
    jwk: _Jwk
    valid_from: dt.date
    valid_until: dt.date


class _SealRegistrationClaims(msgspec.Struct, frozen=True):
    operator: _Name
    seal: _SealClaims
    proof: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=_PRINTABLE)]


#: The structure each request's own claims decode into, by the request's ``typ``: what the
#: OpenAPI document shows as its ``x-jws-claims`` (:mod:`gateway.http.openapi`).
CLAIM_TYPES: dict[str, type[msgspec.Struct]] = {
    TokenType.LICENCE_RESERVE: _ReserveClaims,
    TokenType.LICENCE_ISSUE: _IssueClaims,
    TokenType.LICENCE_STATUS: _StatusClaims,
    TokenType.VERIFICATION: _VerificationClaims,
    TokenType.SEAL_REGISTER: _SealRegistrationClaims,
}


_T = TypeVar("_T")


def _convert(raw: Any, kind: type[_T]) -> _T:
    return convert(raw, kind)


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """An issuer asks for the status entry of a licence it is about to seal."""

    issuer: str
    operator: str
    licence_id: str  # format checked by the service (the refusal names ``licence_id``)


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """An issuer publishes a sealed licence."""

    issuer: str
    operator: str
    sealed: str


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """An issuer changes the status of one of its licences."""

    issuer: str
    operator: str
    licence_id: str
    action: StatusAction
    reason: str


@dataclass(frozen=True, slots=True)
class VerificationInput:
    """What a clerk has in hand: ``kind`` is ``licence_id``, ``qr`` or ``licence``."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """A clerk of ``department`` verifies a licence, for a purpose."""

    department: str
    operator: str
    purpose: Purpose
    input: VerificationInput


@dataclass(frozen=True, slots=True)
class SealRegistration:
    """An issuer registers one of its seals; ``proof`` shows it holds the private key."""

    owner: str
    operator: str
    seal_id: str
    name: str
    type: str
    jwk: _Jwk
    valid_from: dt.date
    valid_until: dt.date
    proof: str
    jti: str


def parse_seal_registration_claims(owner: str, claims: dict[str, Any]) -> SealRegistration:
    """Validate the claims of a verified seal registration token."""
    body = _convert(claims, _SealRegistrationClaims)
    seal = body.seal
    if seal.valid_until < seal.valid_from:
        raise InvalidInput("seal.valid_until", "is before valid_from")
    return SealRegistration(
        owner,
        body.operator,
        seal.seal_id,
        seal.name,
        seal.type,
        seal.jwk,
        seal.valid_from,
        seal.valid_until,
        body.proof,
        str(claims.get("jti", "")),
    )


def parse_reserve_claims(issuer: str, claims: dict[str, Any]) -> ReserveRequest:
    """Validate the claims of a verified reservation token."""
    body = _convert(claims, _ReserveClaims)
    return ReserveRequest(issuer, body.operator, body.licence_id)


def parse_issue_claims(issuer: str, claims: dict[str, Any]) -> IssueRequest:
    """Validate the claims of a verified issuance token."""
    body = _convert(claims, _IssueClaims)
    return IssueRequest(issuer, body.operator, body.licence)


def parse_status_claims(issuer: str, claims: dict[str, Any]) -> StatusRequest:
    """Validate the claims of a verified status-change token."""
    body = _convert(claims, _StatusClaims)
    return StatusRequest(issuer, body.operator, body.licence_id, body.action, body.reason)


def parse_verification_claims(department: str, claims: dict[str, Any]) -> VerificationRequest:
    """Validate a verification token: exactly one of ``licence_id``, ``qr``, ``licence``."""
    body = _convert(claims, _VerificationClaims)
    given = [
        VerificationInput(kind, value)
        for kind, value in (
            ("licence_id", body.licence_id),
            ("qr", body.qr),
            ("licence", body.licence),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInput("licence_id", "give exactly one of licence_id, qr, licence")
    return VerificationRequest(department, body.operator, body.purpose, given[0])
