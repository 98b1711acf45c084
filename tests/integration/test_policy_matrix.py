"""Every request the demo district can make, decided by a real gateway over HTTP and by an
independent reading of ``policies/*.toml`` done here, and the two compared one by one.

The matrix is every consumer department × every resource × every service item × every
non-empty subset of the resource's fields (about 20 000 queries), decided in process by the
policy set the gateway loads; a seeded sample (every consumer and item present) is sent as
signed batches to an embedded gateway and to the server setup over HTTP. The oracle below
parses the TOML itself (it uses nothing of ``gateway.core.policy``) and re-implements the
documented rules:

- default deny; a not-shared resource is never allowed (``not-shared``); no grant naming the
  consumer and the resource gives ``no-grant``;
- a grant allows only if it names the service item (else ``purpose-not-granted``), every
  requested field (``field-not-granted``), is in force on the district date, bounds
  inclusive (``grant-expired``), carries an ``approval`` if the resource is conditional
  (``approval-missing``) and, if it has ``office_hours``, the district time t is on one of
  its days with start <= t < end (``outside-hours``);
- grants are tried in file order and the first that allows decides; when none does, the
  code is that of the grant that got furthest in that order of checks.

A second test runs the grants with time conditions at chosen district instants (office
hours edges, weekends, the first and last day of a validity period, the UTC/UTC+8 date
difference) against a gateway whose clock is shifted for the test.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import re
import sqlite3
import textwrap
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
import sqlalchemy as sa

from gateway.core.licences import LicenceContent, qr_payload
from gateway.core.policy import load_policy_set
from gateway.core.protocol import TokenType
from gateway.demo.population import companies, people
from gateway.errors import PolicyDenied
from gateway.sdk import GatewayClient
from tests.inprocess import Gateway, in_process_gateway
from tests.support import ROOT, GatewayProcess, running_gateway, signed_claims

POLICIES_DIR = ROOT / "policies"
DISTRICT_TZ = dt.timezone(dt.timedelta(hours=8))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_DAYS = frozenset(WEEKDAYS[:5])
BATCH_SIZE = 100  # the gateway's default cap on queries per batch
HIGH_RATE = 10_000_000
HIGH_RATE_LIMIT = {"GATEWAY_RATE_LIMIT": str(HIGH_RATE)}


# --- an independent reading of the policy files --------------------------------------------


@dataclass(frozen=True)
class OfficeHours:
    start: dt.time
    end: dt.time
    days: frozenset[str]

    def contains(self, local: dt.datetime) -> bool:
        return WEEKDAYS[local.weekday()] in self.days and self.start <= local.time() < self.end


@dataclass(frozen=True)
class Grant:
    id: str
    consumer: str
    resource: str
    fields: frozenset[str]
    items: frozenset[str]
    valid_from: dt.date | None
    valid_until: dt.date | None
    approved: bool
    office_hours: OfficeHours | None
    masks: Mapping[str, str]
    max_subjects_per_day: int | None

    @property
    def time_conditioned(self) -> bool:
        return bool(self.valid_from or self.valid_until or self.office_hours)


@dataclass(frozen=True)
class Resource:
    id: str
    sharing: str
    subject: str
    fields: tuple[str, ...]
    columns: Mapping[str, str]  # field name -> source column
    source: Mapping[str, Any]
    provider: str


@dataclass(frozen=True)
class District:
    consumers: tuple[str, ...]
    resources: Mapping[str, Resource]
    items: tuple[str, ...]
    grants: tuple[Grant, ...]  # in file order

    def grants_for(self, consumer: str, resource: str) -> list[Grant]:
        return [g for g in self.grants if g.consumer == consumer and g.resource == resource]

    def grant(self, grant_id: str) -> Grant:
        return next(g for g in self.grants if g.id == grant_id)


def read_district(directory: Path = POLICIES_DIR) -> District:
    """Parse the three policy files with tomllib, nothing else."""

    def load(name: str) -> dict[str, Any]:
        return tomllib.loads((directory / name).read_text(encoding="utf-8"))

    departments, catalogue, grants = (
        load(n) for n in ("departments.toml", "catalogue.toml", "grants.toml")
    )
    resources = {
        r["id"]: Resource(
            id=r["id"],
            sharing=r["sharing"],
            subject=r["subject"],
            fields=tuple(f["name"] for f in r["fields"]),
            columns={f["name"]: f.get("column") or f["name"] for f in r["fields"]},
            source=r["source"],
            provider=r["provider"],
        )
        for r in catalogue["resource"]
        # The access histories are read through GET /v1/audit/subjects/{type:id}/accesses by
        # keyed subject; a signed lookup of them finds no record (test_audit_officers.py).
        if r["source"].get("adapter") != "audit"
    }

    def hours(raw: Mapping[str, Any] | None) -> OfficeHours | None:
        if raw is None:
            return None
        return OfficeHours(raw["start"], raw["end"], frozenset(raw.get("days", DEFAULT_DAYS)))

    return District(
        consumers=tuple(d["id"] for d in departments["department"] if "consumer" in d["roles"]),
        resources=resources,
        items=tuple(i["code"] for i in catalogue["item"]),
        grants=tuple(
            Grant(
                id=g["id"],
                consumer=g["consumer"],
                resource=g["resource"],
                fields=frozenset(g["fields"]),
                items=frozenset(g["items"]),
                valid_from=g.get("valid_from"),
                valid_until=g.get("valid_until"),
                approved="approval" in g,
                office_hours=hours(g.get("office_hours")),
                masks=dict(g.get("masks", {})),
                max_subjects_per_day=g.get("max_subjects_per_day"),
            )
            for g in grants.get("grant", [])
            if g["resource"] in resources
        ),
    )


@dataclass(frozen=True)
class Expected:
    """``allowed`` with the grant that allows, or refused with the reason code."""

    allowed: bool
    code: str  # grant id when allowed, reason code when refused


def expected_decision(
    district: District,
    *,
    consumer: str,
    resource: str,
    fields: Sequence[str],
    item: str,
    local: dt.datetime,
) -> Expected:
    res = district.resources[resource]
    if res.sharing == "not-shared":
        return Expected(False, "not-shared")
    candidates = district.grants_for(consumer, resource)
    if not candidates:
        return Expected(False, "no-grant")
    best: tuple[int, str] = (0, "no-grant")
    today = local.date()
    for grant in candidates:
        checks = (
            ("purpose-not-granted", item in grant.items),
            ("field-not-granted", set(fields) <= grant.fields),
            (
                "grant-expired",
                (grant.valid_from is None or grant.valid_from <= today)
                and (grant.valid_until is None or today <= grant.valid_until),
            ),
            ("approval-missing", res.sharing != "conditional" or grant.approved),
            ("outside-hours", grant.office_hours is None or grant.office_hours.contains(local)),
        )
        failed = next((n for n, (_, ok) in enumerate(checks, 1) if not ok), None)
        if failed is None:
            return Expected(True, grant.id)
        if failed > best[0]:
            best = (failed, checks[failed - 1][0])
    return Expected(False, best[1])


def district_time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, DISTRICT_TZ)


def field_subsets(fields: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, in the catalogue's field order."""
    return [combo for n in range(1, len(fields) + 1) for combo in itertools.combinations(fields, n)]


