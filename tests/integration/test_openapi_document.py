"""The OpenAPI document the gateway serves (``/docs/openapi.json``) is the integrators'
contract: valid OpenAPI 3.1 (openapi-spec-validator); exactly the routes the app serves; every
operation named, summarised and described; every signed request and answer typed as a JWS
whose ``x-jws-claims`` accept what the SDK really sends and receives and refuse a request
missing a claim; every status the signed pipeline and the error table can produce declared
with the RFC 9457 problem; bad query parameters named in the problem."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from litestar.handlers import HTTPRouteHandler
from openapi_spec_validator import validate

import gateway
from gateway import errors
from gateway.core.protocol import TokenType
from gateway.exchange import Exchange
from gateway.http.openapi import PROBLEM_JSON, SIGNED, Problem
from tests.inprocess import InProcessGateway
from tests.integration.test_lookups import QUERY

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document(embedded_app: InProcessGateway) -> dict[str, Any]:
    response = embedded_app.http.get("/docs/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _jws_schemas(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The JWS schemas of what the sender signs: the body's or a token header's."""
    found = []
    body = operation.get("requestBody", {}).get("content", {})
    if "application/jwt" in body:
        found.append(body["application/jwt"]["schema"])
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and "x-jws-typ" in parameter["schema"]:
            found.append(parameter["schema"])
    return found


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert "x-jws-claims" in document["info"]["description"]  # the convention is stated


def test_every_served_route_is_documented_and_nothing_else(
    embedded_app: InProcessGateway, document: dict[str, Any]
) -> None:
    served = set()
    for route in embedded_app.http.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.resolve_include_in_schema():
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                served |= {(m.lower(), path) for m in handler.http_methods if m != "OPTIONS"}
    documented = {(method, path) for method, path, _ in _operations(document)}
    assert documented == served
    assert ("post", "/v1/refusals") in documented


def test_every_operation_is_named_summarised_and_described(document: dict[str, Any]) -> None:
    ids = []
    for method, path, operation in _operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        assert re.fullmatch(r"[a-z_]+", operation["operationId"]), where
        ids.append(operation["operationId"])
        if path.startswith("/v1/"):
            assert len(operation.get("description", "")) > 20, f"{where} has no description"
    assert len(ids) == len(set(ids))


def _exchanges() -> set[str]:
    """The request ``typ`` of every signed exchange the gateway defines."""
    typs = set()
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        # Not the console's pages, the demo, the migrations (alembic's env runs on import)
        # or the command's entry point.
        skipped = ("gateway.console", "gateway.demo", "gateway.storage", "gateway.app.__main__")
        if module.name.startswith(skipped):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, Exchange):
                typs.add(str(value.request))
    # The batch's spec is built per service (its query limit comes from the settings).
    return typs | {TokenType.BATCH}


def test_every_signed_exchange_is_documented_once_with_its_claims(
    document: dict[str, Any],
) -> None:
    documented: list[str] = []
    for _method, _path, operation in _operations(document):
        for schema in _jws_schemas(operation):
            assert "x-jws-claims" in schema, schema
            Draft202012Validator.check_schema(schema["x-jws-claims"])
            documented.append(schema["x-jws-typ"])
    assert sorted(documented) == sorted(_exchanges())


