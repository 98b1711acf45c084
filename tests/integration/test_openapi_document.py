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
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator
from jwt.algorithms import ECAlgorithm
from litestar.handlers import HTTPRouteHandler
from openapi_spec_validator import validate

import gateway
from gateway import errors
from gateway.core.answers import ANSWER_CLAIMS
from gateway.core.keyring import jwk_thumbprint
from gateway.core.protocol import TokenType
from gateway.demo.population import people
from gateway.exchange import Exchange
from gateway.http.openapi import PROBLEM_JSON, SIGNED, Problem
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.integration.test_audit_officers import history, identity_lookup
from tests.integration.test_licences import MARKET_USCC, Issuer, register_seal
from tests.integration.test_licences import PURPOSE as LICENCE_PURPOSE
from tests.integration.test_licences import _call as licence_call
from tests.integration.test_lookups import QUERY
from tests.support import ROOT

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


# --- answers and receipts -----------------------------------------------------------------------


def _answer_schemas(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``x-jws-claims`` of every signed answer the document declares, by its ``typ``."""
    found: dict[str, dict[str, Any]] = {}
    for _method, _path, operation in _operations(document):
        for response in operation["responses"].values():
            schema = response.get("content", {}).get("application/jwt", {}).get("schema", {})
            if "x-jws-typ" in schema:
                found[schema["x-jws-typ"]] = schema["x-jws-claims"]
    return found


def _signed_answers() -> set[str]:
    """The answer ``typ`` of every signed exchange the gateway defines."""
    typs = set()
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        skipped = ("gateway.console", "gateway.demo", "gateway.storage", "gateway.app.__main__")
        if module.name.startswith(skipped):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if isinstance(value, Exchange) and value.answer is not None:
                typs.add(str(value.answer))
    # The batch's spec is built per service (its query limit comes from the settings).
    return typs | {TokenType.BATCH_RESULT}


def _own_part(schema: dict[str, Any]) -> dict[str, Any]:
    """The answer's own claims in its claims schema (besides the common ones)."""
    common, own = schema["allOf"]
    assert common["title"] == "AnswerClaims"
    name = own["$ref"].removeprefix("#/$defs/")
    part: dict[str, Any] = schema["$defs"][name]
    return part


def test_every_answer_the_gateway_signs_is_documented_with_its_own_claims(
    document: dict[str, Any],
) -> None:
    documented = _answer_schemas(document)
    # A new exchange whose answer has no structure in gateway.core.answers fails here (and
    # the document is not built at all: answer_claims_schema has nothing to generate from).
    assert set(documented) == _signed_answers() == {str(t) for t in ANSWER_CLAIMS}
    for typ, schema in documented.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:yiwang:jws-claims:{typ}"
        assert schema["unevaluatedProperties"] is False
        own = _own_part(schema)
        assert own["properties"], typ  # more than the common part
        assert set(own["required"]) == set(own["properties"]), typ  # each always there


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[dict[str, str]]:
    """One real answer of every ``typ``, by ``typ``: obtained through a gateway of the demo
    district of its own (it takes an upload and a licence), in process, with the SDK."""
    root = tmp_path_factory.mktemp("answers")
    tokens: dict[str, str] = {}
    with in_process_gateway(root / "data", keys_dir) as gw:
        with gw.client("service-centre") as c:
            tokens[TokenType.LOOKUP_RESULT] = c.lookup(fields=["name"], **QUERY).token
            good = {"resource": QUERY["resource"], "subject": QUERY["subject"]}
            queries = [  # a released record, a refusal, an invalid subject
                {**good, "fields": ["name"]},
                {**good, "fields": ["registered_capital"]},
                {**good, "subject": ("uscc", "91"), "fields": ["name"]},
            ]
            batch = c.lookup_batch(
                queries=queries, item=QUERY["item"], case="ANS-1", reason="r", operator="o"
            )
            assert [r["status"] for r in batch.claims["results"]] == [200, 403, 400]
            tokens[TokenType.BATCH_RESULT] = batch.token
            tokens[TokenType.MANIFEST_RESULT] = c.manifest(
                applicant=QUERY["subject"],
                item=QUERY["item"],
                case="ANS-1",
                reason="r",
                operator="o",
            ).token
            tokens[TokenType.CASE_CLOSED] = c.close_case(
                case="ANS-1", reason="办结", operator="o"
            ).token
            tokens[TokenType.REFUSALS_RESULT] = c.refusals(operator="o").token
        with gw.client("market") as market:
            tokens[TokenType.INVALIDATED] = market.invalidate(
                resource=QUERY["resource"], reason="更正", operator="m"
            ).token
        sample = root / "employment.csv"
        sample.write_text(
            (ROOT / "docs/examples/employment-registration.csv").read_text(encoding="utf-8")
            + "123,无效,就业,,2024-01-01\n",
            encoding="utf-8",
        )
        with gw.client("hrss") as hrss:
            receipt = hrss.upload(resource="employment-registration", path=sample, operator="h")
        assert receipt.claims["rejections"]["sample"], "the receipt quotes a rejection"
        tokens[TokenType.UPLOAD_RECEIPT] = receipt.token
        # E-licences: a seal, a reserved entry, a published licence, a status change, a check.
        registered, seal, key = register_seal(gw, "market")
        tokens[TokenType.SEAL_REGISTERED] = registered.text
        with gw.client("market") as market:
            issuer = Issuer(gw, market, MARKET_USCC, seal, key)
            content = issuer.content()
            reserved = issuer.reserve(content.licence_id)
            tokens[TokenType.LICENCE_RESERVED] = reserved.text
            tokens[TokenType.LICENCE_ISSUED] = issuer.publish(issuer.sealed(content)).text
            tokens[TokenType.LICENCE_STATUS_CHANGED] = issuer.status(
                content.licence_id, "suspend"
            ).text
        with gw.client("service-centre") as c:
            tokens[TokenType.VERIFICATION_RECEIPT] = licence_call(
                c,
                "/v1/verifications",
                {
                    "operator": "clerk-1",
                    "purpose": LICENCE_PURPOSE,
                    "licence_id": content.licence_id,
                },
                TokenType.VERIFICATION,
            ).text
        person = people()[5].id_number
        identity_lookup(gw, "market", person, "ANS-2")
        response, _token = history(gw, "service-centre", ("resident-id", person))
        tokens[TokenType.ACCESS_HISTORY_RESULT] = response.text
        # A department's next key, registered, then retired again (its own key stays).
        with gw.client("service-centre") as c:
            jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
            next_key = jwt.PyJWK({**jwk, "kid": jwk_thumbprint(jwk), "alg": "ES256"})
            registered_key = c.register_next_key(next_key, operator="o")
            tokens[TokenType.KEY_REGISTERED] = registered_key.token
            tokens[TokenType.KEY_RETIRED] = c.retire_key(
                str(registered_key.claims["kid"]), operator="o"
            ).token
        # Each is what the SDK accepts as an answer of its typ, for its department.
        for typ, token in tokens.items():
            department = (
                "hrss"
                if typ == TokenType.UPLOAD_RECEIPT
                else ("market" if typ in _MARKET_ANSWERS else "service-centre")
            )
            with gw.client(department) as client:
                client.verify_answer(token, typ=typ)
        # The lists and nullable parts the schemas describe are there to be checked.
        claims = {typ: _payload(token) for typ, token in tokens.items()}
        assert claims[TokenType.REFUSALS_RESULT]["refusals"]
        assert claims[TokenType.ACCESS_HISTORY_RESULT]["accesses"]
        assert {m["status"] for m in claims[TokenType.MANIFEST_RESULT]["materials"]} >= {
            "available",
            "bring",
        }
        assert claims[TokenType.VERIFICATION_RECEIPT]["licence"] is not None
        assert claims[TokenType.VERIFICATION_RECEIPT]["checks"]
        yield tokens


_MARKET_ANSWERS = {
    TokenType.INVALIDATED,
    TokenType.SEAL_REGISTERED,
    TokenType.LICENCE_RESERVED,
    TokenType.LICENCE_ISSUED,
    TokenType.LICENCE_STATUS_CHANGED,
}


def _wrong_type(value: Any) -> Any:
    """A value of a JSON type that ``value``'s member does not take."""
    if value is None:  # a member that may be null: an array is neither null nor its type
        return []
    return 12345 if isinstance(value, str) else "not-this-type"


@pytest.mark.parametrize("typ", sorted(str(t) for t in ANSWER_CLAIMS))
def test_a_real_answer_validates_against_its_claims_and_a_broken_one_does_not(
    document: dict[str, Any], answers: dict[str, str], typ: str
) -> None:
    schema = _answer_schemas(document)[typ]
    validator = Draft202012Validator(schema)
    claims = _payload(answers[typ])
    assert list(validator.iter_errors(claims)) == []
    own = _own_part(schema)
    for member in own["required"]:
        missing = {k: v for k, v in claims.items() if k != member}
        assert list(validator.iter_errors(missing)), f"{typ} without {member}"
        wrong = {**claims, member: _wrong_type(claims[member])}
        assert list(validator.iter_errors(wrong)), f"{typ} with {member} of another type"
    assert list(validator.iter_errors({**claims, "unexpected": 1})), f"{typ}: unknown member"
    assert list(validator.iter_errors({**claims, "audit": {}})), f"{typ}: no audit index"


def test_answers_are_signed_with_their_members_in_the_order_they_always_had(
    answers: dict[str, str],
) -> None:
    # Taking the claims through their structures changed no payload: the same members in
    # the same order (a lookup's audit index before its policy version, as it always was).
    common = ["iss", "aud", "iat", "exp", "jti", "request"]
    lookup = _payload(answers[TokenType.LOOKUP_RESULT])
    assert list(lookup) == [
        *common,
        *("purpose", "query", "data", "masked", "provenance", "grant", "audit"),
        "policy_version",
    ]
    assert list(lookup["provenance"]) == ["provider", "source", "as_of", "cache"]
    receipt = _payload(answers[TokenType.UPLOAD_RECEIPT])
    assert list(receipt) == [
        *common,
        *("resource", "version", "previous_version", "current", "format", "sha256", "bytes"),
        *("uploaded_at", "rows", "rejections", "audit"),
    ]
