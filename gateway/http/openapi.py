"""What the OpenAPI document says of every operation: bodies, problems, credentials.

The document is the integrators' contract and the fuzzers' oracle (schemathesis checks that
every answer has a documented status, media type and shape), so each route declares here
every status it can answer with. Problems are RFC 9457 ``application/problem+json``;
signed requests are a compact JWS in an ``application/jwt`` body (or, on a GET, in the
``Request-Token`` / ``Upload-Token`` header); the officers' and administrators' endpoints take
a bearer token (security scheme ``operatorToken``).

A JWS is a string to OpenAPI, so its contents are told by two extension members on the
string's schema (the convention of this document, stated in its ``info.description``):

- ``x-jws-typ``: the ``typ`` its protected header must carry;
- ``x-jws-claims``: a JSON Schema (2020-12) of its decoded payload — the registered claims
  and the endpoint's own — as a schema resource of its own (``$id``
  ``urn:yiwang:jws-claims:<typ>``, its definitions in its ``$defs``). A request's claims
  schema is generated from the msgspec structure its parser decodes into, an answer's from
  the structure of its claims in :mod:`gateway.core.answers`, so the document cannot drift
  from the code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
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
    Parameter,
    RequestBody,
    Schema,
    SecurityScheme,
)

from gateway.core.answers import ANSWER_CLAIMS
from gateway.core.protocol import TokenType

__all__ = [
    "COMPACT_JWS_PATTERN",
    "COMPONENTS",
    "JWS_CONVENTION",
    "JWT_MEDIA_TYPE",
    "OPERATOR_SECURITY",
    "PROBLEM_JSON",
    "REQUEST_TOKEN_SECURITY",
    "SIGNED",
    "TABLE_MEDIA_TYPES",
    "UPLOAD_TOKEN_SECURITY",
    "JWSString",
    "Problem",
    "TableOperation",
    "claims_schema",
    "jws_answer",
    "jws_token",
    "jwt_answer",
    "operation_class",
    "operation_id",
    "problems",
    "signed_operation",
]

JWT_MEDIA_TYPE = "application/jwt"
PROBLEM_JSON = "application/problem+json"
#: A compact JWS: three base64url segments (RFC 7515 §7.1).
COMPACT_JWS_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$"

#: Security requirement of the operator (auditor / admin) endpoints.
OPERATOR_SECURITY: list[dict[str, list[str]]] = [{"operatorToken": []}]
#: Security requirement of a GET whose signed token is in the ``Request-Token`` header.
REQUEST_TOKEN_SECURITY: list[dict[str, list[str]]] = [{"requestToken": []}]
#: Security requirement of a provider's upload or rejection report (``Upload-Token``).
UPLOAD_TOKEN_SECURITY: list[dict[str, list[str]]] = [{"uploadToken": []}]
COMPONENTS = Components(
    security_schemes={
        "operatorToken": SecurityScheme(
            type="http",
            scheme="bearer",
            description="An operator's bearer token (`keys/operators/<role>.token`): the "
            "`auditor` role for the security officers' endpoints, `admin` for the registry.",
        ),
        "requestToken": SecurityScheme(
            type="apiKey",
            name="Request-Token",
            security_scheme_in="header",
            description="On a GET: a compact JWS signed by the department (the operation's "
            "`Request-Token` parameter says its `typ` and claims).",
        ),
        "uploadToken": SecurityScheme(
            type="apiKey",
            name="Upload-Token",
            security_scheme_in="header",
            description="A provider's compact JWS for an upload or its rejection report (the "
            "operation's `Upload-Token` parameter says its `typ` and claims).",
        ),
    },
)
#: What the document's ``info.description`` says of the JWS convention.
JWS_CONVENTION = (
    "签名请求与应答均为紧凑序列化的 JWS（RFC 7515）。Every signed request is a compact JWS "
    "(`application/jwt` body, or the `Request-Token` / `Upload-Token` header on a GET) "
    "signed with the department's registered key; every answer to one is a JWT signed by "
    "the gateway (check it against `/.well-known/jwks.json`). A JWS is a string here: its "
    "schema's `x-jws-typ` is the `typ` of its protected header (which carries `alg`, `typ` "
    "and `kid` only) and `x-jws-claims` the JSON Schema of its decoded payload. Refusals are "
    "RFC 9457 problem details; every token failure is the same opaque 401, whose precise "
    "reason the department reads with `POST /v1/refusals`."
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


#: The registered claims of every request a department signs (checked by the token verifier).
_REGISTERED_CLAIMS: dict[str, Any] = {
    "title": "RegisteredClaims",
    "description": "Registered claims of a department's request: `iss` its department id, "
    "`aud` the gateway's id, `iat`/`exp` whole seconds (`exp - iat` at most 300), optional "
    "`nbf`, `jti` single-use until expiry.",
    "type": "object",
    "properties": {
        "iss": {"type": "string", "minLength": 1, "maxLength": 64},
        "aud": {"type": "string", "minLength": 1, "maxLength": 128},
        "iat": {"type": "integer", "minimum": 946684800, "maximum": 4102444800},
        "exp": {"type": "integer", "minimum": 946684800, "maximum": 4102444800},
        "nbf": {"type": "integer", "minimum": 946684800, "maximum": 4102444800},
        "jti": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
    },
    "required": ["iss", "aud", "iat", "exp", "jti"],
}
#: What every answer the gateway signs for a department carries.
_ANSWER_CLAIMS: dict[str, Any] = {
    "title": "AnswerClaims",
    "description": "Claims of every answer the gateway signs for a department: `iss` the "
    "gateway's id, `aud` the department, `request` the `jti` and SHA-256 (hex, of the exact "
    "token sent) of the request it answers, `audit.index` the entry that recorded it.",
    "type": "object",
    "properties": {
        "iss": {"type": "string"},
        "aud": {"type": "string"},
        "iat": {"type": "integer"},
        "exp": {"type": "integer"},
        "jti": {"type": "string"},
        "request": {
            "type": "object",
            "properties": {
                "jti": {"type": "string"},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
            "required": ["jti", "sha256"],
        },
        "audit": {
            "type": "object",
            "properties": {"index": {"type": "integer", "minimum": 1}},
            "required": ["index"],
        },
    },
    "required": ["iss", "aud", "iat", "exp", "jti", "request", "audit"],
}

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _struct_schema(claims: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema msgspec generates for ``claims``, and its definitions, named after
    the structures without a leading underscore."""
    generated = msgspec.json.schema(claims)
    text = json.dumps(generated)
    for name in generated.get("$defs", {}):
        public = name.lstrip("_")
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{public}"')
        text = text.replace(f'"title": "{name}"', f'"title": "{public}"')
    renamed = json.loads(text)
    defs = {name.lstrip("_"): schema for name, schema in renamed.pop("$defs", {}).items()}
    return renamed, defs


