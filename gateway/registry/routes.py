"""Route handlers of administrators' acts on the registry (bearer token of the admin role)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from gateway.core.protocol import TokenType
from gateway.core.wire import NumericDate, ShortText, Text
from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, SIGNED, problems, signed_operation
from gateway.http.signed import JWT_MEDIA_TYPE, signed
from gateway.registry.claims import CLAIM_TYPES
from gateway.registry.keys import KeyAdministration

__all__ = [
    "ROUTES",
    "KeyRegistrationByAdministrator",
    "KeyRetirementByAdministrator",
    "KeyRevocation",
    "register_department_key",
    "register_own_key",
    "retire_department_key",
    "retire_own_key",
    "revoke_department_key",
]


class KeyRevocation(msgspec.Struct, forbid_unknown_fields=True):
    """Why a department key is revoked (kept in the audit log)."""

    reason: Text


@post(
    "/v1/departments/{department:str}/keys/{kid:str}/revoke",
    summary="Revoke a department's key: its requests are refused within a second, everywhere",
    description=(
        "吊销部门密钥（管理员）。JSON body `reason`; bearer token of the `admin` role. Every "
        "gateway process refuses the key within a second; audited `key:department:revoked`."
    ),
    tags=["registry"],
    status_code=200,
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 404, 503),
)
async def revoke_department_key(
    keys: NamedDependency[KeyAdministration],
    department: FromPath[str],
    kid: FromPath[str],
    data: JSONBody[KeyRevocation],
) -> dict[str, Any]:
    previous = await keys.revoke(
        department=department, kid=kid, reason=data.reason, by="admin", now=time.time()
    )
    return {"department": department, "kid": kid, "status": "revoked", "previous": previous}


class KeyRegistrationByAdministrator(msgspec.Struct, forbid_unknown_fields=True):
    """A key an administrator registers for a department, with the department's proof."""

    jwk: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=16)], ShortText | Text],
        msgspec.Meta(max_length=16),
    ]
    proof: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
    reason: Text
    expires_at: NumericDate | None = None


class KeyRetirementByAdministrator(msgspec.Struct, forbid_unknown_fields=True):
    """Why an administrator retires a department's key (kept in the audit log)."""

    reason: Text


@post(
    "/v1/keys",
    summary="Register the sending department's next key (signed with a current one)",
    description=(
        "登记本部门的下一把密钥。typ `yiwang-key-register+jwt`, signed with one of the "
        "department's active keys; claims `operator`, `jwk` (the new public JWK), `proof` (a "
        "JWS by the new key, typ `yiwang-key-proof+jwt`, over `{department, kid, aud, jti}` "
        "with this request's jti) and `expires_at` (optional). The key verifies requests "
        "in every gateway process within a second; audited `key:department:registered`."
    ),
    tags=["registry"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.KEY_REGISTER, CLAIM_TYPES[TokenType.KEY_REGISTER], answer=TokenType.KEY_REGISTERED
    ),
    responses=problems(*SIGNED, 500),
)
async def register_own_key(
    request: Request[Any, Any, Any],
    keys: NamedDependency[KeyAdministration],
) -> Response[bytes]:
    return await signed(request, keys.register_own_key)


@post(
    "/v1/keys:retire",
    summary="Retire one of the sending department's active keys",
    description=(
        "停用本部门的一把密钥。typ `yiwang-key-retire+jwt`; claims `operator`, `kid`. Never "
        "the department's last active key; audited `key:department:retired`."
    ),
    tags=["registry"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.KEY_RETIRE, CLAIM_TYPES[TokenType.KEY_RETIRE], answer=TokenType.KEY_RETIRED
    ),
    responses=problems(*SIGNED, 500),
)
async def retire_own_key(
    request: Request[Any, Any, Any],
    keys: NamedDependency[KeyAdministration],
) -> Response[bytes]:
    return await signed(request, keys.retire_own_key)


@post(
    "/v1/departments/{department:str}/keys",
    summary="Register a key for a department (administrator)",
    description=(
        "管理员为部门登记密钥。JSON body `jwk`, `proof` (a JWS by the new key, typ "
        "`yiwang-key-proof+jwt`, over `{department, kid, aud, iat}`, iat within 5 minutes), "
        "`reason`, `expires_at` (optional); bearer token of the `admin` role. Audited."
    ),
    tags=["registry"],
    status_code=200,
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 503),
)
async def register_department_key(
    keys: NamedDependency[KeyAdministration],
    department: FromPath[str],
    data: JSONBody[KeyRegistrationByAdministrator],
) -> dict[str, Any]:
    return await keys.register_for(
        department=department,
        jwk=data.jwk,
        proof=data.proof,
        expires_at=data.expires_at,
        reason=data.reason,
        by="admin",
        now=time.time(),
    )


@post(
    "/v1/departments/{department:str}/keys/{kid:str}/retire",
    summary="Retire a department's key (administrator)",
    description=(
        "管理员停用部门密钥。JSON body `reason`; bearer token of the `admin` role. Never the "
        "department's last active key; audited `key:department:retired`."
    ),
    tags=["registry"],
    status_code=200,
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 503),
)
async def retire_department_key(
    keys: NamedDependency[KeyAdministration],
    department: FromPath[str],
    kid: FromPath[str],
    data: JSONBody[KeyRetirementByAdministrator],
) -> dict[str, Any]:
    return await keys.retire_for(
        department=department, kid=kid, reason=data.reason, by="admin", now=time.time()
    )


#: Every route of this module, for the app factory.
ROUTES = [
    revoke_department_key,
    register_own_key,
    retire_own_key,
    register_department_key,
    retire_department_key,
]