# --- subjects with records in the providers' sources ---------------------------------------


def licence_row(data_dir: Path, resource: Resource, subject: str) -> dict[str, Any] | None:
    """The holder's licence of the resource's type in an embedded gateway's registry, when
    the holder has exactly one current licence (read with sqlite3)."""
    path = data_dir / "gateway.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT content, status, sealed FROM licences"
            " WHERE type_code = ? AND holder_id = ? AND superseded_by IS NULL",
            (resource.source["type_code"], subject),
        ).fetchall()
    if len(rows) != 1:
        return None
    content, status, sealed = rows[0]
    values = {**json.loads(content), "status": status, "sealed": sealed}
    values["qr"] = qr_payload(msgspec.json.decode(content, type=LicenceContent))
    return {f: values.get(f) for f in resource.fields}


def sample_upload(resource: Resource) -> Path:
    return ROOT / "docs" / "examples" / f"{resource.id}.csv"


def uploaded_row(resource: Resource, subject: str) -> dict[str, Any] | None:
    """The row for ``subject`` of the resource's sample upload (:func:`upload_samples` sends
    it), keyed by field name; rows with an invalid key are rejected by the gateway and are
    never a demo subject's."""
    key = str(resource.source.get("key", resource.subject))
    with sample_upload(resource).open(encoding="utf-8", newline="") as rows:
        for row in csv.DictReader(rows):
            if row[key] == subject:
                return {f: row.get(resource.columns[f]) for f in resource.fields}
    return None