def claims_schema(typ: str, claims: type[Any]) -> dict[str, Any]:
    """The JSON Schema of the payload of a request of ``typ`` whose own claims decode into the
    msgspec structure ``claims``: the registered claims and its own.

    A schema resource of its own (``$id`` ``urn:yiwang:jws-claims:<typ>``, its ``$defs``
    inside), so that an integrator can take it out of the document and validate with it as
    it is; definitions are named after the structures, without a leading underscore.
    """
    own, defs = _struct_schema(claims)
    return {
        "$schema": _DIALECT,
        "$id": f"urn:yiwang:jws-claims:{typ}",
        "allOf": [_REGISTERED_CLAIMS, own],
        "$defs": defs,
    }


def answer_claims_schema(typ: str) -> dict[str, Any]:
    """The JSON Schema of the payload of an answer of ``typ`` signed by the gateway: the
    common claims and the answer's own, generated from its structure in
    :data:`gateway.core.answers.ANSWER_CLAIMS` (a ``typ`` without one is a KeyError: an
    answer is not documented without its claims)."""
    structure = ANSWER_CLAIMS[TokenType(typ)]
    own, defs = _struct_schema(structure)
    # The structure names only the answer's own members: the common ones are allowed by
    # ``unevaluatedProperties`` (which sees through ``allOf``) rather than by the structure.
    defs[structure.__name__].pop("additionalProperties", None)
    return {
        "$schema": _DIALECT,
        "$id": f"urn:yiwang:jws-claims:{typ}",
        "allOf": [_ANSWER_CLAIMS, own],
        "unevaluatedProperties": False,
        "$defs": defs,
    }


