"""Routes of the policy feature: an administrator's explanation of a decision."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from gateway.core.policy_check import explain_decision
from gateway.core.wire import NAME_PATTERN
from gateway.http.auth import require_role
from gateway.http.openapi import OPERATOR_SECURITY, problems
from gateway.policy.holder import PolicyHolder

__all__ = ["ROUTES", "explain_policy"]


@get(
    "/v1/policy/explain",
    summary="Explain the policy decision for a consumer, resource, item and fields",
    description=(
        "解释共享策略的决定（管理员）。Query `consumer`, `resource`, `item`, optionally "
        "`fields` (comma-separated) and `at` (RFC 3339): the decision the policy set in force "
        "would make, the grant that decides and why. Bearer token of the `admin` role."
    ),
    tags=["policy"],
    guards=[require_role("admin")],
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403),
)
async def explain_policy(
    policy: NamedDependency[PolicyHolder],
    *,
    consumer: Annotated[str, QueryParameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    resource: Annotated[str, QueryParameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    item: Annotated[str, QueryParameter(min_length=1, max_length=64, pattern=NAME_PATTERN)],
    fields: Annotated[str | None, QueryParameter(max_length=2048)] = None,
    at: FromQuery[dt.datetime | None] = None,
) -> dict[str, Any]:
    """The decision the policy set in force makes, grant by grant (administrators only)."""
    return explain_decision(
        policy.current,
        consumer=consumer,
        resource=resource,
        item=item,
        fields=None if fields is None else [f.strip() for f in fields.split(",") if f.strip()],
        now=at or dt.datetime.now(dt.UTC),
    )


#: Every route of this module, for the app factory.
ROUTES = [explain_policy]
