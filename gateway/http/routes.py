"""Route handlers. Each one reads its input, calls one service method, and shapes the reply."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from gateway.core.policy_check import explain_decision
from gateway.core.wire import NAME_PATTERN
from gateway.errors import PayloadTooLarge, UnsupportedMediaType
from gateway.exchange import SignedAnswer
from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, SIGNED, SignedOperation, problems
from gateway.http.problems import AUDIT_CONTEXT, problem_response
from gateway.runtime import GatewayRuntime

__all__ = [
    "close_case",
    "explain_policy",
    "healthz",
    "invalidate_resource",
    "jwks",
    "lookup",
    "lookup_batch",
    "manifest",
    "readyz",
    "runtime_of",
    "signed",
]

JWT_MEDIA_TYPE = "application/jwt"


def runtime_of(state: State) -> GatewayRuntime:
    runtime: GatewayRuntime = state.runtime
    return runtime


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


async def signed(
    request: Request[Any, Any, Any],
    state: State,
    handle: Callable[[GatewayRuntime], Callable[..., Awaitable[SignedAnswer]]],
    *,
    token_cap: int | None = None,
) -> Response[bytes]:
    """Common shape of the signed endpoints: a JWT in, a JWT (or a problem) out.

    ``token_cap``: the endpoint takes tokens larger than a lookup's (a batch, a sealed
    licence); the body cap follows it, and the token verifier enforces the cap itself.
    """
    received_at = time.time()
    runtime = runtime_of(state)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JWT_MEDIA_TYPE:
        raise UnsupportedMediaType(JWT_MEDIA_TYPE)
    settings = runtime.settings
    limit = settings.body_max_bytes
    if token_cap is not None:
        limit = max(limit, token_cap + 1024)
    body = await _read_capped(request, limit)
    # What the entry of an unexpected failure names (gateway.http.problems.record_unexpected).
    request.state[AUDIT_CONTEXT] = {"request_hash": hashlib.sha256(body.strip()).hexdigest()}
    return jwt_response(await handle(runtime)(body, now=received_at))


def jwt_response(answer: SignedAnswer) -> Response[bytes]:
    """A signed answer as the response body, with its audit index in a header."""
    return Response(
        content=answer.token.encode(),
        media_type=JWT_MEDIA_TYPE,
        headers={"Audit-Index": str(answer.audit_index), "Cache-Control": "no-store"},
    )


@post(
    "/v1/lookups",
    summary="Signed lookup of a shared record",
    description=(
        "Body: a compact JWS (`application/jwt`, typ `yiwang-lookup+jwt`) signed by the "
        "consumer department. Answer: a JWT signed by the gateway (`application/jwt`), or "
        "RFC 9457 problem details."
    ),
    tags=["lookups"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=SignedOperation,
    responses=problems(*SIGNED, 404, 500, 502, 504),
)
async def lookup(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await signed(request, state, lambda rt: rt.lookups.lookup)


@post(
    "/v1/lookups:batch",
    summary="Several signed lookups under one purpose, one signed answer",
    description="typ `yiwang-lookup-batch+jwt`; claims `purpose`, `operator`, `queries`.",
    tags=["lookups"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=SignedOperation,
    responses=problems(*SIGNED, 500),
)
async def lookup_batch(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await signed(
        request,
        state,
        lambda rt: rt.lookups.lookup_batch,
        token_cap=runtime_of(state).settings.batch_token_max_bytes,
    )


@post(
    "/v1/manifests",
    summary="Which required materials the gateway can supply for an applicant",
    description="typ `yiwang-manifest+jwt`; claims `purpose`, `operator`, `applicant`.",
    tags=["manifests"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=SignedOperation,
    responses=problems(*SIGNED, 500),
)
async def manifest(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await signed(request, state, lambda rt: rt.manifests.manifest)


@post(
    "/v1/cases:close",
    summary="Declare a case closed; later lookups for it are refused",
    description="typ `yiwang-case-close+jwt`; claims `case`, `operator`, `reason`.",
    tags=["cases"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=SignedOperation,
    responses=problems(*SIGNED, 500),
)
async def close_case(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    return await signed(request, state, lambda rt: rt.cases.close)


@post(
    "/v1/resources/{resource_id:str}/invalidate",
    summary="The provider signals changed records: cached copies are dropped",
    description="typ `yiwang-invalidate+jwt`; claims `resource`, `operator`, `reason`.",
    tags=["resources"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=SignedOperation,
    responses=problems(*SIGNED, 500),
)
async def invalidate_resource(
    request: Request[Any, Any, Any], state: State, resource_id: str
) -> Response[bytes]:
    return await signed(
        request,
        state,
        lambda rt: functools.partial(rt.resources.invalidate, resource_id=resource_id),
    )


@get(
    "/.well-known/jwks.json",
    summary="The gateway's public signing keys",
    tags=["keys"],
    cache_control=None,
)
async def jwks(state: State) -> dict[str, Any]:
    return runtime_of(state).signer.jwks()


@get("/healthz", summary="Liveness: the process answers", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: database, cache and keys",
    tags=["health"],
    responses=problems(503),
)
async def readyz(state: State) -> Response[Any]:
    runtime = runtime_of(state)
    # The store must take a write (a full disk or a frozen database is not ready), within a
    # bound; the cache must answer; the key ring in force must hold keys.
    store_problem = await runtime.readiness.check()
    checks = {
        "database": store_problem is None,
        "cache": await runtime.guard.ping(),
        "keys": len(runtime.exchanges.verifier.keyring) > 0,
    }
    watcher = runtime.watcher
    policy = {
        "version": runtime.policy.current.version,
        "last_checked": (
            watcher.last_checked.isoformat() if watcher and watcher.last_checked else None
        ),
        "refused_change": watcher.last_refusal if watcher else [],
    }
    if all(checks.values()):
        return Response(
            {
                "status": "ready",
                "checks": checks,
                "policy_version": runtime.policy.current.version,
                "policy": policy,
            }
        )
    failing = ", ".join(name for name, ok in checks.items() if not ok)
    detail = f"failing: {failing}" + (f" ({store_problem})" if store_problem else "")
    return problem_response(503, "not-ready", "Not ready", detail, checks=checks)


@get(
    "/v1/policy/explain",
    summary="Explain the policy decision for a consumer, resource, item and fields",
    tags=["policy"],
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403),
)
async def explain_policy(
    state: State,
    *,
    consumer: Annotated[str, Parameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    resource: Annotated[str, Parameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    item: Annotated[str, Parameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    fields: Annotated[str | None, Parameter(max_length=2048)] = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The decision the policy set in force makes, grant by grant (administrators only)."""
    return explain_decision(
        runtime_of(state).policy.current,
        consumer=consumer,
        resource=resource,
        item=item,
        fields=None if fields is None else [f.strip() for f in fields.split(",") if f.strip()],
        now=at or dt.datetime.now(dt.UTC),
    )
