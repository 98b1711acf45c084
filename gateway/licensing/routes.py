"""Route handlers of licences and seals: thin, each calls one method of the licensing service.

Signed endpoints take and answer ``application/jwt`` like the lookups (see
:mod:`gateway.licensing.claims` for every token). The status lists, the seal registry
snapshot and the seal list are public: they hold no personal data, and offline verifiers and
outside auditors need them without credentials.
"""

from __future__ import annotations

import functools
import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from gateway.core.protocol import TokenType
from gateway.core.wire import Name, Text
from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, SIGNED, problems, signed_operation
from gateway.http.problems import problem_response
from gateway.http.signed import JWT_MEDIA_TYPE, signed
from gateway.licensing.claims import CLAIM_TYPES, LICENCE_TOKEN_MAX_BYTES
from gateway.licensing.service import LicensingService

__all__ = [
    "ROUTES",
    "change_licence_status",
    "change_seal_status",
    "issue_licence",
    "list_seals",
    "register_seal",
    "reserve_status_entry",
    "seal_registry",
    "status_list",
    "verify_licence",
]

_PUBLIC_CACHE = "public, max-age=60"


@post(
    "/v1/licences:reserve",
    summary="Reserve the status-list entry of a licence about to be sealed",
    description="typ `yiwang-licence-reserve+jwt` by an issuer; claims `operator`, `licence_id`.",
    tags=["licences"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.LICENCE_RESERVE,
        CLAIM_TYPES[TokenType.LICENCE_RESERVE],
        answer=TokenType.LICENCE_RESERVED,
    ),
    responses=problems(*SIGNED, 500),
)
async def reserve_status_entry(
    request: Request[Any, Any, Any],
    licensing: NamedDependency[LicensingService],
) -> Response[bytes]:
    return await signed(request, licensing.reserve)


@post(
    "/v1/licences",
    summary="Publish a sealed licence (a new version supersedes the old one)",
    description="typ `yiwang-licence-issue+jwt` by an issuer; claims `operator`, `licence`.",
    tags=["licences"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.LICENCE_ISSUE,
        CLAIM_TYPES[TokenType.LICENCE_ISSUE],
        answer=TokenType.LICENCE_ISSUED,
    ),
    responses=problems(*SIGNED, 404, 500),
)
async def issue_licence(
    request: Request[Any, Any, Any],
    licensing: NamedDependency[LicensingService],
) -> Response[bytes]:
    return await signed(request, licensing.issue, token_cap=LICENCE_TOKEN_MAX_BYTES)


@post(
    "/v1/licences/{licence_id:str}/status",
    summary="Suspend, reinstate, revoke, withdraw or cancel a licence",
    description=(
        "typ `yiwang-licence-status+jwt` by the licence's issuer; claims `operator`, "
        "`licence_id`, `action`, `reason`."
    ),
    tags=["licences"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.LICENCE_STATUS,
        CLAIM_TYPES[TokenType.LICENCE_STATUS],
        answer=TokenType.LICENCE_STATUS_CHANGED,
    ),
    responses=problems(*SIGNED, 404, 500),
)
async def change_licence_status(
    request: Request[Any, Any, Any],
    licensing: NamedDependency[LicensingService],
    licence_id: FromPath[str],
) -> Response[bytes]:
    return await signed(request, functools.partial(licensing.change_status, licence_id=licence_id))


@post(
    "/v1/verifications",
    summary="Verify a licence by identifier, QR payload or sealed document",
    description=(
        "typ `yiwang-verification+jwt`; claims `operator`, `purpose`, and one of "
        "`licence_id`, `qr`, `licence`. Answer: a signed verification receipt."
    ),
    tags=["licences"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.VERIFICATION,
        CLAIM_TYPES[TokenType.VERIFICATION],
        answer=TokenType.VERIFICATION_RECEIPT,
    ),
    responses=problems(*SIGNED, 500),
)
async def verify_licence(
    request: Request[Any, Any, Any],
    licensing: NamedDependency[LicensingService],
) -> Response[bytes]:
    return await signed(request, licensing.verify, token_cap=LICENCE_TOKEN_MAX_BYTES)


