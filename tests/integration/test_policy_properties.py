"""Properties of policy decisions, drawn by hypothesis from the demo district and checked
against a real (embedded) gateway over HTTP:

a. no answer holds a field outside its grant, and its data keys are the requested fields;
b. a refusal's body does not depend on whether the subject has a record;
c. masks are applied wherever a grant sets them, inside and outside the grant's office hours.

Expectations come from the independent reading of ``policies/*.toml`` in
:mod:`tests.integration.test_policy_matrix`, never from ``gateway.core.policy``. The module
starts its own gateway (high rate limit, fresh daily quotas) whose clock the mask property
can move to chosen district instants; the other properties run on the real clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from gateway.core.identifiers import resident_id_check_character, uscc_check_character
from gateway.core.protocol import TokenType
from gateway.demo.population import DIVISIONS, Person, companies, people
from gateway.sdk import Forbidden, GatewayClient, GatewayProblem, NotFound, SignedAnswer
from tests.integration.test_policy_matrix import (
    DISTRICT_TZ,
    HIGH_RATE_LIMIT,
    Grant,
    Resource,
    ShiftedClock,
    district_time,
    expected_decision,
    read_district,
    source_row,
    upload_samples,
)
from tests.support import GatewayProcess, running_gateway, signed_claims

DISTRICT = read_district()
PURPOSE = {"case": "PP-2026-0001", "reason": "policy properties", "operator": "prop-1"}
POOL_SIZE = 6  # subjects per resource: well under every grant's daily distinct-subject quota
PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- the module's gateway ------------------------------------------------------------------


@dataclass
class Setup:
    gw: GatewayProcess
    clock: ShiftedClock
    clients: dict[str, GatewayClient]
    #: per resource, demo subjects the provider holds a record for (the first POOL_SIZE)
    present: Mapping[str, Sequence[str]]

    def client(self, department: str) -> GatewayClient:
        if department not in self.clients:
            self.clients[department] = self.gw.client(department)
        return self.clients[department]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Setup]:
    clock = ShiftedClock(tmp_path_factory.mktemp("properties-clock"))
    data_dir = tmp_path_factory.mktemp("properties-embedded")
    env = {**HIGH_RATE_LIMIT, **clock.environment()}
    with running_gateway(data_dir, keys_dir, server=False, env=env) as gw:
        upload_samples(gw, DISTRICT)
        present: dict[str, list[str]] = {}
        for res in DISTRICT.resources.values():
            ids = (
                [c.uscc for c in companies()]
                if res.subject == "uscc"
                else [p.id_number for p in people()]
            )
            present[res.id] = [s for s in ids if source_row(data_dir, res, s) is not None][
                :POOL_SIZE
            ]
            assert present[res.id], res.id
        s = Setup(gw, clock, {}, present)
        try:
            yield s
        finally:
            for c in s.clients.values():
                c.close()


# --- strategies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    consumer: str
    resource: Resource
    item: str
    fields: tuple[str, ...]  # as sent: may repeat a field

    def query(self, subject: str) -> dict[str, Any]:
        return {
            "resource": self.resource.id,
            "subject": (self.resource.subject, subject),
            "fields": list(self.fields),
            "item": self.item,
            **PURPOSE,
        }


@st.composite
def any_request(draw: st.DrawFn) -> Request:
    """Any consumer, resource and item; fields drawn from the resource (repeats allowed)."""
    resource = DISTRICT.resources[draw(st.sampled_from(sorted(DISTRICT.resources)))]
    fields = draw(
        st.lists(st.sampled_from(resource.fields), min_size=1, max_size=len(resource.fields) + 1)
    )
    return Request(
        draw(st.sampled_from(DISTRICT.consumers)),
        resource,
        draw(st.sampled_from(DISTRICT.items)),
        tuple(fields),
    )


@st.composite
def near_a_grant(draw: st.DrawFn) -> Request:
    """A request built from a grant (mostly allowed): its consumer, resource and one of its
    items, some of its fields and sometimes one field it does not name."""
    grant = draw(st.sampled_from(DISTRICT.grants))
    resource = DISTRICT.resources[grant.resource]
    fields = draw(st.lists(st.sampled_from(sorted(grant.fields)), min_size=1, unique=True))
    outside = [f for f in resource.fields if f not in grant.fields]
    add_one: bool = draw(st.booleans())
    if outside and add_one:
        fields.append(draw(st.sampled_from(outside)))
    item = draw(st.sampled_from(sorted(grant.items)))
    return Request(grant.consumer, resource, item, tuple(draw(st.permutations(fields))))


requests = st.one_of(any_request(), near_a_grant())

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, S, V, Z
_KNOWN = {c.uscc for c in companies()} | {p.id_number for p in people()}


@st.composite
def absent_subject(draw: st.DrawFn, subject_type: str) -> str:
    """A well-formed identifier (valid check character) that is not in the demo data."""
    if subject_type == "uscc":
        org = draw(st.text(alphabet=_USCC_CHARS, min_size=9, max_size=9))
        body = f"91{draw(st.sampled_from(DIVISIONS))}{org}"
        value = body + uscc_check_character(body)
    else:
        born = draw(st.dates(dt.date(1940, 1, 1), dt.date(2008, 12, 31)))
        seq = draw(st.integers(1, 999))
        body = f"{draw(st.sampled_from(DIVISIONS))}{born:%Y%m%d}{seq:03d}"
        value = body + resident_id_check_character(body)
    if value in _KNOWN:
        draw(st.nothing())
    return value


# --- helpers --------------------------------------------------------------------------------


def lookup(setup: Setup, request: Request, subject: str) -> SignedAnswer | GatewayProblem:
    try:
        return setup.client(request.consumer).lookup(**request.query(subject))
    except GatewayProblem as problem:
        return problem


def without_audit(problem: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in ("audit_index", "audit", "index")}


# --- a. nothing outside the grant -------------------------------------------------------------


@PROPERTY_SETTINGS
@given(request=requests, pick=st.integers(0, POOL_SIZE - 1))
def test_no_answer_holds_a_field_outside_its_grant(
    setup: Setup, request: Request, pick: int
) -> None:
    present = setup.present[request.resource.id]
    subject = present[pick % len(present)]
    before = district_time(setup.clock.now())
    outcome = lookup(setup, request, subject)
    after = district_time(setup.clock.now())
    expected = {
        expected_decision(
            DISTRICT,
            consumer=request.consumer,
            resource=request.resource.id,
            fields=request.fields,
            item=request.item,
            local=t,
        )
        for t in (before, after)
    }
    event("released" if isinstance(outcome, SignedAnswer) else type(outcome).__name__)
    if isinstance(outcome, SignedAnswer):
        claims = outcome.claims
        grant = DISTRICT.grant(claims["grant"])
        assert any(e.allowed and e.code == grant.id for e in expected), (expected, grant.id)
        assert set(outcome.data) == set(request.fields)
        assert set(outcome.data) <= grant.fields
        assert claims["query"]["fields"] == list(dict.fromkeys(request.fields))
        assert claims["query"]["resource"] == request.resource.id
    else:
        assert isinstance(outcome, Forbidden), outcome.problem
        assert "data" not in outcome.problem
        assert any(not e.allowed and e.code == outcome.reason for e in expected), (
            expected,
            outcome.problem,
        )


# --- b. refusals do not reveal whether the record exists --------------------------------------


@PROPERTY_SETTINGS
@given(request=requests, pick=st.integers(0, POOL_SIZE - 1), data=st.data())
def test_a_refusal_does_not_depend_on_whether_the_record_exists(
    setup: Setup, request: Request, pick: int, data: st.DataObject
) -> None:
    present = setup.present[request.resource.id]
    subject = present[pick % len(present)]
    absent = data.draw(absent_subject(request.resource.subject), label="absent")
    with_record = lookup(setup, request, subject)
    without_record = lookup(setup, request, absent)
    refused = [isinstance(o, Forbidden) for o in (with_record, without_record)]
    event("refused" if refused[0] else "allowed")
    assert refused[0] == refused[1], (with_record, without_record)
    if isinstance(with_record, Forbidden) and isinstance(without_record, Forbidden):
        assert without_audit(with_record.problem) == without_audit(without_record.problem)
        assert with_record.audit_index != without_record.audit_index
    else:
        assert isinstance(with_record, SignedAnswer), with_record
        assert isinstance(without_record, NotFound), without_record
    # The same inside one batch: the two results differ in index and audit entry only.
    answer = setup.client(request.consumer).lookup_batch(
        queries=[
            {
                "resource": request.resource.id,
                "subject": (request.resource.subject, s),
                "fields": request.fields,
            }
            for s in (subject, absent)
        ],
        item=request.item,
        case=PURPOSE["case"],
        reason=PURPOSE["reason"],
        operator=PURPOSE["operator"],
    )
    first, second = answer.claims["results"]
    if first["status"] == 403:
        assert without_audit(first) == without_audit(second)
    else:
        assert (first["status"], second["status"]) == (200, 404)


# --- c. masks ----------------------------------------------------------------------------------


def masked(spec: str, value: Any) -> Any:
    """The mask spec, re-implemented from its documentation: ``name`` keeps the first
    character, ``id-number`` the first 6 and last 4, ``keep:F:L`` the first F and last L,
    stars in between; ``full`` releases nothing (null). A text too short to show both ends
    shows what it can of the start (at least one star)."""
    if value is None or spec == "full":
        return None
    if spec == "name":
        first, last = 1, 0
    elif spec == "id-number":
        first, last = 6, 4
    else:
        m = re.fullmatch(r"keep:(\d+):(\d+)", spec)
        assert m, spec
        first, last = int(m[1]), int(m[2])
    text = str(value)
    if len(text) <= first + last:
        shown = min(first, max(len(text) - 1, 0))
        return text[:shown] + "*" * (len(text) - shown)
    return text[:first] + "*" * (len(text) - first - last) + text[len(text) - last :]


PERSONS: dict[str, Person] = {p.id_number: p for p in people()}


#: Fields of resident-keyed resources that are the person's own attributes in the population.
PERSON_ATTRIBUTES = ("name", "gender", "birth_date", "ethnicity", "address")


def source_value(setup: Setup, resource: Resource, subject: str, field: str) -> Any:
    """The unmasked value: the demo population's attribute where the field is one (as JSON
    renders it), else the provider's own row."""
    person = PERSONS.get(subject)
    if person is not None and field in PERSON_ATTRIBUTES:
        value = getattr(person, field)
        return value.isoformat() if isinstance(value, dt.date) else value
    row = source_row(setup.gw.data_dir, resource, subject)
    assert row is not None
    return row[field]


