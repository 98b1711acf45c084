"""The HTTP source adapter against a real stand-in department API (``tests.department_api``):
first the adapter on its own (timeouts, retries, breaker, validation, credentials), then end
to end through a real gateway whose catalogue points resources at the stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import create_adapter
from adapters import http as http_adapter
from gateway.core.keyring import GatewaySigner
from gateway.core.policy import Field, FieldType, Resource, SharingClass
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.demo.population import companies
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout
from gateway.sdk import GatewayProblem, NotFound
from tests.department_api import (
    BARE,
    MALFORMED,
    NORMAL,
    OVERSIZED,
    OVERSIZED_STREAM,
    RESET,
    WRONG_TYPES,
    Behaviour,
    DepartmentApi,
    raw,
    status,
)
from tests.support import ROOT, GatewayProcess, es256_only, free_port, running_gateway

T = TypeVar("T")

COMPANIES = companies()[:12]
COMPANY = next(c for c in COMPANIES if c.status == "存续")
ABSENT = "91350100M000100Y43"  # a valid USCC the stand-in holds no record for
assert ABSENT not in {c.uscc for c in COMPANIES}


def _api_record(index: int) -> dict[str, Any]:
    c = COMPANIES[index]
    return {
        "name": c.name,
        "registered_capital": c.registered_capital,
        "established_on": c.established_on.isoformat(),
        "employees": 10 + index,
        "active": c.status == "存续",
        "addr": c.address,
        "internal_note": "not catalogued, ignored",
    }


RECORDS = {c.uscc: _api_record(i) for i, c in enumerate(COMPANIES)}

FIELDS = (
    Field(name="name", type=FieldType.STRING),
    Field(name="registered_capital", type=FieldType.NUMBER),
    Field(name="established_on", type=FieldType.DATE),
    Field(name="employees", type=FieldType.INTEGER),
    Field(name="active", type=FieldType.BOOLEAN),
    Field(name="address", type=FieldType.STRING, column="addr"),
)


def expected_values(uscc: str) -> dict[str, Any]:
    r = RECORDS[uscc]
    return {
        "name": r["name"],
        "registered_capital": float(r["registered_capital"]),
        "established_on": r["established_on"],
        "employees": r["employees"],
        "active": r["active"],
        "address": r["addr"],
    }


# --- the adapter on its own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[DepartmentApi]:
    with DepartmentApi(RECORDS) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_api(request: pytest.FixtureRequest) -> None:
    if "api" in request.fixturenames:
        request.getfixturevalue("api").reset()


@pytest.fixture(scope="module")
def signer() -> GatewaySigner:
    return GatewaySigner(
        private_key=ec.generate_private_key(ec.SECP256R1()), issuer="yiwang-gateway"
    )


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resource(source: dict[str, Any], rid: str = "enterprise-api") -> Resource:
    return Resource(
        id=rid,
        name="企业登记信息（接口）",
        provider="market",
        sharing=SharingClass.UNCONDITIONAL,
        subject="uscc",
        fields=FIELDS,
        source=source,
    )


def context(signer: GatewaySigner, environ: dict[str, str] | None = None) -> AdapterContext:
    return AdapterContext(
        data_dir=Path("."),
        database=None,
        gateway_id="yiwang-gateway",
        sign=lambda claims, typ: signer.sign(claims, typ=typ),
        environ=environ or {},
    )


def options(api: DepartmentApi, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "adapter": "http",
        "url": api.url_template(),
        "auth": {"type": "jwt"},
        "fields_path": "data",
        "backoff_ms": 10,  # keep retry tests fast; backoff itself is checked separately
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def run(
    signer: GatewaySigner,
    source: dict[str, Any],
    scenario: Callable[[http_adapter.HttpSourceAdapter], Awaitable[T]],
    *,
    environ: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Build the adapter inside a fresh event loop, run ``scenario``, close the adapter."""

    async def main() -> T:
        adapter = http_adapter.create(
            resource(source), context=context(signer, environ), clock=clock
        )
        try:
            return await scenario(adapter)
        finally:
            await adapter.close()

    return asyncio.run(main())


def fetch(
    signer: GatewaySigner, source: dict[str, Any], subject: str, **kw: Any
) -> SourceRecord | None:
    async def one(adapter: http_adapter.HttpSourceAdapter) -> SourceRecord | None:
        return await adapter.fetch(subject)

    return run(signer, source, one, **kw)


