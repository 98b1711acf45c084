"""What the signed requests say, once their tokens are verified: schemas and parsing.

The registered claims (iss, aud, iat, exp, jti) were checked by the token verifier; here we
check the body of each kind of request — a lookup, a batch of lookups, a manifest, a case
closure — and turn it into plain values with parsed, check-character-verified subjects. Any
problem is an :class:`~gateway.errors.InvalidInput` naming the claim path
(``query.subject.id``, ``queries[3].fields``, …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec

from gateway.core.identifiers import SubjectId, parse_subject
from gateway.core.protocol import TokenType
from gateway.core.wire import Name, Text, convert, invalid_input_from
from gateway.errors import InvalidInput

__all__ = [
    "CLAIM_TYPES",
    "MAX_FIELDS",
    "BatchRequest",
    "CaseClosure",
    "Invalidation",
    "LookupRequest",
    "ManifestRequest",
    "Purpose",
    "Query",
    "parse_batch_claims",
    "parse_case_closure_claims",
    "parse_invalidation_claims",
    "parse_lookup_claims",
    "parse_manifest_claims",
]

# Re-exported: the field-level problem of a msgspec validation failure.
__all__ += ["invalid_input_from"]

MAX_FIELDS = 64

_Text = Text
_Name = Name


class Purpose(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Why the data is read: the service item, the case and a reason in words (用证事由)."""

    item: _Name
    case: _Name
    reason: _Text


class _Subject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: _Name
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class _Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    resource: _Name
    subject: _Subject
    fields: Annotated[list[_Name], msgspec.Meta(min_length=1, max_length=MAX_FIELDS)]


class _LookupClaims(msgspec.Struct, frozen=True):
    # Registered claims are already verified; only the request's own claims are typed here.
    purpose: Purpose
    operator: _Name
    query: _Query


class _BatchClaims(msgspec.Struct, frozen=True):
    purpose: Purpose
    operator: _Name
    # Each query is converted on its own, so one malformed query does not refuse the batch.
    queries: Annotated[list[Any], msgspec.Meta(min_length=1, max_length=10_000)]


class _ManifestClaims(msgspec.Struct, frozen=True):
    purpose: Purpose
    operator: _Name
    applicant: _Subject


class _InvalidationClaims(msgspec.Struct, frozen=True):
    resource: _Name
    operator: _Name
    reason: _Text


class _CaseClosureClaims(msgspec.Struct, frozen=True):
    case: _Name
    operator: _Name
    reason: _Text


#: The structure each request's own claims decode into, by the request's ``typ``: what the
#: OpenAPI document shows as its ``x-jws-claims`` (:mod:`gateway.http.openapi`).
CLAIM_TYPES: dict[str, type[msgspec.Struct]] = {
    TokenType.LOOKUP: _LookupClaims,
    TokenType.BATCH: _BatchClaims,
    TokenType.MANIFEST: _ManifestClaims,
    TokenType.CASE_CLOSE: _CaseClosureClaims,
    TokenType.INVALIDATE: _InvalidationClaims,
}


@dataclass(frozen=True, slots=True)
class Query:
    """One record asked for: which resource, whose record, which fields."""

    resource: str
    subject: SubjectId
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """A verified, well-formed lookup: who asks, why, for which record and fields."""

    consumer: str
    operator: str
    purpose: Purpose
    query: Query


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Several queries under one purpose. A query that is malformed is kept as its error,
    so that the rest of the batch is still answered."""

    consumer: str
    operator: str
    purpose: Purpose
    queries: tuple[Query | InvalidInput, ...]


@dataclass(frozen=True, slots=True)
class ManifestRequest:
    """Which materials of a service item can the gateway supply for this applicant?"""

    consumer: str
    operator: str
    purpose: Purpose
    applicant: SubjectId


@dataclass(frozen=True, slots=True)
class Invalidation:
    """A provider signals that its records of a resource changed: cached copies must go."""

    provider: str
    operator: str
    resource: str
    reason: str


@dataclass(frozen=True, slots=True)
class CaseClosure:
    """A consumer department declares one of its cases closed."""

    consumer: str
    operator: str
    case: str
    reason: str


_T = TypeVar("_T")


def _convert(raw: Any, kind: type[_T], prefix: str = "") -> _T:
    return convert(raw, kind, prefix)


def _subject(subject: _Subject, prefix: str) -> SubjectId:
    try:
        return parse_subject(subject.type, subject.id)
    except InvalidInput as exc:
        where = "type" if exc.field == "type" else "id"
        raise InvalidInput(f"{prefix}.{where}", exc.reason) from None


def _query(raw: _Query, prefix: str) -> Query:
    return Query(
        resource=raw.resource,
        subject=_subject(raw.subject, f"{prefix}.subject"),
        fields=tuple(dict.fromkeys(raw.fields)),
    )


def parse_lookup_claims(consumer: str, claims: dict[str, Any]) -> LookupRequest:
    """Validate the claims of a verified lookup token; raise :class:`InvalidInput`."""
    body = _convert(claims, _LookupClaims)
    return LookupRequest(consumer, body.operator, body.purpose, _query(body.query, "query"))


def parse_batch_claims(consumer: str, claims: dict[str, Any], *, limit: int) -> BatchRequest:
    """Validate a batch; over ``limit`` queries refuses the whole batch."""
    body = _convert(claims, _BatchClaims)
    if len(body.queries) > limit:
        raise InvalidInput("queries", f"at most {limit} queries in one batch")
    queries: list[Query | InvalidInput] = []
    for i, raw in enumerate(body.queries):
        prefix = f"queries[{i}]"
        try:
            queries.append(_query(_convert(raw, _Query, prefix), prefix))
        except InvalidInput as exc:
            queries.append(exc)
    return BatchRequest(consumer, body.operator, body.purpose, tuple(queries))


def parse_manifest_claims(consumer: str, claims: dict[str, Any]) -> ManifestRequest:
    """Validate the claims of a verified manifest token."""
    body = _convert(claims, _ManifestClaims)
    return ManifestRequest(
        consumer, body.operator, body.purpose, _subject(body.applicant, "applicant")
    )


def parse_case_closure_claims(consumer: str, claims: dict[str, Any]) -> CaseClosure:
    """Validate the claims of a verified case-closure token."""
    body = _convert(claims, _CaseClosureClaims)
    return CaseClosure(consumer, body.operator, body.case, body.reason)


def parse_invalidation_claims(provider: str, claims: dict[str, Any]) -> Invalidation:
    """Validate the claims of a verified cache-invalidation token."""
    body = _convert(claims, _InvalidationClaims)
    return Invalidation(provider, body.operator, body.resource, body.reason)
