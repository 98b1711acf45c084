"""Route handlers of administrators' acts on the registry (bearer token of the admin role)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from gateway.core.wire import Text
from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, problems
from gateway.registry.keys import KeyAdministration

__all__ = ["ROUTES", "KeyRevocation", "revoke_department_key"]


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


#: Every route of this module, for the app factory.
ROUTES = [revoke_department_key]
