"""Token types, header and claims of the upload endpoints (shared by the service and clients).

An upload is ``POST /v1/uploads/{resource}`` with the file as the body (``text/csv`` or
``application/x-ndjson``) and the provider's signed token in the ``Upload-Token`` header::

    header  {"alg": "ES256" | "EdDSA", "kid": ..., "typ": "yiwang-upload+jwt"}
    claims  {"iss", "aud", "iat", "exp", "jti",            # as for every request token
             "resource": "<resource id>",                   # must equal the path's
             "sha256": "<hex SHA-256 of the body>",         # the gateway recomputes it
             "format": "csv" | "jsonl",                     # must match Content-Type
             "operator": "<clerk id>",
             "rows": <data rows in the file>}               # optional; checked if given

The rejection report of a version is ``GET /v1/uploads/{resource}/versions/{n}/rejections``
with a token of type ``yiwang-upload-report+jwt`` (claims ``resource``, ``version``,
``operator``) in the same header.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from gateway.core.wire import Name, convert

__all__ = [
    "MEDIA_TYPES",
    "REPORT_REQUEST_TYP",
    "TOKEN_HEADER",
    "UPLOAD_RECEIPT_TYP",
    "UPLOAD_REQUEST_TYP",
    "ReportRequest",
    "UploadFormat",
    "UploadRequest",
    "parse_report_claims",
    "parse_upload_claims",
]

#: ``typ`` of a provider's upload token, and of the gateway's signed receipt.
UPLOAD_REQUEST_TYP = "yiwang-upload+jwt"
UPLOAD_RECEIPT_TYP = "yiwang-upload-receipt+jwt"
#: ``typ`` of a provider's token asking for a version's rejection report.
REPORT_REQUEST_TYP = "yiwang-upload-report+jwt"
#: The request header that carries the signed token (the body is the file itself).
TOKEN_HEADER = "Upload-Token"  # noqa: S105 - a header name, not a secret


class UploadFormat(enum.StrEnum):
    """File formats an upload may use."""

    CSV = "csv"
    JSONL = "jsonl"


#: Content-Type of each format (``; charset=utf-8`` may follow; no other charset is taken).
MEDIA_TYPES = {UploadFormat.CSV: "text/csv", UploadFormat.JSONL: "application/x-ndjson"}

_Name = Name
_Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class _UploadClaims(msgspec.Struct, frozen=True):
    resource: _Name
    sha256: _Sha256
    format: UploadFormat
    operator: _Name
    rows: Annotated[int, msgspec.Meta(ge=0, le=2**40)] | None = None


class _ReportClaims(msgspec.Struct, frozen=True):
    resource: _Name
    version: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    operator: _Name


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A verified, well-formed upload token: who sends which file for which resource."""

    provider: str
    operator: str
    resource: str
    sha256: str
    format: UploadFormat
    rows: int | None


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """A verified request for the rejection report of one version."""

    provider: str
    operator: str
    resource: str
    version: int


def parse_upload_claims(provider: str, claims: dict[str, Any]) -> UploadRequest:
    """Validate the claims of a verified upload token; raise :class:`InvalidInput`."""
    body = convert(claims, _UploadClaims)
    return UploadRequest(
        provider, body.operator, body.resource, body.sha256, body.format, body.rows
    )


def parse_report_claims(provider: str, claims: dict[str, Any]) -> ReportRequest:
    """Validate the claims of a verified rejection-report token."""
    body = convert(claims, _ReportClaims)
    return ReportRequest(provider, body.operator, body.resource, body.version)
