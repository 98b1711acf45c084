"""Route handlers of the security officers' tools, the citizens' access history and a
department's own refusals (see :mod:`gateway.oversight.service`,
:mod:`gateway.oversight.history` and :mod:`gateway.oversight.refusals`).

Officers' endpoints take the ``auditor`` role's bearer token (``Authorization: Bearer …``); a
department's key is not enough. The access history is for the portal department: a signed
token (typ ``yiwang-access-history+jwt``) in the ``Request-Token`` header, and a grant. A
department's own refusals: a signed body (typ ``yiwang-refusals+jwt``), no grant needed.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromPath, FromQuery, HeaderParameter, QueryParameter
from litestar.response import Stream

from gateway.core.protocol import TokenType
from gateway.core.wire import NAME_PATTERN
from gateway.http.auth import require_role
from gateway.http.openapi import (
    JWT_MEDIA_TYPE,
    OPERATOR_SECURITY,
    REQUEST_TOKEN_SECURITY,
    SIGNED,
    TableOperation,
    jws_answer,
    jws_token,
    operation_class,
    problems,
    signed_operation,
)
from gateway.http.signed import jwt_response, signed
from gateway.oversight.history import HistoryClaims
from gateway.oversight.refusals import RefusalsClaims
from gateway.oversight.service import OfficerService

__all__ = [
    "ROUTES",
    "access_history",
    "add_embargo",
    "alerts",
    "export_entries",
    "lift_embargo",
    "list_embargoes",
    "own_refusals",
    "search_entries",
]

#: The header carrying the portal's signed token on a GET.
REQUEST_TOKEN_HEADER = "Request-Token"  # noqa: S105 - a header name, not a secret
RequestToken = Annotated[
    str | None,
    HeaderParameter(
        name=REQUEST_TOKEN_HEADER,
        required=False,
        description="A compact JWS of typ `yiwang-access-history+jwt` signed by the portal "
        "department.",
    ),
]
#: The embargo request body (JSON).
EmbargoOperation = operation_class(
    body={
        "application/json": Schema(
            type=OpenAPIType.OBJECT,
            required=["subject", "until", "reason", "operator"],
            properties={
                "subject": Schema(type=OpenAPIType.STRING, description="`type:id`"),
                "until": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
                "reason": Schema(type=OpenAPIType.STRING, min_length=1, max_length=256),
                "operator": Schema(type=OpenAPIType.STRING, pattern=NAME_PATTERN),
                "department": Schema(type=OpenAPIType.STRING, pattern=NAME_PATTERN),
            },
            additional_properties=False,
        )
    },
    body_description="Whose entries to hide, until when, and why.",
)
_AUDITOR = [require_role("auditor")]
_NO_STORE = {"Cache-Control": "no-store"}
_TAGS = ["security officers"]

_FILTERS_DOC = (
    "Filters (all optional, all must hold): `from`, `until` (RFC 3339 with offset; `from` "
    "inclusive, `until` exclusive), `department`, `operator`, `resource`, `item`, `case`, "
    "`decision` (`allowed` | `refused`), `event` (exact, or a prefix ending in `*`, e.g. "
    "`lookup:*`), `subject` (`type:id`, e.g. `uscc:91430671AUDLE3UHM0` — keyed with the audit "
    "secret on the way in; never stored or logged in clear)."
)

Text = Annotated[str | None, QueryParameter(max_length=200)]
From = Annotated[str | None, QueryParameter(name="from", max_length=200)]


def _filters(  # noqa: PLR0917 - one argument per filter, passed on as they came
    since: str | None,
    until: str | None,
    department: str | None,
    operator: str | None,
    resource: str | None,
    item: str | None,
    case: str | None,
    decision: str | None,
    event: str | None,
    subject: str | None,
) -> dict[str, str | None]:
    return {
        "from": since,
        "until": until,
        "department": department,
        "operator": operator,
        "resource": resource,
        "item": item,
        "case": case,
        "decision": decision,
        "event": event,
        "subject": subject,
    }


@get(
    "/v1/audit/entries",
    summary="Search the audit log (auditors)",
    description=(
        _FILTERS_DOC + " Paging: `limit` (1-500, default 100), `order` (`asc` oldest first, "
        "the default, or `desc`), `cursor` (the `next` of the previous page; keyset paging "
        "on the entry index, stable while entries keep arriving). Answer: `{entries, next, "
        "tree_size}`; each entry with its `index` and `proof` — the link to its inclusion "
        "proof in the tree of `tree_size` entries."
    ),
    tags=_TAGS,
    guards=_AUDITOR,
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 503),
)
async def search_entries(  # noqa: PLR0917 - the query parameters
    officers: NamedDependency[OfficerService],
    since: From = None,
    until: Text = None,
    department: Text = None,
    operator: Text = None,
    resource: Text = None,
    item: Text = None,
    case: Text = None,
    decision: Text = None,
    event: Text = None,
    subject: Text = None,
    cursor: Text = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    order: Annotated[str, QueryParameter(pattern=r"^(asc|desc)$")] = "asc",
) -> Response[dict[str, Any]]:
    params = _filters(
        since, until, department, operator, resource, item, case, decision, event, subject
    )
    params["cursor"] = cursor
    page = await officers.search(params, limit=limit, order=order)
    return Response(page, headers=_NO_STORE)


@get(
    "/v1/audit/entries/export",
    summary="Export the audit log as CSV or JSON Lines, streamed (auditors)",
    description=(
        "`format`: `csv` (header row first) or `jsonl`. "
        + _FILTERS_DOC
        + " Every matching entry up to the log's size when the export started (header "
        "`Audit-Tree-Size`), in index order, streamed in constant memory. The export itself "
        "is an audit entry (`audit:entries:exported`, index in `Audit-Index`)."
    ),
    tags=_TAGS,
    guards=_AUDITOR,
    cache_control=None,
    security=OPERATOR_SECURITY,
    operation_class=TableOperation,
    responses=problems(400, 401, 403, 503),
)
async def export_entries(  # noqa: PLR0917 - the query parameters
    officers: NamedDependency[OfficerService],
    fmt: Annotated[Literal["csv", "jsonl"], QueryParameter(name="format")] = "csv",
    since: From = None,
    until: Text = None,
    department: Text = None,
    operator: Text = None,
    resource: Text = None,
    item: Text = None,
    case: Text = None,
    decision: Text = None,
    event: Text = None,
    subject: Text = None,
) -> Stream:
    params = _filters(
        since, until, department, operator, resource, item, case, decision, event, subject
    )
    export = await officers.export(params, fmt=fmt, now=time.time())
    return Stream(
        export.chunks,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Audit-Index": str(export.audit_index),
            "Audit-Tree-Size": str(export.upto),
            **_NO_STORE,
        },
    )


@get(
    "/v1/audit/subjects/{subject:str}/accesses",
    summary="A person's or company's access history: who read their data (portal department)",
    description=(
        "`subject`: `resident-id:<number>` or `uscc:<code>`. Header `Request-Token`: a JWS of "
        "typ `yiwang-access-history+jwt` signed by the portal department, claims `operator`, "
        "`purpose` {item, case, reason} and `subject` {type, id} (the path's subject); "
        "allowed only under a grant for the catalogued access-history resource. Query: "
        "`limit` (1-500, default 100), `cursor` (the answer's `next`). Answer: a JWT signed "
        "by the gateway (typ `yiwang-access-history-result+jwt`): `accesses`, newest first — "
        "department and its name, time, service item, case, resource and fields (as the "
        "grant allows) of each released lookup or licence verification; never refusals, "
        "never operators, nothing under an embargo in force."
    ),
    tags=_TAGS,
    cache_control=None,
    media_type=JWT_MEDIA_TYPE,
    operation_class=operation_class(
        answers={JWT_MEDIA_TYPE: jws_answer(TokenType.ACCESS_HISTORY_RESULT)},
        headers={REQUEST_TOKEN_HEADER: jws_token(TokenType.ACCESS_HISTORY, HistoryClaims)},
    ),
    security=REQUEST_TOKEN_SECURITY,
    responses=problems(400, 401, 403, 409, 429, 503),
)
async def access_history(
    officers: NamedDependency[OfficerService],
    subject: FromPath[str],
    *,
    request_token: RequestToken = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    cursor: Text = None,
) -> Response[bytes]:
    token = (request_token or "").encode("utf-8", "replace")
    answer = await officers.history.accesses(
        subject, token=token, now=time.time(), limit=limit, cursor=cursor
    )
    return jwt_response(answer)


@post(
    "/v1/audit/embargoes",
    summary="Hide a subject's entries from the access history until a date (auditors)",
    description=(
        "JSON body: `subject` (`type:id`), `until` (district date, inclusive), `reason`, "
        "`operator` (the officer), optionally `department` (hide only its reads). Auditors "
        "still see every entry. The embargo is itself an audit entry (`audit:embargo:added`)."
    ),
    tags=_TAGS,
    guards=_AUDITOR,
    status_code=201,
    security=OPERATOR_SECURITY,
    operation_class=EmbargoOperation,
    responses=problems(400, 401, 403, 503),
)
async def add_embargo(
    request: Request[Any, Any, Any], officers: NamedDependency[OfficerService]
) -> Response[dict[str, Any]]:
    body = await request.body()
    return Response(
        await officers.add_embargo(body, now=time.time()),
        status_code=201,
        headers=_NO_STORE,
    )


@get(
    "/v1/audit/embargoes",
    summary="Embargoes, newest first (auditors)",
    description="`in_force`: `true` only those in force today, `false` only the others.",
    tags=_TAGS,
    guards=_AUDITOR,
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 503),
)
async def list_embargoes(
    officers: NamedDependency[OfficerService], in_force: FromQuery[bool | None] = None
) -> Response[dict[str, Any]]:
    return Response(await officers.list_embargoes(in_force=in_force), headers=_NO_STORE)


@delete(
    "/v1/audit/embargoes/{embargo_id:str}",
    summary="Lift an embargo before its date (auditors)",
    description="Query: `operator` (the officer), `reason`. Audited (`audit:embargo:lifted`).",
    tags=_TAGS,
    guards=_AUDITOR,
    status_code=200,
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 404, 503),
)
async def lift_embargo(
    officers: NamedDependency[OfficerService],
    embargo_id: FromPath[str],
    operator: Text = None,
    reason: Text = None,
) -> Response[dict[str, Any]]:
    lifted = await officers.lift_embargo(
        embargo_id, operator=operator, reason=reason, now=time.time()
    )
    return Response(lifted, headers=_NO_STORE)


@get(
    "/v1/audit/alerts",
    summary="Anomalies in a time window (auditors)",
    description=(
        "`from`, `until` (RFC 3339; default: the last 24 hours; at most 31 days). Kinds: "
        "`subject-rate` (far more distinct subjects in an hour than the department's usual "
        "rate), `grant-quota` (beyond a grant's `max_subjects_per_day`), "
        "`outside-grant-hours`, `outside-working-hours`, `closed-case`, `token-failures`, "
        "`login-failures` (console log-ins refused under one username, the token failures' "
        "thresholds), `account-locked` (a console account locked by failed log-ins). "
        "Each alert: `kind`, `department`, `window`, `numbers`, `why`."
    ),
    tags=_TAGS,
    guards=_AUDITOR,
    security=OPERATOR_SECURITY,
    responses=problems(400, 401, 403, 503),
)
async def alerts(
    officers: NamedDependency[OfficerService],
    since: From = None,
    until: Text = None,
) -> Response[dict[str, Any]]:
    found = await officers.alerts(since=since, until=until, now=time.time())
    return Response(found, headers=_NO_STORE)


@post(
    "/v1/refusals",
    summary="A department's own recent refusals, with their precise reasons",
    description=(
        "本部门近期被拒绝的请求及其确切原因。令牌失败对外一律是不透明的 401，"
        "确切原因只写入审计日志；部门可用本接口查询自己的拒绝记录，以便排查签名代码。\n\n"
        "Body: a compact JWS of typ `yiwang-refusals+jwt` signed by the department, claims "
        "`operator`, optionally `since` (epoch seconds, at most 7 days back; default 24 h), "
        "`limit` (1-100, default 50), `before` (the previous answer's `next`). Answer: a JWT "
        "signed by the gateway (typ `yiwang-refusals-result+jwt`): `refusals`, newest first — "
        "`audit_index`, `at`, `event`, `reason_code`, `reason` (in words), `detail`, "
        "`request_sha256` (SHA-256 of the refused token) — of every refused request whose "
        "token named a key registered to the department (never by an unverified `iss`); and "
        "`next`. The read is itself audited (`audit:refusals:read`)."
    ),
    tags=["refusals"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.REFUSALS, RefusalsClaims, answer=TokenType.REFUSALS_RESULT
    ),
    responses=problems(*SIGNED, 500),
)
async def own_refusals(
    request: Request[Any, Any, Any],
    officers: NamedDependency[OfficerService],
) -> Response[bytes]:
    return await signed(request, officers.refusals.refusals)


#: Every route of this module, for the app factory.
ROUTES = [
    own_refusals,
    search_entries,
    export_entries,
    access_history,
    add_embargo,
    list_embargoes,
    lift_embargo,
    alerts,
]
