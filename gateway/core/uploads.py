"""The wire contract of periodic uploads, shared by the gateway and the client SDK.

An upload is ``POST /v1/uploads/{resource}`` with the file as the body (``text/csv`` or
``application/x-ndjson``) and the provider's signed token in the ``Upload-Token`` header::

    header  {"alg": "ES256" | "EdDSA" | "SM2", "kid": ..., "typ": "yiwang-upload+jwt"}
    claims  {"iss", "aud", "iat", "exp", "jti",            # as for every request token
             "resource": "<resource id>",                   # must equal the path's
             "sha256": "<hex SHA-256 of the body>",         # the gateway recomputes it
             "format": "csv" | "jsonl",                     # must match Content-Type
             "operator": "<clerk id>",
             "rows": <data rows in the file>}               # optional; checked if given

The rejection report of a version is ``GET /v1/uploads/{resource}/versions/{n}/rejections``
with a token of type ``yiwang-upload-report+jwt`` (claims ``resource``, ``version``,
``operator``) in the same header. The token types are :class:`~gateway.core.protocol.TokenType`
members (``UPLOAD``, ``UPLOAD_RECEIPT``, ``UPLOAD_REPORT``); the gateway's validation of the
claims is :mod:`gateway.uploads.claims`.
"""

from __future__ import annotations

import enum

__all__ = ["MEDIA_TYPES", "TOKEN_HEADER", "UploadFormat"]

#: The request header that carries the signed token (the body is the file itself).
TOKEN_HEADER = "Upload-Token"  # noqa: S105 - a header name, not a secret


class UploadFormat(enum.StrEnum):
    """File formats an upload may use."""

    CSV = "csv"
    JSONL = "jsonl"


#: Content-Type of each format (``; charset=utf-8`` may follow; no other charset is taken).
MEDIA_TYPES = {UploadFormat.CSV: "text/csv", UploadFormat.JSONL: "application/x-ndjson"}