def source_row(data_dir: Path, resource: Resource, subject: str) -> dict[str, Any] | None:
    """The provider's own row for ``subject`` keyed by field name (read with sqlite3)."""
    if resource.source.get("adapter") == "licence":
        return licence_row(data_dir, resource, subject)
    if resource.source.get("adapter") == "upload":
        return uploaded_row(resource, subject)
    url = str(resource.source["url"]).replace("{data_dir}", str(data_dir))
    path = url.removeprefix("sqlite:///")
    table, key = str(resource.source["table"]), str(resource.source["key"])
    assert re.fullmatch(r"\w+", table)
    assert re.fullmatch(r"\w+", key)
    columns = ", ".join(resource.columns[f] for f in resource.fields)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        row = conn.execute(
            f"SELECT {columns} FROM {table} WHERE {key} = ?",  # names checked above
            (subject,),
        ).fetchone()
    return None if row is None else dict(zip(resource.fields, row, strict=True))


def population(subject_type: str) -> list[str]:
    if subject_type == "uscc":
        return [c.uscc for c in companies()]
    assert subject_type == "resident-id"
    return [p.id_number for p in people()]


def subject_with_record(data_dir: Path, resource: Resource) -> str:
    """The first demo subject of the right type that the provider holds a record for."""
    return next(
        s for s in population(resource.subject) if source_row(data_dir, resource, s) is not None
    )


# --- sending batches -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    consumer: str
    item: str
    resource: str
    fields: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.consumer} / {self.item} / {self.resource} {list(self.fields)}"


@dataclass
class Answered:
    cell: Cell
    result: Mapping[str, Any]
    sent: float  # epoch seconds just before the batch left
    received: float  # … and just after its answer came back


@dataclass
class Comparison:
    differences: list[str] = field(default_factory=list)
    undetermined: int = 0  # cells whose expectation changed while their batch was in flight
    allowed: int = 0
    refused: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # grant id or reason code

    def add(self, text: str) -> None:
        self.differences.append(text)


def purpose_of(item: str) -> dict[str, str]:
    return {"item": item, "case": f"PM-{item}", "reason": "policy matrix", "operator": "matrix-1"}