def lookup_at(
    setup: Setup, instant: dt.datetime, request: Request, subject: str
) -> tuple[int, dict[str, Any], float, float]:
    """One lookup with the gateway's clock at ``instant``; the answer's signature is checked
    but not its times (they are the shifted clock's). Returns status, claims or problem, and
    the gateway times just before and after."""
    client = setup.client(request.consumer)
    setup.clock.set(instant)
    try:
        now = setup.clock.now()
        token = client.lookup_token(**request.query(subject), now=now)
        response = setup.gw.http.post(
            "/v1/lookups",
            content=token.encode(),
            headers={"Content-Type": "application/jwt"},
            timeout=10,
        )
        after = setup.clock.now()
    finally:
        setup.clock.reset()  # the other properties run on the real clock
    if response.status_code != 200:
        return response.status_code, response.json(), now, after
    header = jwt.get_unverified_header(response.text)
    assert header["typ"] == TokenType.LOOKUP_RESULT
    claims: dict[str, Any] = signed_claims(
        response.text,
        key=client.jwks.get(str(header["kid"])),
        audience=client.department,
    )
    assert claims["request"]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    return 200, claims, now, after


MASKING_GRANTS = [g for g in DISTRICT.grants if g.masks]
WEEK_START = dt.datetime(2026, 6, 8, tzinfo=DISTRICT_TZ)  # a Monday