@dataclass
class JWSString(Schema):
    """The schema of a compact JWS: a string whose ``x-jws-typ`` and ``x-jws-claims`` say
    what its header and payload carry (see the module's docstring)."""

    jws_typ: str | None = dataclass_field(default=None, metadata={"alias": "x-jws-typ"})
    jws_claims: dict[str, Any] | None = dataclass_field(
        default=None, metadata={"alias": "x-jws-claims"}
    )


def jws_token(typ: str, claims: type[Any]) -> JWSString:
    """The schema of a department's signed request of ``typ`` whose own claims decode into
    ``claims`` (a body, or a header: see ``headers`` of :func:`operation_class`)."""
    return JWSString(
        type=OpenAPIType.STRING,
        pattern=COMPACT_JWS_PATTERN,
        jws_typ=typ,
        jws_claims=claims_schema(typ, claims),
    )


def jws_answer(typ: str) -> JWSString:
    """The schema of an answer of ``typ`` signed by the gateway for the sender."""
    return JWSString(
        type=OpenAPIType.STRING,
        pattern=COMPACT_JWS_PATTERN,
        description="A JWT signed by the gateway (ES256) for the sender: check it against "
        "`/.well-known/jwks.json`.",
        jws_typ=typ,
        jws_claims=answer_claims_schema(typ),
    )


def signed_operation(
    request: str, claims: type[Any], *, answer: str | None, answer_media: str = JWT_MEDIA_TYPE
) -> type[Operation]:
    """An operation whose body is a department's signed request of ``typ`` ``request`` (own
    claims decoded into ``claims``), answered with a JWT of ``typ`` ``answer`` signed by the
    gateway (``None``: answered with something else, e.g. JSON)."""
    body = jws_token(request, claims)
    answers = None if answer is None else {answer_media: jws_answer(answer)}
    return operation_class(
        body={JWT_MEDIA_TYPE: body},
        body_description=f"A compact JWS of typ `{request}` signed with the department's "
        "registered key (header `alg`, `kid`, `typ` only; times in whole seconds). Its "
        "payload: `x-jws-claims`.",
        answers=answers,
    )


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
    headers: Mapping[str, Schema] | None = None,
    success: str = "200",
) -> type[Operation]:
    """An :class:`Operation` whose request body and success media types are the given ones
    (the framework infers neither for a body read as a stream or an answer in one of two
    formats), and whose header parameters named in ``headers`` have those schemas (a signed
    token's :class:`JWSString`, which a parameter's declaration cannot say)."""

    @dataclass
    class _Operation(Operation):
        def __post_init__(self) -> None:
            for parameter in self.parameters or ():
                if (
                    headers is not None
                    and isinstance(parameter, Parameter)
                    and parameter.param_in == "header"
                    and parameter.name in headers
                ):
                    parameter.schema = headers[parameter.name]
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

#: The media types of an answer in CSV or JSON Lines (``format``).
TABLE_MEDIA_TYPES: Mapping[str, Schema] = {"text/csv": _TEXT, "application/x-ndjson": _TEXT}
#: An operation that answers CSV or JSON Lines.
TableOperation = operation_class(answers=TABLE_MEDIA_TYPES)