def run_cells(
    gw: Gateway,
    cells: Sequence[Cell],
    subjects: Mapping[str, str],
    *,
    send: Callable[[GatewayClient, list[Cell], str], tuple[list[dict[str, Any]], float, float]]
    | None = None,
    workers: int = 8,
) -> list[Answered]:
    """Send ``cells`` grouped by (consumer, item) in batches of at most BATCH_SIZE."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.consumer, c.item), []).append(c)

    def default_send(
        client: GatewayClient, batch: list[Cell], item: str
    ) -> tuple[list[dict[str, Any]], float, float]:
        sent = time.time()
        purpose = purpose_of(item)
        answer = client.lookup_batch(
            queries=[
                {
                    "resource": c.resource,
                    "subject": (resources_subject_type[c.resource], subjects[c.resource]),
                    "fields": c.fields,
                }
                for c in batch
            ],
            item=item,
            case=purpose["case"],
            reason=purpose["reason"],
            operator=purpose["operator"],
        )
        return answer.claims["results"], sent, time.time()

    resources_subject_type = {r.id: r.subject for r in read_district().resources.values()}
    sender = send or default_send

    def run_group(key: tuple[str, str]) -> list[Answered]:
        consumer, item = key
        out: list[Answered] = []
        group = groups[key]
        with gw.client(consumer) as client:
            for start in range(0, len(group), BATCH_SIZE):
                batch = group[start : start + BATCH_SIZE]
                results, sent, received = sender(client, batch, item)
                assert [r["index"] for r in results] == list(range(len(batch))), key
                out.extend(
                    Answered(c, r, sent, received) for c, r in zip(batch, results, strict=True)
                )
        return out

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [a for part in pool.map(run_group, list(groups)) for a in part]


def compare(
    district: District,
    answered: Sequence[Answered],
) -> Comparison:
    """Check each answer against the independent reading at the time it was decided (the
    subjects all have records, so an allowed query must answer 200)."""
    out = Comparison()
    for a in answered:
        c, r = a.cell, a.result
        first, last = (
            expected_decision(
                district,
                consumer=c.consumer,
                resource=c.resource,
                fields=c.fields,
                item=c.item,
                local=district_time(t),
            )
            for t in (a.sent, a.received)
        )
        acceptable = {first, last}
        if first != last:
            out.undetermined += 1
        status, reason, grant = r.get("status"), r.get("reason"), r.get("grant")
        out.outcomes[str(grant if status == 200 else reason)] += 1
        if status in (200, 404):
            out.allowed += 1
            if not any(e.allowed for e in acceptable):
                want = " or ".join(sorted(e.code for e in acceptable))
                out.add(f"{c}: expected refusal {want}, gateway allowed ({status}, {grant})")
                continue
            if status == 404:
                out.add(f"{c}: allowed but 404 although the source holds the record")
            else:
                _check_release(district, c, r, acceptable, out)
        elif status == 403:
            out.refused += 1
            if Expected(False, str(reason)) not in acceptable:
                want = " or ".join(
                    f"{'allowed by ' if e.allowed else ''}{e.code}"
                    for e in sorted(acceptable, key=lambda e: e.code)
                )
                out.add(f"{c}: expected {want}, gateway refused with {reason}")
            if "data" in r or "grant" in r:
                out.add(f"{c}: a refusal carries data or a grant: {r}")
        else:
            out.add(f"{c}: unexpected status {status} ({r})")
    return out


def _check_release(
    district: District,
    c: Cell,
    r: Mapping[str, Any],
    acceptable: set[Expected],
    out: Comparison,
) -> None:
    grant_id = r.get("grant")
    if Expected(True, str(grant_id)) not in acceptable:
        want = " or ".join(e.code for e in acceptable)
        out.add(f"{c}: allowed by {grant_id}, expected {want}")
        return
    granted = district.grant(str(grant_id)).fields
    data = r.get("data")
    if not isinstance(data, dict):
        out.add(f"{c}: 200 without data: {r}")
        return
    released, requested = set(data), set(c.fields)
    if not (released <= requested <= granted):
        out.add(
            f"{c}: released {sorted(released)} ⊄ requested {sorted(requested)} "
            f"⊄ granted {sorted(granted)}"
        )
    elif released != requested:
        out.add(f"{c}: released {sorted(released)} but requested {sorted(requested)}")
    if r.get("query", {}).get("fields") != list(c.fields):
        out.add(f"{c}: answer's query.fields {r.get('query')} differ from the request")


def report(name: str, comparison: Comparison, total: int, seconds: float) -> None:
    print(
        f"\n{name}: {total} decisions in {seconds:.1f} s "
        f"({total / max(seconds, 1e-9):.0f}/s); allowed {comparison.allowed}, "
        f"refused {comparison.refused}, undetermined at a time edge {comparison.undetermined}; "
        f"differences {len(comparison.differences)}"
    )
    print("  outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(comparison.outcomes.items())))
    for line in comparison.differences[:15]:
        print("  " + line)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def district() -> District:
    return read_district()


@pytest.fixture(scope="module")
def matrix_gateway(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Gateway]:
    """This module's own embedded gateway, so the shared ones keep their rate budgets."""
    data_dir = tmp_path_factory.mktemp("matrix-embedded")
    with in_process_gateway(data_dir, keys_dir, rate_limit=HIGH_RATE) as gw:
        yield gw


def full_matrix(district: District) -> list[Cell]:
    return [
        Cell(consumer, item, res.id, fields)
        for consumer in district.consumers
        for item in district.items
        for res in district.resources.values()
        for fields in field_subsets(res.fields)
    ]


def licence_holder(gw: Gateway, resource: Resource) -> str:
    """A holder of a current licence of the resource's type, from the gateway's licence
    registry (where the demo district's licences were published at start)."""
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            holder = conn.execute(
                sa.text(
                    "SELECT holder_id FROM licences WHERE type_code = :t"
                    " AND superseded_by IS NULL ORDER BY licence_id LIMIT 1"
                ),
                {"t": resource.source["type_code"]},
            ).scalar_one()
    finally:
        engine.dispose()
    return str(holder)


def upload_samples(gw: Gateway, district: District) -> None:
    """An uploaded resource holds records once its provider has uploaded a file: the demo
    district's sample upload of each (docs/examples/<resource>.csv), sent as its provider."""
    for r in district.resources.values():
        if r.source.get("adapter") == "upload":
            with gw.client(r.provider) as provider:
                receipt = provider.upload(
                    resource=r.id, path=sample_upload(r), operator="matrix-clerk"
                )
            assert receipt.claims["rows"]["accepted"] > 0


