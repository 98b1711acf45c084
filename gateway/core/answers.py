"""The own claims of every answer and receipt the gateway signs for a department, typed.

Besides these, every answer carries the common claims (``iss``, ``aud``, ``iat``, ``exp``,
``jti``, ``request`` and ``audit``: see :func:`gateway.http.openapi.answer_claims_schema`).
The OpenAPI document's ``x-jws-claims`` of each answer is generated from its structure here
(:data:`ANSWER_CLAIMS`), and every answer is taken through its structure when it is signed
(:func:`answer_claims`), so that the document says what the code signs.

Every structure forbids unknown members: its schema then says ``additionalProperties: false``
and an answer with a member the structure does not name fails validation against it. Member
order is the order the answers have always been signed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from gateway.core.licences import Check
from gateway.core.lookup import Purpose
from gateway.core.protocol import TokenType
from gateway.core.status_lists import StatusRef

__all__ = [
    "ANSWER_CLAIMS",
    "AccessHistoryResult",
    "BatchResult",
    "CaseClosed",
    "Invalidated",
    "KeyRegistered",
    "KeyRetired",
    "LicenceIssued",
    "LicenceReserved",
    "LicenceStatusChanged",
    "LookupResult",
    "ManifestResult",
    "RefusalsResult",
    "SealRegistered",
    "UploadReceipt",
    "VerificationReceipt",
    "answer_claims",
]


class _Answer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The base of every answer's own claims."""


class _Subject(_Answer, frozen=True):
    type: str
    id: str


# --- lookups, batches, manifests, cases, cached copies --------------------------------------


class _LookupQuery(_Answer, frozen=True):
    resource: str
    subject: _Subject
    fields: list[str]  # the fields released (the grant's, narrowed by the request)


class _Cache(_Answer, frozen=True, omit_defaults=True):
    hit: bool
    age_seconds: float | None = None  # only on a hit: how old the cached copy is


class _Provenance(_Answer, frozen=True, omit_defaults=True, kw_only=True):
    provider: str
    source: str  # a non-secret description of the source, e.g. "sql:enterprises"
    as_of: str  # RFC 3339 time the values are current as of
    version: str | None = None  # only for uploaded resources: the version that answered
    cache: _Cache


class _AuditIndex(_Answer, frozen=True):
    index: int


class LookupResult(_Answer, frozen=True):
    """``yiwang-lookup-result+jwt``: one released record."""

    purpose: Purpose
    query: _LookupQuery
    data: dict[str, Any]  # only the granted fields, masked where the grant says so
    masked: list[str]  # which of the fields in ``data`` are masked
    provenance: _Provenance
    grant: str  # the grant that allowed it
    policy_version: str


class _BatchItem(_Answer, frozen=True, omit_defaults=True):
    """One query's result: ``status`` 200 with the record (the members of a single lookup's
    answer), or the problem's status with its ``reason`` (and ``field`` and ``detail`` where
    they are known)."""

    index: int  # the query's position in ``queries``
    status: int
    query: _LookupQuery | None = None
    data: dict[str, Any] | None = None
    masked: list[str] | None = None
    provenance: _Provenance | None = None
    grant: str | None = None
    reason: str | None = None  # a refusal's reason code
    field: str | None = None
    detail: str | None = None
    audit: _AuditIndex | None = None  # the entry that recorded this query (if any)


class BatchResult(_Answer, frozen=True):
    """``yiwang-lookup-batch-result+jwt``: a result per query, in the order asked."""

    purpose: Purpose
    results: list[_BatchItem]
    policy_version: str


class _ServiceItem(_Answer, frozen=True):
    code: str
    name: str


class _Material(_Answer, frozen=True, omit_defaults=True, kw_only=True):
    name: str
    resource: str | None = None
    provider: str | None = None
    status: Literal["available", "bring", "not-granted"]
    reason: str | None = None  # why the applicant must bring it, or why it is not granted
    grant: str | None = None  # only when available


class _Summary(_Answer, frozen=True):
    available: int
    bring: int
    not_granted: int = msgspec.field(name="not-granted")


class ManifestResult(_Answer, frozen=True):
    """``yiwang-manifest-result+jwt``: which of a service item's materials the gateway can
    supply and which the applicant must bring."""

    purpose: Purpose
    item: _ServiceItem
    applicant: _Subject
    materials: list[_Material]
    summary: _Summary
    policy_version: str


class CaseClosed(_Answer, frozen=True):
    """``yiwang-case-closed+jwt``: no lookup may name the case any more."""

    case: str
    closed: bool
    already_closed: bool


class Invalidated(_Answer, frozen=True):
    """``yiwang-invalidated+jwt``: every cached copy of the resource's records is dropped."""

    resource: str
    invalidated: bool


# --- uploads --------------------------------------------------------------------------------


class _Rows(_Answer, frozen=True):
    accepted: int
    rejected: int


class _Rejection(_Answer, frozen=True):
    line: int
    key: str | None
    field: str  # "" for the row as a whole
    code: str
    reason: str


class _Rejections(_Answer, frozen=True):
    url: str  # the rejection report (GET, with an upload-report token)
    count: int
    sample: list[_Rejection]  # the first few; the rest are in the report


class UploadReceipt(_Answer, frozen=True):
    """``yiwang-upload-receipt+jwt``: a new version of an uploaded resource is stored."""

    resource: str
    version: int
    previous_version: int | None
    current: bool  # false when a newer version was already in force
    format: str
    sha256: str
    bytes: int
    uploaded_at: str
    rows: _Rows
    rejections: _Rejections


