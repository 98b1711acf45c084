"""Route handlers of the tamper-evident log's public contract (see
:mod:`gateway.audit.transparency`): checkpoints and proofs are hashes only and need no
credentials, so outside witnesses can follow the log; a leaf is readable by the auditor role
(bearer token) or by a registered department (a signed token in the ``Request-Token``
header, typ ``yiwang-audit-leaf+jwt``, claims ``operator`` and ``index``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath, HeaderParameter, QueryParameter

from gateway.audit.leaves import LeafClaims, LeafReader
from gateway.audit.transparency import TransparencyLog
from gateway.core.protocol import TokenType
from gateway.core.wire import MAX_INDEX
from gateway.http.openapi import (
    OPERATOR_SECURITY,
    REQUEST_TOKEN_SECURITY,
    jws_token,
    operation_class,
    problems,
)
from gateway.http.problems import problem_response
from gateway.http.signed import JWT_MEDIA_TYPE
from gateway.registry.operators import OperatorTokens

__all__ = [
    "REQUEST_TOKEN_HEADER",
    "ROUTES",
    "checkpoint",
    "checkpoints",
    "consistency_proof",
    "entry_leaf",
    "inclusion_proof",
]

#: The header carrying a department's signed token on GET requests.
REQUEST_TOKEN_HEADER = "Request-Token"  # noqa: S105 - a header name, not a secret

_PUBLIC = "public, max-age=1"
RequestToken = Annotated[
    str | None,
    HeaderParameter(
        name=REQUEST_TOKEN_HEADER,
        required=False,
        description="For a department: a compact JWS of typ `yiwang-audit-leaf+jwt`.",
    ),
]


@get(
    "/v1/audit/checkpoint",
    summary="The latest signed checkpoint of the audit log (size and Merkle root)",
    description="A JWT signed by the gateway, typ `yiwang-audit-checkpoint+jwt`, claims "
    "`iss`, `iat`, `size`, `root` (hex SHA-256, RFC 9162). Public.",
    tags=["audit log"],
    media_type=JWT_MEDIA_TYPE,
    responses=problems(404, 503),
)
async def checkpoint(transparency: NamedDependency[TransparencyLog]) -> Response[bytes]:
    latest = await transparency.read(transparency.latest)
    if latest is None:
        return problem_response(404, "not-found", "No checkpoint yet", "the log is empty")
    return Response(
        latest.token.encode(), media_type=JWT_MEDIA_TYPE, headers={"Cache-Control": _PUBLIC}
    )


@get(
    "/v1/audit/checkpoints",
    summary="Older checkpoints, newest first (all are kept)",
    description=(
        "历史检查点，最新的在前。Every signed checkpoint the gateway made, newest first: "
        "`before` (a tree size) and `limit` (1-1000, default 100) page through them. Public."
    ),
    tags=["audit log"],
    responses=problems(400, 503),
)
async def checkpoints(
    transparency: NamedDependency[TransparencyLog],
    before: Annotated[int | None, QueryParameter(ge=1, le=MAX_INDEX)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    found = await transparency.read(transparency.checkpoints, before=before, limit=limit)
    return [c.as_json() for c in found]


@get(
    "/v1/audit/proofs/inclusion",
    summary="Inclusion proof of an entry in the tree of `size` entries (RFC 9162 order)",
    description="`index`: the entry's index as answers name it (1-based; leaf index − 1).",
    tags=["audit log"],
    responses=problems(400, 503),
)
async def inclusion_proof(
    transparency: NamedDependency[TransparencyLog],
    index: Annotated[int, QueryParameter(ge=1, le=MAX_INDEX)],
    size: Annotated[int, QueryParameter(ge=1, le=MAX_INDEX)],
) -> dict[str, Any]:
    return await transparency.read(transparency.inclusion, index, size)


@get(
    "/v1/audit/proofs/consistency",
    summary="Consistency proof between the trees of `from` and `to` entries (RFC 9162)",
    description=(
        "两个树规模之间的一致性证明。RFC 9162 consistency proof that the tree of `to` "
        "entries extends the tree of `from` entries (hex hashes in RFC order). Public: what "
        "witnesses check between two checkpoints."
    ),
    tags=["audit log"],
    responses=problems(400, 503),
)
async def consistency_proof(
    transparency: NamedDependency[TransparencyLog],
    old_size: Annotated[int, QueryParameter(name="from", ge=1, le=MAX_INDEX)],
    new_size: Annotated[int, QueryParameter(name="to", ge=1, le=MAX_INDEX)],
) -> dict[str, Any]:
    return await transparency.read(transparency.consistency, old_size, new_size)


@get(
    "/v1/audit/entries/{index:int}/leaf",
    summary="The exact bytes hashed as an entry's leaf (RFC 8785 JSON)",
    description=(
        "For the auditor role (bearer token), which reads every leaf, or a registered "
        "department (header `Request-Token`: a JWS of typ `yiwang-audit-leaf+jwt` with claims "
        "`operator` and `index`), which reads the leaves of its own entries only (403 "
        "`not-own-entry` otherwise). Subjects in leaves are keyed hashes, never in clear."
    ),
    tags=["audit log"],
    media_type="application/json",
    operation_class=operation_class(
        answers={"application/json": Schema(type=OpenAPIType.OBJECT)},
        headers={REQUEST_TOKEN_HEADER: jws_token(TokenType.AUDIT_LEAF, LeafClaims)},
    ),
    security=[*OPERATOR_SECURITY, *REQUEST_TOKEN_SECURITY],
    responses=problems(400, 401, 403, 404, 409, 429, 503),
)
async def entry_leaf(
    request: Request[Any, Any, Any],
    leaves: NamedDependency[LeafReader],
    operator_tokens: NamedDependency[OperatorTokens],
    index: FromPath[int],
    request_token: RequestToken = None,
) -> Response[bytes]:
    header = request.headers.get("authorization", "")
    scheme, _, bearer = header.partition(" ")
    if scheme.lower() == "bearer" and "auditor" in operator_tokens.roles_of(bearer.strip()):
        leaf = await leaves.for_auditor(index)
    else:
        leaf = await leaves.for_department((request_token or "").encode(), index, now=time.time())
    return Response(leaf, media_type="application/json", headers={"Cache-Control": "no-store"})


#: Every route of this module, for the app factory.
ROUTES = [checkpoint, checkpoints, inclusion_proof, consistency_proof, entry_leaf]