def subjects_for(gw: Gateway, district: District) -> dict[str, str]:
    """One subject per resource, with a record (keeps each grant's daily distinct-subject
    quota use at 1)."""
    upload_samples(gw, district)
    return {
        r.id: (
            licence_holder(gw, r)
            if r.source.get("adapter") == "licence"
            else subject_with_record(gw.data_dir, r)
        )
        for r in district.resources.values()
    }


# --- the tests -------------------------------------------------------------------------------


def decided_by_the_policy_set(cells: Sequence[Cell]) -> list[Answered]:
    """Each cell decided in process by the policy set the gateway loads (the decision every
    lookup, batch and manifest takes), in the shape of a batch answer's result."""
    policy = load_policy_set(POLICIES_DIR)
    out: list[Answered] = []
    for c in cells:
        now = time.time()
        try:
            decision = policy.decide(
                consumer=c.consumer,
                resource=policy.resource(c.resource),
                fields=c.fields,
                item=policy.service_item(c.item),
                now=dt.datetime.fromtimestamp(now, dt.UTC),
            )
        except PolicyDenied as exc:
            result: dict[str, Any] = {"status": 403, "reason": exc.reason_code}
        else:
            result = {
                "status": 200,
                "grant": decision.grant_id,
                "data": dict.fromkeys(decision.fields, "…"),
                "query": {"fields": list(decision.fields)},
            }
        out.append(Answered(c, result, now, time.time()))
    return out


def test_every_request_of_the_district_is_decided_as_the_policy_files_say(
    district: District,
) -> None:
    """The whole matrix against the policy set in process (the HTTP samples below check that
    the gateway answers as its policy set decides)."""
    cells = full_matrix(district)
    # The matrix covers what it claims to: 7 consumers × 13 items × 225 field subsets.
    subsets = sum(2 ** len(r.fields) - 1 for r in district.resources.values())
    assert len(cells) == len(district.consumers) * len(district.items) * subsets
    started = time.perf_counter()
    answered = decided_by_the_policy_set(cells)
    seconds = time.perf_counter() - started
    result = compare(district, answered)
    report("matrix, in process", result, len(cells), seconds)
    assert len(answered) == len(cells)
    # Every grant allows something (g-centre-insurance only in office hours), and every
    # reason code the demo district can produce at any time occurs.
    for g in district.grants:
        if not g.time_conditioned:
            assert result.outcomes[g.id] > 0, g.id
    for code in ("no-grant", "not-shared", "purpose-not-granted", "field-not-granted"):
        assert result.outcomes[code] > 0, code
    assert result.outcomes["grant-expired"] > 0  # g-tax-property-2024 lapsed in 2024
    assert result.outcomes["outside-hours"] + result.outcomes["g-centre-insurance"] > 0
    assert not result.differences, (
        f"{len(result.differences)} differences between the policy set and the policy files; "
        "first ones:\n" + "\n".join(result.differences[:15])
    )


def seeded_sample(district: District, per_pair: int = 10) -> list[Cell]:
    """A seeded sample of the matrix with every (consumer, item) pair present."""
    rng = random.Random(20260601)
    by_pair: dict[tuple[str, str], list[Cell]] = {}
    for c in full_matrix(district):
        by_pair.setdefault((c.consumer, c.item), []).append(c)
    return [c for group in by_pair.values() for c in rng.sample(group, per_pair)]


def test_a_sample_of_the_matrix_is_decided_the_same_over_http(
    matrix_gateway: Gateway, district: District
) -> None:
    """The embedded gateway over HTTP: a seeded sample, every (consumer, item) pair present,
    answered (records released, refusals coded) as the policy files say."""
    cells = seeded_sample(district)
    subjects = subjects_for(matrix_gateway, district)
    started = time.perf_counter()
    answered = run_cells(matrix_gateway, cells, subjects)
    seconds = time.perf_counter() - started
    result = compare(district, answered)
    report("embedded matrix sample", result, len(cells), seconds)
    assert len(answered) == len(cells)
    assert not result.differences, (
        f"{len(result.differences)} differences; first ones:\n" + "\n".join(result.differences[:15])
    )


@pytest.fixture(scope="module")
def server_matrix_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("matrix-server")
    with in_process_gateway(data_dir, keys_dir, server=True, rate_limit=HIGH_RATE) as gw:
        yield gw