def fetch_error(
    signer: GatewaySigner, source: dict[str, Any], subject: str = COMPANY.uscc
) -> SourceFailed:
    with pytest.raises(SourceFailed) as err:
        fetch(signer, source, subject)
    return err.value


def test_good_record_is_read_and_typed(api: DepartmentApi, signer: GatewaySigner) -> None:
    record = fetch(signer, options(api), COMPANY.uscc)
    assert record is not None
    assert record.values == expected_values(COMPANY.uscc)  # extra keys dropped, column mapped
    assert record.source == f"http:127.0.0.1:{api.port}"  # no subject, no credentials
    as_of = dt.datetime.fromisoformat(record.as_of)
    assert abs((dt.datetime.now(dt.UTC) - as_of).total_seconds()) < 5
    (seen,) = api.requests
    assert seen.path == f"/v1/enterprises/{COMPANY.uscc}"
    assert seen.headers["accept"] == "application/json"


def test_the_built_in_lookup_finds_the_module(api: DepartmentApi, signer: GatewaySigner) -> None:
    async def build() -> str:
        adapter = create_adapter(resource(options(api)), context=context(signer))
        await adapter.close()
        return type(adapter).__name__

    assert asyncio.run(build()) == "HttpSourceAdapter"


def test_record_at_the_root_or_nested(api: DepartmentApi, signer: GatewaySigner) -> None:
    api.set_default(BARE)
    record = fetch(signer, options(api, fields_path=None), COMPANY.uscc)
    assert record is not None
    assert record.values == expected_values(COMPANY.uscc)
    api.set_default(raw({"result": {"record": RECORDS[COMPANY.uscc]}}))
    record = fetch(signer, options(api, fields_path="result.record"), COMPANY.uscc)
    assert record is not None
    assert record.values == expected_values(COMPANY.uscc)


def test_not_found_is_none_and_not_retried(api: DepartmentApi, signer: GatewaySigner) -> None:
    assert fetch(signer, options(api), ABSENT) is None
    assert api.count() == 1
    # Another status can mean "no record" where the API says so.
    api.set_default(status(410))
    assert fetch(signer, options(api, not_found_status=410), COMPANY.uscc) is None


def test_subject_is_percent_encoded(api: DepartmentApi, signer: GatewaySigner) -> None:
    assert fetch(signer, options(api), "../x y/z?a=1#f") is None
    (seen,) = api.requests
    # Dots too: httpx would otherwise remove a ".." segment and climb the path.
    assert seen.path == "/v1/enterprises/%2E%2E%2Fx%20y%2Fz%3Fa%3D1%23f"
    assert seen.subject == "../x y/z?a=1#f"


