"""The HTTP shape of every signed endpoint: a compact JWS in, a signed JWT (or a problem) out.

A route reads the body within its cap and hands it, with the time it arrived, to one method
of its feature's service — which runs it through the one signed exchange
(:class:`gateway.exchange.SignedExchanges`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response

from gateway.errors import PayloadTooLarge, UnsupportedMediaType
from gateway.exchange import SignedAnswer
from gateway.http.problems import AUDIT_CONTEXT

__all__ = ["BODY_LIMITS_STATE", "JWT_MEDIA_TYPE", "BodyLimits", "jwt_response", "signed"]

JWT_MEDIA_TYPE = "application/jwt"

#: What a signed route hands its body to: the service method of its exchange.
SignedWork = Callable[..., Awaitable[SignedAnswer]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyLimits:
    """How large a signed request's body may be (from the settings, once per process)."""

    body_max_bytes: int
    batch_token_max_bytes: int


async def _read_capped(request: Request[Any, Any, Any], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


#: Where the app's state holds the process's :class:`BodyLimits` (set at start).
BODY_LIMITS_STATE = "body_limits"


async def signed(
    request: Request[Any, Any, Any],
    work: SignedWork,
    *,
    token_cap: int | None = None,
    batch: bool = False,
) -> Response[bytes]:
    """Read a signed request and answer it with what ``work`` returns.

    ``token_cap``: the endpoint takes tokens larger than a lookup's (a sealed licence);
    ``batch``: a batch's, up to the configured batch token size. The body cap follows it,
    and the token verifier enforces the cap itself.
    """
    received_at = time.time()
    # From the app's state, not a second injected dependency: Litestar resolves two
    # dependencies of one handler in an anyio task group, two tasks per request on the
    # hottest routes for what is one constant of the process.
    limits: BodyLimits = request.app.state[BODY_LIMITS_STATE]
    if batch:
        token_cap = limits.batch_token_max_bytes
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JWT_MEDIA_TYPE:
        raise UnsupportedMediaType(JWT_MEDIA_TYPE)
    limit = limits.body_max_bytes
    if token_cap is not None:
        limit = max(limit, token_cap + 1024)
    body = await _read_capped(request, limit)
    # What the entry of an unexpected failure names (gateway.http.problems.record_unexpected).
    request.state[AUDIT_CONTEXT] = {"request_hash": hashlib.sha256(body.strip()).hexdigest()}
    return jwt_response(await work(body, now=received_at))


def jwt_response(answer: SignedAnswer) -> Response[bytes]:
    """A signed answer as the response body, with its audit index in a header."""
    return Response(
        content=answer.token.encode(),
        media_type=JWT_MEDIA_TYPE,
        headers={"Audit-Index": str(answer.audit_index), "Cache-Control": "no-store"},
    )