@post(
    "/v1/seals",
    summary="Register an e-seal of the sending issuer department",
    description=(
        "typ `yiwang-seal-register+jwt`; claims `operator`, `seal`, and `proof` (a JWS by "
        "the seal's key over this request's seal_id and jti)."
    ),
    tags=["seals"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.SEAL_REGISTER,
        CLAIM_TYPES[TokenType.SEAL_REGISTER],
        answer=TokenType.SEAL_REGISTERED,
    ),
    responses=problems(*SIGNED, 500),
)
async def register_seal(
    request: Request[Any, Any, Any],
    licensing: NamedDependency[LicensingService],
) -> Response[bytes]:
    return await signed(request, licensing.register_seal)


class SealStatusChange(msgspec.Struct, forbid_unknown_fields=True):
    """An administrator's change of a seal's status."""

    action: Annotated[str, msgspec.Meta(pattern="^(suspend|reinstate|revoke)$")]
    reason: Text
    revocation_reason: Name | None = None


@post(
    "/v1/seals/{seal_id:str}/status",
    summary="Suspend, reinstate or revoke a seal (administrators)",
    description=(
        "暂停、恢复或吊销电子印章（管理员）。JSON body `action` (`suspend` | `reinstate` | "
        "`revoke`), `reason`, and for a revocation why (`key-compromise` reaches back to "
        "every licence the seal sealed). Bearer token of the `admin` role; audited."
    ),
    tags=["seals"],
    status_code=200,
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 404, 409, 503),
)
async def change_seal_status(
    licensing: NamedDependency[LicensingService],
    seal_id: FromPath[str],
    data: JSONBody[SealStatusChange],
) -> dict[str, Any]:
    seal = await licensing.change_seal(
        seal_id,
        action=data.action,
        reason=data.reason,
        revocation_reason=data.revocation_reason,
        by="admin",
        now=time.time(),
    )
    builtins: dict[str, Any] = msgspec.to_builtins(seal)
    return builtins


@get(
    "/v1/seals",
    summary="Every registered seal with its history",
    description=(
        "所有已登记的电子印章及其状态历史。Every registered e-seal: owner department, public "
        "JWK, validity and its status history (suspensions, revocations with their reasons). "
        "Public: offline verifiers need it."
    ),
    tags=["seals"],
    responses=problems(503),
)
async def list_seals(licensing: NamedDependency[LicensingService]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(seal) for seal in await licensing.seals()]


@get(
    "/v1/seals/registry",
    summary="A signed snapshot of the seal registry, for offline verification",
    description=f"A JWT signed by the gateway, typ `{TokenType.SEAL_REGISTRY}`.",
    tags=["seals"],
    media_type=JWT_MEDIA_TYPE,
    responses=problems(503),
)
async def seal_registry(licensing: NamedDependency[LicensingService]) -> Response[bytes]:
    token = await licensing.signed_registry(now=time.time())
    return Response(
        token.encode(), media_type=JWT_MEDIA_TYPE, headers={"Cache-Control": _PUBLIC_CACHE}
    )


@get(
    "/v1/status-lists/{list_id:str}",
    summary="A signed licence status list (W3C Bitstring Status List, as a JWT)",
    description=(
        f"typ `{TokenType.STATUS_LIST}`; 131,072 entries of 3 bits, gzip + base64url. Fetch the "
        "whole list: which licence you check is never sent."
    ),
    tags=["licences"],
    media_type=JWT_MEDIA_TYPE,
    responses=problems(400, 404, 503),
)
async def status_list(
    licensing: NamedDependency[LicensingService], list_id: FromPath[str]
) -> Response[bytes]:
    token = await licensing.signed_status_list(list_id, now=time.time())
    if token is None:
        return problem_response(404, "not-found", "No such status list", f"list {list_id}")
    return Response(
        token.encode(), media_type=JWT_MEDIA_TYPE, headers={"Cache-Control": _PUBLIC_CACHE}
    )


#: Every route of this module, for the app factory.
ROUTES = [
    reserve_status_entry,
    issue_licence,
    change_licence_status,
    verify_licence,
    register_seal,
    change_seal_status,
    list_seals,
    seal_registry,
    status_list,
]
