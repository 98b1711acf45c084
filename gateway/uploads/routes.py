"""Route handlers of periodic uploads (see :mod:`gateway.uploads.service`).

``POST /v1/uploads/{resource}``: the body is the file (``text/csv`` or
``application/x-ndjson``, UTF-8), streamed; the provider's signed token travels in the
``Upload-Token`` header. Answer: the gateway's signed receipt (``application/jwt``).

``GET /v1/uploads/{resource}/versions/{version}/rejections?format=csv|jsonl``: the rejection
report of a version, streamed; the provider's signed token in the ``Upload-Token`` header.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream

from gateway.core.protocol import TokenType
from gateway.http.openapi import (
    JWT_MEDIA_TYPE,
    SIGNED,
    TABLE_MEDIA_TYPES,
    UPLOAD_TOKEN_SECURITY,
    jws_answer,
    jws_token,
    operation_class,
    problems,
)
from gateway.http.signed import jwt_response
from gateway.uploads.claims import CLAIM_TYPES, TOKEN_HEADER
from gateway.uploads.service import UploadService

__all__ = ["ROUTES", "upload", "upload_rejections"]


def _token(header: str | None) -> bytes:
    # A missing header is an empty token: refused (401) and audited like any bad token.
    return (header or "").encode("utf-8", "replace")


_TEXT = Schema(type=OpenAPIType.STRING)

#: The provider's signed token, in a header (the body is the file).
UploadToken = Annotated[
    str | None,
    HeaderParameter(
        name=TOKEN_HEADER,
        required=False,
        description=f"A compact JWS of typ `{TokenType.UPLOAD}` signed by the resource's provider.",
    ),
]
#: The provider's signed token for a version's rejection report.
ReportToken = Annotated[
    str | None,
    HeaderParameter(
        name=TOKEN_HEADER,
        required=False,
        description=f"A compact JWS of typ `{TokenType.UPLOAD_REPORT}` signed by the "
        "resource's provider.",
    ),
]


@post(
    "/v1/uploads/{resource:str}",
    summary="Upload a file of a resource's records as its new version (provider only)",
    description=(
        "Body: the file, `text/csv` (header row first) or `application/x-ndjson` (one JSON "
        "object per line), UTF-8. Header `Upload-Token`: a compact JWS of typ "
        "`yiwang-upload+jwt` signed by the resource's provider, with claims `resource`, "
        "`sha256` (hex, of the body), `format` (`csv` | `jsonl`), `operator` and optionally "
        "`rows`. Answer: a signed receipt (typ `yiwang-upload-receipt+jwt`) with the version, "
        "rows accepted and rejected, and where to download the rejection report."
    ),
    tags=["uploads"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=operation_class(
        body={"text/csv": _TEXT, "application/x-ndjson": _TEXT},
        body_description="The file: CSV (header row first) or JSON Lines, UTF-8.",
        answers={JWT_MEDIA_TYPE: jws_answer(TokenType.UPLOAD_RECEIPT)},
        headers={TOKEN_HEADER: jws_token(TokenType.UPLOAD, CLAIM_TYPES[TokenType.UPLOAD])},
    ),
    security=UPLOAD_TOKEN_SECURITY,
    responses=problems(*SIGNED, 404, 500),
    # The body is streamed to a spool file under the resource's own cap (source.max_bytes),
    # enforced by the service; the framework's in-memory body cap does not apply here.
    request_max_body_size=None,
)
async def upload(
    request: Request[Any, Any, Any],
    uploads: NamedDependency[UploadService],
    resource: FromPath[str],
    upload_token: UploadToken = None,
) -> Response[bytes]:
    """Stream the body into the upload service; answer its signed receipt."""
    received_at = time.time()
    declared = request.headers.get("content-length")
    answer = await uploads.upload(
        resource,
        token=_token(upload_token),
        content_type=request.headers.get("content-type", ""),
        content_length=int(declared) if declared is not None and declared.isdigit() else None,
        body=request.stream(),
        now=received_at,
    )
    return jwt_response(answer)


@get(
    "/v1/uploads/{resource:str}/versions/{version:int}/rejections",
    summary="The rejection report of an uploaded version (provider only)",
    description=(
        "Header `Upload-Token`: a compact JWS of typ `yiwang-upload-report+jwt` signed by the "
        "resource's provider, with claims `resource`, `version`, `operator`. Answer: one line "
        "per problem (`line`, `key`, `field`, `code`, `reason`), CSV or JSON Lines."
    ),
    tags=["uploads"],
    cache_control=None,
    operation_class=operation_class(
        answers=TABLE_MEDIA_TYPES,
        headers={
            TOKEN_HEADER: jws_token(TokenType.UPLOAD_REPORT, CLAIM_TYPES[TokenType.UPLOAD_REPORT])
        },
    ),
    security=UPLOAD_TOKEN_SECURITY,
    responses=problems(400, 401, 403, 404, 409, 429, 503),
)
async def upload_rejections(
    uploads: NamedDependency[UploadService],
    resource: FromPath[str],
    version: FromPath[int],
    upload_token: ReportToken = None,
    fmt: Annotated[Literal["csv", "jsonl"], QueryParameter(name="format")] = "csv",
) -> Stream:
    """Stream a version's rejection report (CSV or JSON Lines) to its provider."""
    report = await uploads.rejections(
        resource, version, token=_token(upload_token), fmt=fmt, now=time.time()
    )
    return Stream(
        report.chunks,
        media_type=report.media_type,
        headers={"Audit-Index": str(report.audit_index), "Cache-Control": "no-store"},
    )


#: Every route of this module, for the app factory.
ROUTES = [upload, upload_rejections]