def test_a_sample_of_the_matrix_is_decided_the_same_on_the_server_setup(
    server_matrix_gateway: Gateway, district: District
) -> None:
    """PostgreSQL + Redis, two workers: a seeded sample of the matrix, every (consumer, item)
    pair present, compared the same way."""
    cells = seeded_sample(district)
    subjects = subjects_for(server_matrix_gateway, district)
    started = time.perf_counter()
    answered = run_cells(server_matrix_gateway, cells, subjects)
    seconds = time.perf_counter() - started
    result = compare(district, answered)
    report("server matrix sample", result, len(cells), seconds)
    assert not result.differences, (
        f"{len(result.differences)} differences; first ones:\n" + "\n".join(result.differences[:15])
    )


# --- a variant district: the rules the demo grants cannot reach ------------------------------

_APPROVAL = 'approval = { by = "test", on = 2026-01-01, document = "test" }'

#: Put before the demo grants: shadows g-hrss-enterprise for the one field it names.
_GRANTS_BEFORE = """
[[grant]]
id = "x-hrss-enterprise-first"
consumer = "hrss"
resource = "enterprise-registration"
fields = ["name"]
items = ["000111001000"]
"""

#: Put after them: an unapproved grant of a conditional resource, a grant shadowed by an
#: earlier one, lapsed and future grants, hours that are (all but) never open — one second
#: on Sunday night — and hours that always are.
_GRANTS_AFTER = f"""
[[grant]]
id = "x-centre-identity-unapproved"
consumer = "service-centre"
resource = "resident-identity"
fields = ["name", "gender"]
items = ["000111002000"]

[[grant]]
id = "x-centre-identity-approved"
consumer = "service-centre"
resource = "resident-identity"
fields = ["name"]
items = ["000111002000", "000111003000"]
{_APPROVAL}

[[grant]]
id = "x-tax-enterprise-second"
consumer = "tax"
resource = "enterprise-registration"
fields = ["name"]
items = ["000109001000", "000201002000"]

[[grant]]
id = "x-market-tax-lapsed"
consumer = "market"
resource = "tax-compliance"
fields = ["credit_rating", "tax_status"]
items = ["000201003000"]
valid_until = 2020-12-31
{_APPROVAL}

[[grant]]
id = "x-market-tax-never-open"
consumer = "market"
resource = "tax-compliance"
fields = ["credit_rating"]
items = ["000201003000"]
office_hours = {{ start = 03:00:00, end = 03:00:01, days = ["sun"] }}
{_APPROVAL}

[[grant]]
id = "x-realestate-marriage-future"
consumer = "realestate"
resource = "marriage-record"
fields = ["marital_status"]
items = ["000113002000"]
valid_from = 2099-01-01
{_APPROVAL}

[[grant]]
id = "x-police-identity-always-open"
consumer = "police"
resource = "resident-identity"
fields = ["name", "gender"]
items = ["000107001000"]
{_APPROVAL}

[grant.office_hours]
start = 00:00:00
end = 23:59:59
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
"""


@pytest.fixture(scope="module")
def variant_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[tuple[Gateway, District]]:
    policies = tmp_path_factory.mktemp("variant-policies")
    for name in ("departments.toml", "catalogue.toml"):
        (policies / name).write_text((POLICIES_DIR / name).read_text(encoding="utf-8"))
    demo_grants = (POLICIES_DIR / "grants.toml").read_text(encoding="utf-8")
    (policies / "grants.toml").write_text(
        _GRANTS_BEFORE + "\n" + demo_grants + "\n" + _GRANTS_AFTER, encoding="utf-8"
    )
    data_dir = tmp_path_factory.mktemp("matrix-variant")
    with in_process_gateway(
        data_dir, keys_dir, rate_limit=HIGH_RATE, policies_dir=str(policies)
    ) as gw:
        yield gw, read_district(policies)


