"""The gateway's validation of upload tokens (the parsed claims the upload service acts on).

The wire contract — the ``Upload-Token`` header, the formats and their media types, the token
types — is protocol-level and lives in the domain core (:mod:`gateway.core.uploads`,
:class:`gateway.core.protocol.TokenType`), where the client SDK reads it too; the names are
re-exported here for the server's modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from gateway.core.protocol import TokenType
from gateway.core.uploads import MEDIA_TYPES, TOKEN_HEADER, UploadFormat
from gateway.core.wire import Name, convert

__all__ = [
    "CLAIM_TYPES",
    "MEDIA_TYPES",
    "TOKEN_HEADER",
    "ReportRequest",
    "UploadFormat",
    "UploadRequest",
    "parse_report_claims",
    "parse_upload_claims",
]

#: ``typ`` of a provider's upload token, and of the gateway's signed receipt.
#: ``typ`` of a provider's token asking for a version's rejection report.

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


#: The structure each request's own claims decode into, by the request's ``typ``: what the
#: OpenAPI document shows as its ``x-jws-claims`` (:mod:`gateway.http.openapi`).
CLAIM_TYPES: dict[str, type[msgspec.Struct]] = {
    TokenType.UPLOAD: _UploadClaims,
    TokenType.UPLOAD_REPORT: _ReportClaims,
}


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