# --- e-licences and e-seals -----------------------------------------------------------------


class LicenceReserved(_Answer, frozen=True):
    """``yiwang-licence-reserved+jwt``: a status-list entry held for a licence to be sealed."""

    licence_id: str
    status: StatusRef


class LicenceIssued(_Answer, frozen=True):
    """``yiwang-licence-issued+jwt``: a sealed licence is published."""

    licence_id: str
    status: StatusRef
    qr: str  # the payload of the licence's QR code
    content_sha256: str
    supersedes: str | None  # the licence this one replaces, if any


class LicenceStatusChanged(_Answer, frozen=True):
    """``yiwang-licence-status-changed+jwt``."""

    licence_id: str
    action: str
    previous: str
    status: str
    at: str


class SealRegistered(_Answer, frozen=True):
    """``yiwang-seal-registered+jwt``."""

    seal_id: str
    kid: str
    status: str


class KeyRegistered(_Answer, frozen=True):
    """``yiwang-key-registered+jwt``."""

    department: str
    kid: str
    status: str
    expires_at: int | None  # epoch seconds, as requested


class KeyRetired(_Answer, frozen=True):
    """``yiwang-key-retired+jwt``."""

    department: str
    kid: str
    status: str
    previous: str


class _VerificationInput(_Answer, frozen=True):
    kind: Literal["licence_id", "qr", "licence"]
    sha256: str  # of the value given (the receipt never carries the value itself)


class _LicenceSummary(_Answer, frozen=True):
    type_code: str
    type_name: str
    issuer_name: str
    issuer_uscc: str
    holder_name: str  # masked
    issue_date: str
    valid_from: str
    valid_until: str | None
    content_sha256: str


class VerificationReceipt(_Answer, frozen=True):
    """``yiwang-verification-receipt+jwt``: a verdict with every check that led to it."""

    verdict: str
    checks: list[Check]
    licence_id: str | None
    input: _VerificationInput
    licence: _LicenceSummary | None
    status: StatusRef | None
    checked_at: str
    purpose: Purpose
    operator: str


# --- the log --------------------------------------------------------------------------------


#: One access to a subject's records: the audit entry's ``index`` and ``kind``, and the
#: fields the portal's grant releases (department, service item, resource, fields, at …) with
#: their names in words. Which those are is the grant's to say, so an access is a mapping
#: (taken through unchanged) whose schema names only what every access has.
_Access = Annotated[
    dict[str, Any],
    msgspec.Meta(
        extra_json_schema={
            "properties": {
                "index": {"type": "integer", "description": "The audit entry."},
                "kind": {"enum": ["lookup", "verification"]},
            },
            "required": ["index", "kind"],
        }
    ),
]


class AccessHistoryResult(_Answer, frozen=True):
    """``yiwang-access-history-result+jwt``: who read a subject's records, newest first."""

    subject: _Subject
    accesses: list[_Access]
    next: str | None  # the cursor of the next (older) page; null: no more
    purpose: Purpose
    grant: str
    policy_version: str


class _Refusal(_Answer, frozen=True):
    audit_index: int
    at: str  # RFC 3339, UTC
    event: str
    reason_code: str | None
    reason: str | None  # the reason code in words (Chinese)
    detail: str | None
    request_sha256: str | None  # of the refused token
    operator: str | None
    service_item: str | None
    case: str | None
    resource: str | None


class RefusalsResult(_Answer, frozen=True):
    """``yiwang-refusals-result+jwt``: the department's own refusals, newest first."""

    department: str
    since: int  # epoch seconds: the window's start
    refusals: list[_Refusal]
    next: int | None  # pass as ``before`` for the next (older) page; null: no more


#: The structure of each answer's own claims, by the answer's ``typ``.
ANSWER_CLAIMS: dict[TokenType, type[msgspec.Struct]] = {
    TokenType.LOOKUP_RESULT: LookupResult,
    TokenType.BATCH_RESULT: BatchResult,
    TokenType.MANIFEST_RESULT: ManifestResult,
    TokenType.CASE_CLOSED: CaseClosed,
    TokenType.INVALIDATED: Invalidated,
    TokenType.UPLOAD_RECEIPT: UploadReceipt,
    TokenType.LICENCE_RESERVED: LicenceReserved,
    TokenType.LICENCE_ISSUED: LicenceIssued,
    TokenType.LICENCE_STATUS_CHANGED: LicenceStatusChanged,
    TokenType.SEAL_REGISTERED: SealRegistered,
    TokenType.KEY_REGISTERED: KeyRegistered,
    TokenType.KEY_RETIRED: KeyRetired,
    TokenType.VERIFICATION_RECEIPT: VerificationReceipt,
    TokenType.ACCESS_HISTORY_RESULT: AccessHistoryResult,
    TokenType.REFUSALS_RESULT: RefusalsResult,
}


def answer_claims(typ: TokenType | str, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The own claims of an answer of ``typ`` as they are signed: ``claims`` (what the work
    made) taken through the answer's structure, in the structure's member order.

    A member the structure does not name, one it requires that is missing, or a value of
    another type is a bug in the work function, not bad input: it raises
    ``msgspec.ValidationError`` so that no answer leaves unlike its documented schema.
    """
    structure = ANSWER_CLAIMS[TokenType(typ)]
    own: dict[str, Any] = msgspec.to_builtins(msgspec.convert(claims, structure))
    return own