def test_grant_order_approval_and_furthest_reason_in_a_variant_district(
    variant_gateway: tuple[Gateway, District],
) -> None:
    """Several grants for one consumer and resource: the first allowing grant in file order
    decides, and a refusal names the check the furthest grant failed — including
    approval-missing, which the demo grants (all approved) never produce."""
    gw, variant = variant_gateway
    pairs = {(g.consumer, g.resource) for g in variant.grants if g.id.startswith("x-")}
    cells = [
        Cell(consumer, item, resource, fields)
        for consumer, resource in sorted(pairs)
        for item in variant.items
        for fields in field_subsets(variant.resources[resource].fields)
    ]
    subjects = subjects_for(gw, variant)
    started = time.perf_counter()
    answered = run_cells(gw, cells, subjects)
    seconds = time.perf_counter() - started
    result = compare(variant, answered)
    report("variant-district matrix", result, len(cells), seconds)
    assert not result.differences, (
        f"{len(result.differences)} differences; first ones:\n" + "\n".join(result.differences[:15])
    )
    # The variant reaches what it was built for (at any time of day but the last second).
    for outcome in (
        "approval-missing",
        "grant-expired",
        "outside-hours",
        "x-hrss-enterprise-first",
        "g-hrss-enterprise",
        "x-centre-identity-approved",
        "x-tax-enterprise-second",
        "g-tax-enterprise",
    ):
        assert result.outcomes[outcome] > 0, outcome


# --- time conditions at chosen instants (a gateway with a shifted clock) ---------------------

_SITECUSTOMIZE = textwrap.dedent(
    """
    # Test support: shift this process's wall clock by the offset in a file (seconds).
    import os
    import time

    _real_time = time.time
    _path = os.environ["YIWANG_TEST_CLOCK_FILE"]
    _cache = [None, 0.0]


    def _offset():
        try:
            st = os.stat(_path)
        except OSError:
            return 0.0
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != _cache[0]:
            with open(_path, encoding="ascii") as f:
                _cache[1] = float(f.read() or 0)
            _cache[0] = key
        return _cache[1]


    def time_():
        return _real_time() + _offset()


    time.time = time_
    """
)


class ShiftedClock:
    """Sets the wall clock of a gateway started with :meth:`environment` (only ``time.time``
    is shifted: the request path takes its ``now`` from it)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="ascii")
        self.directory = directory
        self.path = directory / "clock-offset"
        self.offset = 0.0
        self._serial = itertools.count()

    def environment(self) -> dict[str, str]:
        pythonpath = os.pathsep.join(
            p for p in (str(self.directory), os.environ.get("PYTHONPATH", "")) if p
        )
        return {"PYTHONPATH": pythonpath, "YIWANG_TEST_CLOCK_FILE": str(self.path)}

    def set(self, instant: dt.datetime) -> None:
        """From now on the gateway's clock reads ``instant`` (and runs on from there)."""
        self.offset = instant.timestamp() - time.time()
        tmp = self.path.with_name(f"clock-offset.{next(self._serial)}")
        tmp.write_text(repr(self.offset), encoding="ascii")
        os.replace(tmp, self.path)

    def reset(self) -> None:
        """Back to the real clock."""
        self.offset = 0.0
        tmp = self.path.with_name(f"clock-offset.{next(self._serial)}")
        tmp.write_text("0", encoding="ascii")
        os.replace(tmp, self.path)

    def now(self) -> float:
        return time.time() + self.offset


def send_at(
    clock: ShiftedClock, instant: dt.datetime, gw: GatewayProcess, subjects: Mapping[str, str]
) -> Callable[[GatewayClient, list[Cell], str], tuple[list[dict[str, Any]], float, float]]:
    """A batch sender for a gateway whose clock is set to ``instant`` just before each batch;
    the token is signed for that clock and the answer verified without the time checks a
    real-time verifier would (rightly) fail."""
    subject_types = {r.id: r.subject for r in read_district().resources.values()}

    def send(
        client: GatewayClient, batch: list[Cell], item: str
    ) -> tuple[list[dict[str, Any]], float, float]:
        clock.set(instant)
        now = clock.now()
        purpose = purpose_of(item)
        token = client.sign(
            {
                "iss": client.department,
                "aud": client.audience,
                "iat": int(now),
                "exp": int(now) + 60,
                "jti": uuid.uuid4().hex,
                "purpose": {k: purpose[k] for k in ("item", "case", "reason")},
                "operator": purpose["operator"],
                "queries": [
                    {
                        "resource": c.resource,
                        "subject": {"type": subject_types[c.resource], "id": subjects[c.resource]},
                        "fields": list(c.fields),
                    }
                    for c in batch
                ],
            },
            typ=TokenType.BATCH,
        )
        response = gw.http.post(
            "/v1/lookups:batch",
            content=token.encode(),
            headers={"Content-Type": "application/jwt"},
            timeout=30,
        )
        received = clock.now()
        assert response.status_code == 200, response.text
        header = jwt.get_unverified_header(response.text)
        assert header["typ"] == TokenType.BATCH_RESULT
        claims = signed_claims(
            response.text,
            key=client.jwks.get(str(header["kid"])),
            audience=client.department,
        )
        assert claims["request"]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
        results: list[dict[str, Any]] = claims["results"]
        return results, now, received

    return send


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=DISTRICT_TZ)