@st.composite
def masked_request(draw: st.DrawFn) -> tuple[Grant, Request]:
    grant = draw(st.sampled_from(MASKING_GRANTS))
    fields = draw(st.lists(st.sampled_from(sorted(grant.fields)), min_size=1, unique=True))
    item = draw(st.sampled_from(sorted(grant.items)))
    return grant, Request(grant.consumer, DISTRICT.resources[grant.resource], item, tuple(fields))


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=DISTRICT_TZ)


def test_the_district_has_masking_grants_with_and_without_hours() -> None:
    assert {g.id for g in MASKING_GRANTS} >= {"g-civil-identity", "g-centre-insurance"}
    assert any(g.office_hours for g in MASKING_GRANTS)
    assert any(not g.office_hours for g in MASKING_GRANTS)


def _centre_insurance(*fields: str) -> tuple[Grant, Request]:
    resource = DISTRICT.resources["social-insurance"]
    return DISTRICT.grant("g-centre-insurance"), Request(
        "service-centre", resource, "000111002000", fields
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=masked_request(),
    pick=st.integers(0, POOL_SIZE - 1),
    offset=st.builds(
        lambda d, h, m, s: dt.timedelta(days=d, hours=h, minutes=m, seconds=s),
        st.integers(0, 6),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    ),
)
# Wednesday 08:30:00 (opening, inclusive), 17:30:00 (closing, exclusive), Saturday 10:00.
@example(_centre_insurance("name"), 0, dt.timedelta(days=2, hours=8, minutes=30))
@example(_centre_insurance("name"), 0, dt.timedelta(days=2, hours=17, minutes=30))
@example(_centre_insurance("insured_status", "name"), 1, dt.timedelta(days=5, hours=10))
def test_masks_are_applied_wherever_a_grant_sets_them(
    setup: Setup, case: tuple[Grant, Request], pick: int, offset: dt.timedelta
) -> None:
    grant, request = case
    present = setup.present[request.resource.id]
    subject = present[pick % len(present)]
    instant = WEEK_START + offset
    status, body, before, after = lookup_at(setup, instant, request, subject)
    expected = {
        expected_decision(
            DISTRICT,
            consumer=request.consumer,
            resource=request.resource.id,
            fields=request.fields,
            item=request.item,
            local=district_time(t),
        )
        for t in (before, after)
    }
    assume(len(expected) == 1)  # not within the request's latency of an edge
    (decision,) = expected
    event(f"{grant.id}: {'allowed' if decision.allowed else decision.code}")
    if not decision.allowed:
        assert grant.office_hours is not None
        assert decision.code == "outside-hours"
        assert status == 403, body
        assert body["reason"] == "outside-hours"
        assert "data" not in body
        return
    assert status == 200, body
    assert body["grant"] == grant.id == decision.code
    data = body["data"]
    assert list(data) == list(request.fields)
    for name in request.fields:
        raw = source_value(setup, request.resource, subject, name)
        want = masked(grant.masks[name], raw) if name in grant.masks else raw
        assert data[name] == want, (name, raw)
        if name in grant.masks:
            assert data[name] != raw
    # ``masked`` names every released field that was masked, and only fields the grant masks.
    listed = set(body["masked"])
    assert listed <= set(grant.masks)
    assert listed & set(request.fields) == set(grant.masks) & set(request.fields)