def _claims_validator(document: dict[str, Any], path: str, answer: bool) -> Draft202012Validator:
    operation = document["paths"][path]["post"]
    if answer:
        schema = operation["responses"]["200"]["content"]["application/jwt"]["schema"]
    else:
        schema = operation["requestBody"]["content"]["application/jwt"]["schema"]
    return Draft202012Validator(schema["x-jws-claims"])


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def test_claims_schemas_take_what_the_sdk_sends_and_receives(
    embedded_app: InProcessGateway, document: dict[str, Any]
) -> None:
    request = _claims_validator(document, "/v1/lookups", answer=False)
    with embedded_app.client("service-centre") as c:
        token = c.lookup_token(fields=["name"], **QUERY)
        answer = c.send_lookup(token)
        refusals = c.refusals(operator="dev-ops-1")
    claims = _payload(token)
    assert list(request.iter_errors(claims)) == []
    _claims_validator(document, "/v1/lookups", answer=True).validate(_payload(answer.token))
    _claims_validator(document, "/v1/refusals", answer=True).validate(_payload(refusals.token))
    # And they are not a check that cannot fail: a claim missing, a field list empty, a float
    # time are each refused by the schema, as the gateway refuses them.
    for broken in (
        {k: v for k, v in claims.items() if k != "operator"},
        {**claims, "query": {**claims["query"], "fields": []}},
        {**claims, "iat": claims["iat"] + 0.5},
    ):
        assert list(request.iter_errors(broken)), broken


def _statuses(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if code.isdigit()}


def test_signed_operations_declare_every_status_the_pipeline_can_answer(
    document: dict[str, Any],
) -> None:
    # verify (401) → parse (400) → check (403) → admit (409 replay, 429 rate) → work →
    # audit (503 when the log is down); a body read within a cap of a media type (413, 415).
    for method, path, operation in _operations(document):
        schemas = _jws_schemas(operation)
        if not schemas:
            continue
        expected = {400, 401, 403, 409, 429, 503}
        if "application/jwt" in operation.get("requestBody", {}).get("content", {}):
            expected |= set(SIGNED)
        missing = expected - _statuses(operation)
        assert not missing, f"{method.upper()} {path} does not declare {sorted(missing)}"


def test_every_problem_is_the_rfc_9457_schema_with_its_extension_members(
    document: dict[str, Any],
) -> None:
    problem = document["components"]["schemas"]["Problem"]
    members = set(problem["properties"])
    assert {"type", "title", "status", "detail"} <= members
    assert set(Problem.__struct_fields__) == members  # field, reason, audit_index, …
    # Every status of the error table means something in the document.
    table = {
        cls.status
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.Error)
    }
    declared: set[int] = set()
    for method, path, operation in _operations(document):
        for code, response in operation["responses"].items():
            if code.isdigit() and int(code) >= 400:
                declared.add(int(code))
                content = response["content"]
                assert list(content) == [PROBLEM_JSON], f"{method} {path} {code}"
                ref = content[PROBLEM_JSON]["schema"]["$ref"]
                assert ref == "#/components/schemas/Problem"
    assert table - {500} <= declared


def test_credentials_are_declared_as_security_schemes(
    embedded_app: InProcessGateway, document: dict[str, Any]
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["operatorToken"]["scheme"] == "bearer"
    assert schemes["requestToken"] == {**schemes["requestToken"], "in": "header"}
    assert schemes["requestToken"]["name"] == "Request-Token"
    assert schemes["uploadToken"]["name"] == "Upload-Token"
    # An operation behind an operator's guard says it takes the operator's token.
    for route in embedded_app.http.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not (isinstance(handler, HTTPRouteHandler) and handler.resolve_include_in_schema()):
                continue
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            for method in handler.http_methods - {"OPTIONS"}:
                operation = document["paths"][path][method.lower()]
                if handler.guards:
                    assert {"operatorToken": []} in operation["security"], path
                # A signed token in a header is the request's credential.
                headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
                if any("x-jws-typ" in p["schema"] for p in headers):
                    assert operation.get("security"), f"{path}: its token is a credential"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/audit/proofs/consistency", {"from": "abc", "to": 2}, "from"),
        ("/v1/audit/proofs/consistency", {"from": 1, "to": "1.5"}, "to"),
        ("/v1/audit/checkpoints", {"limit": 0}, "limit"),
        ("/v1/audit/checkpoints", {"limt": 5}, "limt"),
        ("/v1/status-lists/x", {"page": 1}, "page"),
    ],
)
def test_a_bad_query_parameter_is_named_in_the_problem(
    embedded_app: InProcessGateway, path: str, params: dict[str, Any], field: str
) -> None:
    response = embedded_app.http.get(path, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["field"] == field