def test_missing_fields_are_null_unless_configured_to_fail(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    partial = {k: v for k, v in RECORDS[COMPANY.uscc].items() if k != "employees"}
    api.set_default(raw({"data": {**partial, "addr": None}}))
    record = fetch(signer, options(api), COMPANY.uscc)
    assert record is not None
    assert record.values["employees"] is None
    assert record.values["address"] is None
    error = fetch_error(signer, options(api, missing_fields="fail"))
    assert error.reason == "reply lacks field employees"


def test_slow_source_times_out_at_the_read_timeout(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    api.set_default(Behaviour("slow", delay_ms=3000))
    started = time.monotonic()
    with pytest.raises(SourceTimeout) as err:
        fetch(signer, options(api, read_timeout_ms=300, deadline_ms=2000), COMPANY.uscc)
    assert time.monotonic() - started < 0.3 + 0.5
    assert err.value.reason == "read or write timed out"
    assert api.count() == 1  # a slow source is not asked again


def test_slow_source_times_out_at_the_deadline(api: DepartmentApi, signer: GatewaySigner) -> None:
    api.set_default(Behaviour("slow", delay_ms=3000))
    started = time.monotonic()
    with pytest.raises(SourceTimeout) as err:
        fetch(signer, options(api, read_timeout_ms=2000, deadline_ms=400), COMPANY.uscc)
    assert time.monotonic() - started < 0.4 + 0.5
    assert err.value.reason == "no answer within 0.4 s"


def test_retries_never_pass_the_deadline(api: DepartmentApi, signer: GatewaySigner) -> None:
    # 503 forever, five retries allowed. The first backoff (500-1000 ms) fits in the 1,400 ms
    # deadline with room for both requests; the second (1000-2000 ms, starting after
    # ≥ 500 ms) would end past it, so the adapter gives up with what it saw instead of
    # sleeping past the deadline. (Margins of hundreds of ms: the suite shares two cores.)
    api.set_default(status(503))
    started = time.monotonic()
    error = fetch_error(signer, options(api, retries=5, backoff_ms=1000, deadline_ms=1400))
    assert time.monotonic() - started < 1.4 + 0.3
    assert not isinstance(error, SourceTimeout)
    assert error.reason == "status 503"
    assert api.count() == 2


@pytest.mark.parametrize("failure", [status(503), status(502), status(504), RESET])
def test_idempotent_failures_are_retried(
    api: DepartmentApi, signer: GatewaySigner, failure: Behaviour
) -> None:
    api.then(failure, failure, NORMAL)
    record = fetch(signer, options(api, retries=2), COMPANY.uscc)
    assert record is not None
    assert record.values == expected_values(COMPANY.uscc)
    assert [r.behaviour for r in api.requests] == [failure.name, failure.name, "normal"]


def test_connection_refused_is_retried_then_fails(signer: GatewaySigner) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/enterprises/{{subject}}"
    started = time.monotonic()
    error = fetch_error(signer, {"adapter": "http", "url": closed, "auth": {"type": "none"}})
    assert error.reason == "connection failed"
    # Two backoffs of 100-200 ms and 50-100 ms with the defaults: retried, yet quickly.
    assert 0.15 <= time.monotonic() - started < 1.5


def test_retries_exhausted_fail_with_the_last_status(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    api.set_default(status(503))
    error = fetch_error(signer, options(api, retries=2))
    assert error.reason == "status 503"
    assert api.count() == 3


@pytest.mark.parametrize("code", [400, 401, 403, 409, 500, 501])
def test_other_statuses_are_not_retried(
    api: DepartmentApi, signer: GatewaySigner, code: int
) -> None:
    api.set_default(status(code))
    error = fetch_error(signer, options(api, retries=2))
    assert not isinstance(error, SourceTimeout)
    assert str(code) in error.reason
    assert api.count() == 1


def test_redirects_are_not_followed(api: DepartmentApi, signer: GatewaySigner) -> None:
    api.set_default(raw(b"", code=302))
    assert fetch_error(signer, options(api)).reason == "unexpected status 302"
    assert api.count() == 1


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (MALFORMED, "reply is not JSON"),
        (raw(b"\xff\xfe not utf-8"), "reply is not JSON"),
        (raw(b""), "reply is not JSON"),
        (raw(b"<html>Bad gateway</html>"), "reply is not JSON"),
        (raw(b'{"data": {"registered_capital": NaN}}'), "reply is not JSON"),
        (raw(b'{"data": {"registered_capital": 1e400}}'), "reply is not JSON"),
        (raw(b'{"data": {"name": "\\ud800"}}'), "reply is not JSON"),
        (raw(b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "reply is not JSON"),
        (raw(b"[1, 2]"), "reply lacks data"),
        (raw({"items": []}), "reply lacks data"),
        (raw({"data": None}), "record is not a JSON object"),
        (raw({"data": ["a"]}), "record is not a JSON object"),
        (WRONG_TYPES, "field name is not a valid string"),
        (raw({"data": {"name": 5}}), "field name is not a valid string"),
        (raw({"data": {"employees": True}}), "field employees is not a valid integer"),
        (raw({"data": {"employees": 3.0}}), "field employees is not a valid integer"),
        (raw({"data": {"employees": "3"}}), "field employees is not a valid integer"),
        (raw({"data": {"employees": 2**70}}), "field employees is not a valid integer"),
        (
            raw({"data": {"registered_capital": "1.5"}}),
            "field registered_capital is not a valid number",
        ),
        (
            raw({"data": {"registered_capital": False}}),
            "field registered_capital is not a valid number",
        ),
        (raw({"data": {"active": 1}}), "field active is not a valid boolean"),
        (
            raw({"data": {"established_on": "2020/01/02"}}),
            "field established_on is not a valid date",
        ),
        (raw({"data": {"established_on": "20200102"}}), "field established_on is not a valid date"),
        (
            raw({"data": {"established_on": "2023-02-29"}}),
            "field established_on is not a valid date",
        ),
        (raw({"data": {"established_on": 20200102}}), "field established_on is not a valid date"),
        (OVERSIZED, "reply larger than 65536 bytes"),
        (OVERSIZED_STREAM, "reply larger than 65536 bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_replies_fail_and_are_not_retried(
    api: DepartmentApi, signer: GatewaySigner, behaviour: Behaviour, reason: str
) -> None:
    api.set_default(behaviour)
    started = time.monotonic()
    error = fetch_error(signer, options(api, retries=2))
    assert not isinstance(error, SourceTimeout)
    assert error.reason == reason
    assert api.count() == 1
    assert time.monotonic() - started < 3.0  # an endless body is cut off, not read


def test_the_body_cap_is_configurable(api: DepartmentApi, signer: GatewaySigner) -> None:
    error = fetch_error(signer, options(api, max_body_bytes=256))
    assert error.reason == "reply larger than 256 bytes"
    api.set_default(OVERSIZED)  # 256 KiB of padding
    assert fetch(signer, options(api, max_body_bytes=1024 * 1024), COMPANY.uscc) is not None


def test_breaker_opens_fails_fast_and_closes_after_the_cool_down(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    clock = FakeClock()
    api.set_default(status(500))
    source = options(api, circuit_failures=3, circuit_cooldown_ms=5000)

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> None:
        for _ in range(3):
            with pytest.raises(SourceFailed, match="status 500"):
                await adapter.fetch(COMPANY.uscc)
        assert breaker_state(adapter) == "open"
        for _ in range(5):  # open: nothing reaches the source
            with pytest.raises(SourceFailed) as err:
                await adapter.fetch(COMPANY.uscc)
            assert err.value.reason == "circuit open"
        assert api.count() == 3
        clock.now += 4.9
        with pytest.raises(SourceFailed, match="circuit open"):
            await adapter.fetch(COMPANY.uscc)
        # After the cool-down one trial goes through; it fails, so the circuit opens again.
        clock.now += 0.2
        assert breaker_state(adapter) == "half-open"
        with pytest.raises(SourceFailed, match="status 500"):
            await adapter.fetch(COMPANY.uscc)
        assert api.count() == 4
        with pytest.raises(SourceFailed, match="circuit open"):
            await adapter.fetch(COMPANY.uscc)
        # Next cool-down: the source is back, the trial succeeds, the circuit closes.
        api.set_default(NORMAL)
        clock.now += 5.1
        assert await adapter.fetch(COMPANY.uscc) is not None
        assert breaker_state(adapter) == "closed"
        assert await adapter.fetch(COMPANY.uscc) is not None
        assert api.count() == 6

    run(signer, source, scenario, clock=clock)


def test_half_open_admits_one_trial_at_a_time(api: DepartmentApi, signer: GatewaySigner) -> None:
    clock = FakeClock()
    source = options(api, circuit_failures=1, circuit_cooldown_ms=1000, retries=0)

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> list[str]:
        api.set_default(status(500))
        with pytest.raises(SourceFailed):
            await adapter.fetch(COMPANY.uscc)
        clock.now += 1.5
        api.set_default(Behaviour("slow", delay_ms=300))
        results = await asyncio.gather(
            *(adapter.fetch(COMPANY.uscc) for _ in range(4)), return_exceptions=True
        )
        return ["ok" if isinstance(r, SourceRecord) else str(r) for r in results]

    outcomes = run(signer, source, scenario, clock=clock)
    assert outcomes.count("ok") == 1
    assert outcomes.count("source of enterprise-api: circuit open") == 3
    assert api.count() == 2


def test_answers_that_are_not_5xx_keep_the_circuit_closed(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    # A source that answers 4xx or a malformed body is up; opening the circuit would refuse
    # good subjects because of bad ones.
    api.set_default(status(400))
    source = options(api, circuit_failures=2)

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> None:
        for behaviour in (status(400), MALFORMED, status(400), WRONG_TYPES):
            api.set_default(behaviour)
            with pytest.raises(SourceFailed):
                await adapter.fetch(COMPANY.uscc)
        assert breaker_state(adapter) == "closed"

    run(signer, source, scenario)
    assert api.count() == 4


def test_timeouts_count_towards_the_circuit(api: DepartmentApi, signer: GatewaySigner) -> None:
    api.set_default(Behaviour("slow", delay_ms=2000))
    source = options(api, circuit_failures=2, read_timeout_ms=100)

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> None:
        for _ in range(2):
            with pytest.raises(SourceTimeout):
                await adapter.fetch(COMPANY.uscc)
        with pytest.raises(SourceFailed, match="circuit open"):
            await adapter.fetch(COMPANY.uscc)

    run(signer, source, scenario)
    assert api.count() == 2


def breaker_state(adapter: http_adapter.HttpSourceAdapter) -> str:
    # A call, not the attribute: mypy would keep the narrowing of an earlier assert.
    return adapter.breaker.state


def _verify(token: str, signer: GatewaySigner, audience: str = "market") -> dict[str, Any]:
    key = jwt.PyJWK(signer.public_jwk).key
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=audience,
        issuer="yiwang-gateway",
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
    )
    return claims


def test_jwt_auth_is_short_lived_bound_and_fresh(api: DepartmentApi, signer: GatewaySigner) -> None:
    api.then(status(503), NORMAL)
    other = COMPANIES[1].uscc

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> None:
        assert await adapter.fetch(COMPANY.uscc) is not None
        assert await adapter.fetch(other) is not None

    run(signer, options(api), scenario)
    seen = api.requests
    assert len(seen) == 3  # one retry, then the second subject
    jtis = set()
    for request, subject in zip(seen, (COMPANY.uscc, COMPANY.uscc, other), strict=True):
        scheme, _, token = request.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        header = jwt.get_unverified_header(token)
        assert header["typ"] == "yiwang-source-request+jwt"
        assert header["alg"] == "ES256"
        assert header["kid"] == signer.kid
        claims = _verify(token, signer)
        assert claims["sub"] == subject
        assert claims["resource"] == "enterprise-api"
        assert 0 < claims["exp"] - claims["iat"] <= 60
        assert abs(claims["iat"] - time.time()) < 5
        jtis.add(claims["jti"])
    assert len(jtis) == 3  # every attempt, retries included, carries a fresh jti
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(seen[0].headers["authorization"].split()[1], signer, audience="tax")


def test_header_auth_sends_the_value_read_at_creation(
    api: DepartmentApi, signer: GatewaySigner
) -> None:
    environ = {"MARKET_API_KEY": "k-3f9a-secret"}
    source = options(api, auth={"type": "header", "name": "X-Api-Key", "env": "MARKET_API_KEY"})

    async def scenario(adapter: http_adapter.HttpSourceAdapter) -> str:
        environ["MARKET_API_KEY"] = "changed-later"  # read once: later changes do not matter
        record = await adapter.fetch(COMPANY.uscc)
        assert record is not None
        return f"{adapter!r} {vars(adapter).get('description')} {record.source}"

    described = run(signer, source, scenario, environ=environ)
    (seen,) = api.requests
    assert seen.headers["x-api-key"] == "k-3f9a-secret"
    assert "authorization" not in seen.headers
    assert "k-3f9a-secret" not in described


@pytest.mark.parametrize("environ", [{}, {"MARKET_API_KEY": ""}])
def test_missing_env_variable_is_a_configuration_error(
    signer: GatewaySigner, environ: dict[str, str]
) -> None:
    source = {
        "adapter": "http",
        "url": "http://127.0.0.1:9/x/{subject}",
        "auth": {"type": "header", "name": "X-Api-Key", "env": "MARKET_API_KEY"},
    }
    with pytest.raises(ConfigurationError) as err:
        http_adapter.create(resource(source), context=context(signer, environ))
    message = str(err.value)
    assert "'enterprise-api'" in message
    assert "MARKET_API_KEY" in message


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"auth": None}, "auth must be a table"),
        ({"auth": {"type": "basic"}}, "auth.type must be"),
        ({"auth": {"type": "jwt", "lifetime": 600}}, "does not take lifetime"),
        ({"auth": {"type": "header", "name": "Host", "env": "K"}}, "must not be Host"),
        ({"auth": {"type": "header", "name": "X Key", "env": "K"}}, "header name"),
        ({"url": "http://127.0.0.1:9/x"}, "{subject} exactly once"),
        ({"url": "http://{subject}.example/x"}, "not its host"),
        ({"url": "http://user:pw@127.0.0.1:9/{subject}"}, "must not carry credentials"),
        ({"url": "ftp://127.0.0.1/{subject}"}, "absolute http"),
        ({"retries": 9}, "retries must be an integer 0..5"),
        ({"deadline_ms": "3s"}, "deadline_ms must be an integer"),
        ({"read_timeout": 100}, "unknown options read_timeout"),
        ({"fields_path": "data..x"}, "fields_path must be"),
        ({"missing_fields": "skip"}, "missing_fields must be"),
        ({"not_found_status": 200}, "not_found_status must be"),
    ],
)
def test_bad_options_are_configuration_errors(
    api: DepartmentApi, signer: GatewaySigner, change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        http_adapter.create(resource(options(api, **change)), context=context(signer))
    assert complaint in str(err.value)
    assert str(err.value).startswith("resource 'enterprise-api': http source: ")


# --- end to end through a real gateway -------------------------------------------------------

E2E_FIELDS = """fields = [
  { name = "name", type = "string", sensitivity = "public" },
  { name = "registered_capital", type = "number", sensitivity = "public" },
  { name = "established_on", type = "date", sensitivity = "public" },
  { name = "employees", type = "integer", sensitivity = "internal" },
  { name = "active", type = "boolean", sensitivity = "public" },
  { name = "address", type = "string", column = "addr", sensitivity = "public" },
]
"""
E2E_RESOURCES = {
    # resource id: (path prefix on the stand-in, extra source options)
    "enterprise-api": ("", 'auth = { type = "jwt" }'),
    "enterprise-api-keyed": (
        "",
        'auth = { type = "header", name = "X-Api-Key", env = "E2E_MARKET_API_KEY" }',
    ),
    "enterprise-api-slow": (
        "slow-5000",
        'auth = { type = "jwt" }, read_timeout_ms = 300, deadline_ms = 600',
    ),
    "enterprise-api-failing": ("status-503", 'auth = { type = "jwt" }, backoff_ms = 10'),
    "enterprise-api-malformed": ("wrong-types", 'auth = { type = "jwt" }'),
}
E2E_ITEM = "000201002000"
E2E_KEY = "e2e-key-7c1d"


def _e2e_policies(target: Path, api: DepartmentApi, down_url: str) -> Path:
    shutil.copytree(ROOT / "policies", target)
    urls = {rid: api.url_template(prefix) for rid, (prefix, _) in E2E_RESOURCES.items()}
    sources = {rid: extra for rid, (_, extra) in E2E_RESOURCES.items()}
    urls["enterprise-api-down"] = down_url
    sources["enterprise-api-down"] = 'auth = { type = "jwt" }, retries = 1, backoff_ms = 10'
    catalogue = target / "catalogue.toml"
    grants = target / "grants.toml"
    resources, grant_text = [], []
    for rid, url in urls.items():
        resources.append(
            f'\n[[resource]]\nid = "{rid}"\nname = "企业登记信息（{rid}）"\n'
            'provider = "market"\nsharing = "unconditional"\nsubject = "uscc"\n'
            f'source = {{ adapter = "http", url = "{url}", fields_path = "data", '
            f"{sources[rid]} }}\n{E2E_FIELDS}"
        )
        grant_text.append(
            f'\n[[grant]]\nid = "g-centre-{rid}"\nconsumer = "service-centre"\n'
            f'resource = "{rid}"\nfields = ["name", "registered_capital", "established_on", '
            f'"employees", "active", "address"]\nitems = ["{E2E_ITEM}"]\n'
        )
    # Appending (TOML arrays of tables may continue after other tables) keeps the demo text
    # as it is, so the demo's own resources and grants still load unchanged.
    catalogue.write_text(catalogue.read_text() + "".join(resources))
    grants.write_text(grants.read_text() + "".join(grant_text))
    return target


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path, api: DepartmentApi
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("http-adapter")
    down = f"http://127.0.0.1:{free_port()}/v1/enterprises/{{subject}}"
    policies = _e2e_policies(root / "policies", api, down)
    env = {"GATEWAY_POLICIES_DIR": str(policies), "E2E_MARKET_API_KEY": E2E_KEY}
    with running_gateway(root / "data", keys_dir, server=False, env=env) as gw:
        yield gw


def _lookup(
    gw: GatewayProcess, resource_id: str, fields: list[str], subject: str = COMPANY.uscc
) -> Any:
    with gw.client("service-centre") as c:
        return c.lookup(
            resource=resource_id,
            subject=("uscc", subject),
            fields=fields,
            item=E2E_ITEM,
            case="BJ-2026-HTTP-1",
            reason="企业变更登记核验营业执照",
            operator="clerk-http",
        )


def _released(gw: GatewayProcess) -> int:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM audit_entries WHERE event = 'lookup:record:released'"
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def test_e2e_lookup_releases_the_api_record(e2e: GatewayProcess, api: DepartmentApi) -> None:
    answer = _lookup(e2e, "enterprise-api", ["name", "established_on", "employees", "address"])
    expected = expected_values(COMPANY.uscc)
    assert answer.data == {
        k: expected[k] for k in ("name", "established_on", "employees", "address")
    }
    assert answer.claims["provenance"]["source"] == f"http:127.0.0.1:{api.port}"
    assert answer.claims["provenance"]["provider"] == "market"
    assert e2e.audit_entry(answer.audit_index)["event"] == "lookup:record:released"
    # The stand-in got a JWT that verifies with the gateway's published JWKS.
    (seen,) = [r for r in api.requests if r.subject == COMPANY.uscc]
    token = seen.headers["authorization"].removeprefix("Bearer ")
    jwks = jwt.PyJWKSet.from_dict(es256_only(httpx.get(e2e.url + "/.well-known/jwks.json").json()))
    key = jwks[jwt.get_unverified_header(token)["kid"]].key
    claims = jwt.decode(
        token, key, algorithms=["ES256"], audience="market", issuer="yiwang-gateway"
    )
    assert claims["sub"] == COMPANY.uscc
    assert claims["exp"] - claims["iat"] <= 60


def test_e2e_header_auth_and_not_found(e2e: GatewayProcess, api: DepartmentApi) -> None:
    answer = _lookup(e2e, "enterprise-api-keyed", ["name", "active"])
    assert answer.data == {"name": COMPANY.name, "active": True}
    (seen,) = api.requests
    assert seen.headers["x-api-key"] == E2E_KEY
    assert "authorization" not in seen.headers
    with pytest.raises(NotFound) as err:
        _lookup(e2e, "enterprise-api-keyed", ["name"], subject=ABSENT)
    entry = e2e.audit_entry(err.value.problem["audit_index"])
    assert entry["event"] == "lookup:record:not-found"


@pytest.mark.parametrize(
    ("resource_id", "code", "reason_code", "prefix"),
    [
        ("enterprise-api-slow", 504, "source-timeout", "/slow-5000/"),
        ("enterprise-api-failing", 502, "source-failed", "/status-503/"),
        ("enterprise-api-malformed", 502, "source-failed", "/wrong-types/"),
        ("enterprise-api-down", 502, "source-failed", None),
    ],
)
def test_e2e_source_failures_are_refused_audited_and_release_nothing(
    e2e: GatewayProcess,
    api: DepartmentApi,
    resource_id: str,
    code: int,
    reason_code: str,
    prefix: str | None,
) -> None:
    released = _released(e2e)
    started = time.monotonic()
    with pytest.raises(GatewayProblem) as err:
        _lookup(e2e, resource_id, ["name"])
    elapsed = time.monotonic() - started
    problem = err.value.problem
    assert problem["status"] == code
    assert "data" not in problem
    assert COMPANY.name not in str(problem)
    entry = e2e.audit_entry(problem["audit_index"])
    assert entry["decision"] == "refused"
    assert entry["event"] == "lookup:record:refused"
    assert entry["reason_code"] == reason_code
    assert _released(e2e) == released
    assert elapsed < 3.0  # the adapter's deadline, not the gateway's 10 s backstop
    if prefix == "/status-503/":
        assert api.count(prefix) == 3  # the first attempt and two retries
    elif prefix is not None:
        assert api.count(prefix) == 1
