"""RFC 9457 problem details for every error the gateway answers with.

One table maps each :mod:`gateway.errors` class to its status, type and title. Token
failures share one opaque title and detail: the precise reason is in the audit log only.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway import errors

__all__ = ["PROBLEM_JSON", "exception_handlers", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "urn:yiwang:problem:"

_TABLE: list[tuple[type[errors.Error], int, str, str]] = [
    (errors.InvalidInput, 400, "invalid-input", "The request is malformed"),
    (errors.TokenRejected, 401, "token-rejected", "The request token was not accepted"),
    (errors.PolicyDenied, 403, "policy-denied", "The sharing policy does not allow this"),
    (errors.RecordNotFound, 404, "record-not-found", "No record for this subject"),
    (errors.Replayed, 409, "token-replayed", "This request token was already used"),
    (errors.PayloadTooLarge, 413, "payload-too-large", "The request body is too large"),
    (errors.UnsupportedMediaType, 415, "unsupported-media-type", "Wrong content type"),
    (errors.RateLimited, 429, "rate-limited", "Too many requests from this department"),
    (errors.SourceTimeout, 504, "source-timeout", "The provider's source did not answer in time"),
    (errors.SourceFailed, 502, "source-failed", "The provider's source failed"),
    (errors.StoreUnavailable, 503, "store-unavailable", "A required store is unavailable"),
    (errors.ConfigurationError, 500, "configuration", "The gateway is misconfigured"),
]


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[bytes]:
    """A problem+json response."""
    body: dict[str, Any] = {"type": _TYPE_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extensions.items() if v is not None})
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _for_gateway_error(request: Request[Any, Any, Any], exc: errors.Error) -> Response[bytes]:
    match = next((row for row in _TABLE if isinstance(exc, row[0])), None)
    if match is None:  # an Error subclass missing from the table is a bug; answer safely
        log.error("no problem mapping for %s", type(exc).__name__)
        return problem_response(500, "internal", "Internal error")
    _, status, slug, title = match
    extra: dict[str, Any] = {"audit_index": exc.audit_index}
    headers: dict[str, str] | None = None
    detail: str | None = str(exc)
    if isinstance(exc, errors.TokenRejected):
        detail = "Check the token's signature, key id, audience, lifetime and claims."
    elif isinstance(exc, errors.InvalidInput):
        extra.update(field=exc.field, reason=exc.reason)
        detail = f"{exc.field}: {exc.reason}"
    elif isinstance(exc, errors.PolicyDenied):
        extra["reason"] = exc.reason_code
    elif isinstance(exc, errors.RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
        extra["retry_after"] = exc.retry_after
    elif isinstance(exc, errors.StoreUnavailable):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, errors.ConfigurationError):
        detail = None
    return problem_response(status, slug, title, detail, headers, **extra)


def _for_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        status, "http-error"
    )
    detail = exc.detail if status < 500 else None
    return problem_response(status, slug, detail or "HTTP error", None, exc.headers)


def _for_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # Never a stack trace to the caller; the log has it.
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "internal", "Internal error")


exception_handlers: dict[type[Exception], Any] = {
    errors.Error: _for_gateway_error,
    HTTPException: _for_http_exception,
    Exception: _for_unexpected,
}
