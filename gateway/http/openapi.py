"""What the OpenAPI document says of every operation: bodies, problems, credentials.

The document is the integrators' contract and the fuzzers' oracle (schemathesis checks that
every answer has a documented status, media type and shape), so each route declares here
every status it can answer with. Problems are RFC 9457 ``application/problem+json``;
signed requests are a compact JWS in an ``application/jwt`` body; the officers' and
administrators' endpoints take a bearer token (security scheme ``operatorToken``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)

__all__ = [
    "COMPACT_JWS_PATTERN",
    "COMPONENTS",
    "JWT_MEDIA_TYPE",
    "OPERATOR_SECURITY",
    "PROBLEM_JSON",
    "SIGNED",
    "Problem",
    "SignedOperation",
    "TableOperation",
    "UploadOperation",
    "jwt_answer",
    "operation_class",
    "operation_id",
    "problems",
]

JWT_MEDIA_TYPE = "application/jwt"
PROBLEM_JSON = "application/problem+json"
#: A compact JWS: three base64url segments (RFC 7515 §7.1).
COMPACT_JWS_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$"

#: Security requirement of the operator (auditor / admin) endpoints.
OPERATOR_SECURITY: list[dict[str, list[str]]] = [{"operatorToken": []}]
COMPONENTS = Components(
    security_schemes={
        "operatorToken": SecurityScheme(
            type="http",
            scheme="bearer",
            description="An operator's bearer token (`keys/operators/<role>.token`): the "
            "`auditor` role for the security officers' endpoints, `admin` for the registry.",
        )
    }
)


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details, as the gateway sends them (``application/problem+json``)."""

    type: str  # urn:yiwang:problem:<slug>
    title: str
    status: int
    detail: str | None = None
    #: 400: the field at fault (claim path, parameter or form field) and why.
    field: str | None = None
    #: 400: why; 403: the policy's reason code (``no-grant``, ``not-own-entry`` …).
    reason: str | None = None
    #: The audit entry that recorded the refusal (every request that reached the gateway).
    audit_index: int | None = None
    #: 429: seconds until the department's budget is renewed (also in ``Retry-After``).
    retry_after: int | None = None
    #: 503 after admission: whether the token is used (then send a new one; no
    #: ``Retry-After``) or was released (resend it).
    token_consumed: bool | None = None


_MEANING = {
    400: "Malformed input: a claim, parameter or body field (named in `field`, with `reason`)",
    401: "The token was not accepted (one opaque answer; the precise reason is in the audit "
    "log only) or operator credentials are missing",
    403: "Refused by the sharing policy or the caller's role (`reason`)",
    404: "Nothing of that name or index",
    405: "Method not allowed",
    409: "The token's `jti` was already used",
    413: "The body is larger than the endpoint takes",
    415: "The body is not of the media type the endpoint takes",
    429: "The department's request budget for the window is spent (`Retry-After`)",
    500: "An unexpected failure; recorded in the audit log (`audit_index`), nothing released",
    502: "The provider's source failed or answered something malformed; nothing released",
    503: "A store the request needs is unavailable; nothing released (`Retry-After`)",
    504: "The provider's source did not answer in time; nothing released",
}

#: What every signed POST may answer besides success.
SIGNED = (400, 401, 403, 409, 413, 415, 429, 503)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The documented problem answers of an operation (RFC 9457 bodies)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_MEANING[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in statuses
    }


def operation_id(handler: HTTPRouteHandler, _method: str, _path: Sequence[object]) -> str:
    """An operation's id: its handler's name (``lookup``, ``own_refusals``), short and stable
    for the clients integrators generate (the default strings path and name together)."""
    return handler.handler_name


def jwt_answer(description: str) -> dict[str, Any]:
    """Route keywords of an operation that answers a JWT signed by the gateway."""
    return {"media_type": JWT_MEDIA_TYPE, "response_description": description}


def operation_class(
    *,
    body: Mapping[str, Schema] | None = None,
    body_description: str = "",
    answers: Mapping[str, Schema] | None = None,
    success: str = "200",
) -> type[Operation]:
    """An :class:`Operation` whose request body and success media types are the given ones
    (the framework infers neither for a body read as a stream or an answer in one of two
    formats)."""

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            if body is not None:
                self.request_body = RequestBody(
                    required=True,
                    description=body_description,
                    content={m: OpenAPIMediaType(schema=sch) for m, sch in body.items()},
                )
            if answers is not None and self.responses and success in self.responses:
                response = self.responses[success]
                if isinstance(response, OpenAPIResponse):
                    response.content = {
                        m: OpenAPIMediaType(schema=sch) for m, sch in answers.items()
                    }

    return _Operation


_TEXT = Schema(type=OpenAPIType.STRING)

#: An operation whose body is a department's signed request: a compact JWS.
SignedOperation = operation_class(
    body={JWT_MEDIA_TYPE: Schema(type=OpenAPIType.STRING, pattern=COMPACT_JWS_PATTERN)},
    body_description="A compact JWS signed with the department's registered key (header "
    "`alg`, `kid`, `typ` only; registered claims `iss`, `aud`, `iat`, `exp`, `jti` — times "
    "in whole seconds).",
)
#: An operation whose body is an uploaded file.
UploadOperation = operation_class(
    body={"text/csv": _TEXT, "application/x-ndjson": _TEXT},
    body_description="The file: CSV (header row first) or JSON Lines, UTF-8.",
    answers={JWT_MEDIA_TYPE: _TEXT},
)
#: An operation that answers CSV or JSON Lines (``format``).
TableOperation = operation_class(answers={"text/csv": _TEXT, "application/x-ndjson": _TEXT})