#: District instants around every time condition of the demo grants (2026-06-10 is a
#: Wednesday). Each comment says what it probes.
INSTANTS = [
    _at("2026-06-10T12:00:00"),  # mid-day, mid-week: every office-hours grant usable
    _at("2026-06-10T08:29:58"),  # two seconds before the counter opens
    _at("2026-06-10T08:30:00"),  # start is inclusive
    _at("2026-06-10T17:29:58"),  # just before closing
    _at("2026-06-10T17:30:00"),  # end is exclusive
    _at("2026-06-13T12:00:00"),  # Saturday
    _at("2026-06-14T12:00:00"),  # Sunday
    _at("2026-06-08T03:00:00"),  # Monday night (Sunday in UTC)
    _at("2023-12-31T23:59:58"),  # the day before a valid_from
    _at("2024-01-01T00:00:00"),  # valid_from is inclusive, in district time (UTC: Dec 31)
    _at("2024-12-31T23:59:58"),  # valid_until is inclusive
    _at("2025-01-01T00:00:00"),  # the next district day (still 2024-12-31 in UTC)
    _at("2030-12-31T12:00:00"),  # last day of a later valid_until
    _at("2031-01-01T00:00:00"),  # the day after it, in district time (UTC: Dec 31)
]


@pytest.fixture(scope="module")
def clocked_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[tuple[GatewayProcess, ShiftedClock]]:
    clock = ShiftedClock(tmp_path_factory.mktemp("matrix-clock"))
    data_dir = tmp_path_factory.mktemp("matrix-clocked")
    env = {**HIGH_RATE_LIMIT, **clock.environment()}
    with running_gateway(data_dir, keys_dir, server=False, env=env) as gw:
        yield gw, clock


def test_time_conditions_hold_at_their_edges(
    clocked_gateway: tuple[GatewayProcess, ShiftedClock], district: District
) -> None:
    """The (consumer, resource) pairs with a time-conditioned grant, every field subset, at
    each instant of INSTANTS; an expectation that changes while a batch is in
    flight would make an edge meaningless, so none may."""
    gw, clock = clocked_gateway
    pairs = {(g.consumer, g.resource) for g in district.grants if g.time_conditioned}
    assert pairs, "the demo district has time-conditioned grants"
    cells = []
    for consumer, resource in sorted(pairs):
        # The items the pair's grants name (where time can decide) and one they do not; the
        # full matrix already covers the rest at the real time.
        named = {i for g in district.grants_for(consumer, resource) for i in g.items}
        other = next(i for i in district.items if i not in named)
        cells += [
            Cell(consumer, item, resource, fields)
            for item in sorted(named | {other})
            for fields in field_subsets(district.resources[resource].fields)
        ]
    subjects = subjects_for(gw, district)
    started = time.perf_counter()
    total = Comparison()
    for instant in INSTANTS:
        answered = run_cells(gw, cells, subjects, send=send_at(clock, instant, gw, subjects))
        part = compare(district, answered)
        total.differences += [f"at {instant:%Y-%m-%d %H:%M:%S%z}: {d}" for d in part.differences]
        total.undetermined += part.undetermined
        total.allowed += part.allowed
        total.refused += part.refused
        total.outcomes += part.outcomes
    seconds = time.perf_counter() - started
    clock.reset()
    report("time-edge matrix", total, len(cells) * len(INSTANTS), seconds)
    assert not total.differences, (
        f"{len(total.differences)} differences; first ones:\n" + "\n".join(total.differences[:15])
    )
    assert total.undetermined == 0
    # Every time-conditioned grant allowed at some instant, and both time codes occurred.
    for g in district.grants:
        if g.time_conditioned:
            assert total.outcomes[g.id] > 0, f"{g.id} never allowed at the chosen instants"
    assert total.outcomes["grant-expired"] > 0
    assert total.outcomes["outside-hours"] > 0
