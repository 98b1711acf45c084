"""The HTTP side of operator credentials: a guard per role (:mod:`gateway.registry.operators`)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from gateway.registry.operators import OperatorTokens

__all__ = ["require_role"]


def require_role(role: str) -> Any:
    """A Litestar guard: the request must carry a bearer token of ``role``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException("an operator bearer token is required")
        tokens: OperatorTokens = connection.app.state.operator_tokens
        if role not in tokens.roles_of(token.strip()):
            raise PermissionDeniedException(f"the {role} role is required")

    return guard
