"""The served OpenAPI document as the oracle: schemathesis sends what the document allows —
and, in its negative mode, what it does not — to every operation of a real embedded gateway,
with the auditor's and the administrator's bearer tokens where the operation needs them.

Every answer must have a documented status, media type and shape, schema-invalid input must
be refused, and nothing is ever a 5xx. A second property test signs requests for every signed
endpoint with time claims no gateway may accept (non-finite, fractional, out of range, beyond
the lifetime cap) and holds the gateway to never answering one of them with success.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance, response_schema_conformance

from gateway.demo.population import companies
from gateway.registry.keystore import department_private_jwk
from tests.support import GatewayProcess

pytestmark = pytest.mark.timeout(300)

#: Examples per operation: 25 in the suite (about half a minute for the whole document on this
#: machine); a quarter of the profile's examples under ``--hypothesis-profile=fuzz`` (1,250).
EXAMPLES = max(25, settings().max_examples // 4)


_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def compact_jws_answers(ctx: Any, response: Any, case: Any) -> bool | None:
    """A check of our own: an ``application/jwt`` answer is one compact JWS.

    (schemathesis counts ``application/jwt`` as a JSON media type and would parse it as
    JSON, so the response-schema check is left out for these operations and this one runs.)
    """
    if response.headers.get("content-type", [""])[0].startswith("application/jwt"):
        assert _COMPACT_JWS.match(response.content.decode("ascii")), response.content[:100]
        return True
    return None


@pytest.fixture(scope="module")
def api_schema(embedded_gateway: GatewayProcess) -> Any:
    for role in ("admin", "auditor"):
        path = embedded_gateway.keys_dir / "operators" / f"{role}.token"
        _TOKENS[role] = path.read_text().strip()
    return schemathesis.openapi.from_url(embedded_gateway.url + "/docs/openapi.json")


_ADMIN_PATHS = ("/v1/policy/explain", "/v1/departments/", "/v1/seals/{seal_id}/status")
_AUDITOR_PATHS = ("/v1/audit/entries", "/v1/audit/alerts", "/v1/audit/embargoes")
#: The operator tokens of the gateway under test (set by the schema fixture).
_TOKENS: dict[str, str] = {}


def _role(path: str) -> str | None:
    if path.startswith(_ADMIN_PATHS):
        return "admin"
    if path.startswith(_AUDITOR_PATHS):
        return "auditor"
    return None


@schemathesis.auth(refresh_interval=None, retry_on=[])
class OperatorToken:
    """The auditor's or the administrator's bearer token, by operation. Registered as an
    auth provider (not as extra headers), so that schemathesis knows the credentials are
    ours and its negative cases may leave them out."""

    def get(self, case: Any, ctx: Any) -> dict[str, str]:
        return _TOKENS

    def set(self, case: Any, data: dict[str, str], ctx: Any) -> None:
        role = _role(case.operation.path)
        if role is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data[role]}"}


def _answers_jwt(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any(
        "application/jwt" in (r.get("content") or {})
        for code, r in responses.items()
        if str(code).startswith("2")
    )


@pytest.mark.long
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_every_operation_answers_as_documented(
    api_schema: Any, embedded_gateway: GatewayProcess, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 30  # the whole document, not an empty one
    exercised: list[str] = []
    sent = 0

    for operation in operations:
        excluded: list[Any] = [positive_data_acceptance]
        if _answers_jwt(operation):
            excluded.append(response_schema_conformance)

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            nonlocal sent
            sent += 1
            # "Schema-valid data must be accepted" is left out: the gateway refuses on
            # purpose what no schema can say (a wrong check character, a date-time without
            # its offset, a grant that does not exist). Every other check runs, negative data
            # rejection included.
            case.call_and_validate(
                excluded_checks=excluded,
                additional_checks=[compact_jws_answers],
                timeout=30,
            )

        try:
            run()
        except Unsatisfiable:
            # Nothing invalid can be written for it (no parameters, no body): nothing to send.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        exercised.append(operation.label)
    assert len(exercised) >= (30 if mode is GenerationMode.POSITIVE else 15), exercised
    assert sent >= len(exercised)
    print(f"schemathesis {mode}: {sent} requests to {len(exercised)} operations")


# --- no success for a time claim no gateway may accept ----------------------------------------

BAD_TIMES = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, 2**64, -1, 0]),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.integers(min_value=10**11, max_value=10**30),
)


class _Signer:
    def __init__(self, gateway: GatewayProcess, department: str) -> None:
        self.key = department_private_jwk(gateway.keys_dir, department)
        self.department = department

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        return self.key.sign(
            json.dumps(claims).encode(),
            headers={"typ": typ},
        )


def _body_claims(kind: str) -> dict[str, Any]:
    purpose = {"item": "000201002000", "case": "FUZZ-1", "reason": "模糊测试"}
    subject = {"type": "uscc", "id": companies()[0].uscc}
    query: dict[str, Any] = {
        "resource": "enterprise-registration",
        "subject": subject,
        "fields": ["name"],
    }
    bodies: dict[str, dict[str, Any]] = {
        "lookup": {"purpose": purpose, "operator": "o", "query": query},
        "batch": {"purpose": purpose, "operator": "o", "queries": [query]},
        "manifest": {"purpose": purpose, "operator": "o", "applicant": subject},
        "verification": {"purpose": purpose, "operator": "o", "licence_id": "x"},
        "case": {"case": "FUZZ-1", "operator": "o", "reason": "办结"},
        "leaf": {"operator": "o", "index": 1},
    }
    return bodies[kind]


_ENDPOINTS = {
    "lookup": ("POST", "/v1/lookups", "yiwang-lookup+jwt"),
    "batch": ("POST", "/v1/lookups:batch", "yiwang-lookup-batch+jwt"),
    "manifest": ("POST", "/v1/manifests", "yiwang-manifest+jwt"),
    "verification": ("POST", "/v1/verifications", "yiwang-verification+jwt"),
    "case": ("POST", "/v1/cases:close", "yiwang-case-close+jwt"),
    "leaf": ("GET", "/v1/audit/entries/1/leaf", "yiwang-audit-leaf+jwt"),
}


@pytest.fixture(scope="module")
def signer(embedded_gateway: GatewayProcess) -> _Signer:
    return _Signer(embedded_gateway, "service-centre")


@pytest.mark.parametrize("kind", sorted(_ENDPOINTS))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    bad=BAD_TIMES,
    which=st.sampled_from(["exp", "iat", "nbf", "exp-far"]),
    far=st.integers(min_value=301, max_value=10**8),
)
def test_no_success_for_a_time_no_gateway_may_accept(
    kind: str,
    bad: float,
    which: str,
    far: int,
    signer: _Signer,
    embedded_gateway: GatewayProcess,
) -> None:
    method, path, typ = _ENDPOINTS[kind]
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": signer.department,
        "aud": "yiwang-gateway",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **_body_claims(kind),
    }
    if which == "exp-far":  # a whole, finite, in-window time — but beyond the lifetime cap
        claims["exp"] = now + far
    else:
        claims[which] = bad
    token = signer.sign(claims, typ)
    if method == "POST":
        response = embedded_gateway.http.post(
            path, content=token, headers={"Content-Type": "application/jwt"}, timeout=30
        )
    else:
        response = embedded_gateway.http.get(path, headers={"Request-Token": token}, timeout=30)
    assert response.status_code == 401, (claims, response.text)
    problem = json.loads(response.content)
    assert problem["type"] == "urn:yiwang:problem:token-rejected"
    assert isinstance(problem["audit_index"], int)
