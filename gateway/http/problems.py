"""RFC 9457 problem details for every error the gateway answers with.

Each :mod:`gateway.errors` class carries its status, type and title (the one table). Token
failures share one opaque title and detail: the precise reason is in the audit log only.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import Scope

from gateway import errors
from gateway.core.wire import storable
from gateway.http.openapi import PROBLEM_JSON

__all__ = [
    "AUDIT_CONTEXT",
    "PROBLEM_JSON",
    "exception_handlers",
    "problem_body",
    "problem_response",
    "record_unexpected",
]

log = logging.getLogger(__name__)

_TYPE_BASE = "urn:yiwang:problem:"

#: Key in the request's scope state where a route leaves what the entry of an unexpected
#: failure should name (``request_hash``, ``department`` once known).
AUDIT_CONTEXT = "audit_context"
_RECORDED = "internal_error_audit_index"
_TOKEN_RELEASED = "token_released"  # noqa: S105 - a state key, not a secret
_UNRECORDED = "internal_error_unrecorded"
_MISSING_PARAMETER = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def problem_body(
    status: int, slug: str, title: str, detail: str | None = None, **extensions: Any
) -> bytes:
    """The JSON of an RFC 9457 problem (what :func:`problem_response` sends; the access layer,
    which answers before the app, sends it as it is)."""
    body: dict[str, Any] = {"type": _TYPE_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extensions.items() if v is not None})
    return msgspec.json.encode(body)


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[bytes]:
    """A problem+json response."""
    return Response(
        content=problem_body(status, slug, title, detail, **extensions),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _for_gateway_error(request: Request[Any, Any, Any], exc: errors.Error) -> Response[bytes]:
    status, slug, title = exc.status, exc.slug, exc.title  # the one table: on the class
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
        # Honest about a resend: the same token works again unless an entry of it is
        # durable (or the guard could not be told to forget it) — then a new token is needed.
        released = request.scope.get("state", {}).get(_TOKEN_RELEASED)
        if released is False:
            extra["token_consumed"] = True
            detail = f"{exc}; the token is or may be used: send the request with a new token"
        else:
            headers = {"Retry-After": "1"}
            if released is True:
                extra["token_consumed"] = False
    elif isinstance(exc, errors.ConfigurationError):
        detail = None
    return problem_response(status, slug, title, detail, headers, **extra)


def _for_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """A parameter or body that failed the framework's typed decoding: 400 naming it."""
    field, reason = "body", "is malformed"
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = next((e for e in extra if isinstance(e, dict)), None)
    if first is not None:
        field = _public_name(request, str(first.get("key") or "body"))
        reason = str(first.get("message") or reason)
    elif missing := _MISSING_PARAMETER.search(str(exc.detail)):
        field, reason = missing.group(2), "is required"
    field, reason = storable(field, 128), storable(reason, 200)
    return problem_response(
        400,
        "invalid-input",
        "The request is malformed",
        f"{field}: {reason}",
        None,
        field=field,
        reason=reason,
    )


def _public_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a parameter has on the wire (its query alias), not the handler's."""
    handler = request.scope.get("route_handler")
    try:
        definition = handler.parsed_fn_signature.parameters[key].kwarg_definition
    except (AttributeError, KeyError):
        return key
    # QueryParameter(name="from") / HeaderParameter(name="Request-Token"), or the older
    # Parameter(query=…, header=…, cookie=…) spelling.
    for attribute in ("name", "query", "header", "cookie"):
        alias = getattr(definition, attribute, None)
        if isinstance(alias, str) and alias:
            return alias
    return key


def _for_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        status, "http-error"
    )
    detail = exc.detail if status < 500 else None
    return problem_response(status, slug, detail or "HTTP error", None, exc.headers)


def _for_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # Never a stack trace or the exception's text to the caller; the log has it, and the
    # audit log has an entry (written by :func:`record_unexpected` before this runs).
    log.exception("unhandled error", exc_info=exc)
    state = request.scope.get("state", {})
    if state.get(_UNRECORDED):
        # The failure could not be recorded: answer like any request whose entry cannot be
        # made durable.
        return problem_response(
            503,
            "store-unavailable",
            "A required store is unavailable",
            headers={"Retry-After": "1"},
        )
    return problem_response(500, "internal", "Internal error", audit_index=state.get(_RECORDED))


async def record_unexpected(exc: Exception, scope: Scope) -> None:
    """``after_exception`` hook: an audit entry for a request that ended in an unexpected
    exception, durable before the 500 is sent — so no probe that crashes a handler goes
    unrecorded. Never raises; if the entry cannot be written the answer becomes a 503.

    Hooks are not given dependencies: the composition root leaves the process's
    :class:`~gateway.exchange.SignedExchanges` in ``app.state.exchanges`` for this one."""
    state = scope.setdefault("state", {})
    if isinstance(exc, errors.StoreUnavailable):
        # Nothing was answered: the guard forgets the request's jti, so a resend works.
        try:
            exchanges = scope["app"].state.exchanges
            state[_TOKEN_RELEASED] = await exchanges.release_unanswered(exc)
        except Exception:  # the guard is down too; the token stays claimed there
            log.exception("the request's token could not be released")
            state[_TOKEN_RELEASED] = False
        return
    if isinstance(exc, errors.Error | HTTPException):
        return  # answered by its own problem (and audited by its service where it should be)
    try:
        context = state.get(AUDIT_CONTEXT) or {}
        state[_RECORDED] = await scope["app"].state.exchanges.record_internal_error(
            error=type(exc).__name__,
            route=f"{scope.get('method', '?')} {scope.get('path_template') or '?'}",
            department=context.get("department"),
            request_hash=context.get("request_hash"),
            now=time.time(),
        )
    except Exception:  # the audit store is failing too; say so with a 503
        log.exception("the internal error could not be recorded")
        state[_UNRECORDED] = True


exception_handlers: dict[type[Exception], Any] = {
    errors.Error: _for_gateway_error,
    ValidationException: _for_validation,
    HTTPException: _for_http_exception,
    Exception: _for_unexpected,
}
