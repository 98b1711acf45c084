"""Grant conditions, batches, manifests and closed cases over real HTTP, in both setups."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core.identifiers import resident_id_check_character
from gateway.demo.population import companies, people
from gateway.sdk import BadRequest, Forbidden
from tests.inprocess import ALSO_ON_CLUSTER, Gateway, in_process_gateway
from tests.integration.test_lookups import COMPANY, QUERY

DISTRICT = dt.timezone(dt.timedelta(hours=8))


def _absent_person() -> str:
    body = "43060219000101999"
    return body + resident_id_check_character(body)


def test_masks_are_applied_and_named(gateway: Gateway) -> None:
    person = people()[5]
    with gateway.client("civil-affairs") as c:
        answer = c.lookup(
            resource="resident-identity",
            subject=("resident-id", person.id_number),
            fields=["name", "address", "birth_date"],
            item="000105001000",
            case="DB-1",
            reason="低保资格核验",
            operator="w-1",
        )
    assert answer.data["name"] == person.name[0] + "*" * (len(person.name) - 1)
    assert answer.data["address"] == person.address[:12] + "*" * (len(person.address) - 12)
    assert answer.data["birth_date"] == person.birth_date.isoformat()  # not masked
    assert answer.claims["masked"] == ["address", "name"]


def test_office_hours(gateway: Gateway) -> None:
    person = people()[1]
    local = dt.datetime.now(DISTRICT)
    open_now = local.weekday() < 5 and dt.time(8, 30) <= local.time() < dt.time(17, 30)
    with gateway.client("service-centre") as c:
        query: dict[str, Any] = {
            "resource": "social-insurance",
            "subject": ("resident-id", person.id_number),
            "fields": ["insured_status"],
            "item": "000111002000",
            "case": "SY-1",
            "reason": "失业保险金申领",
            "operator": "c-1",
        }
        if open_now:
            c.lookup(**query)  # within hours: allowed (404 would mean no record: also allowed)
        else:
            with pytest.raises(Forbidden) as err:
                c.lookup(**query)
            assert err.value.reason == "outside-hours"


def test_batch_answers_each_query_and_audits_each(gateway: Gateway) -> None:
    bad = COMPANY.uscc[:17] + ("0" if COMPANY.uscc[17] != "0" else "1")
    queries: list[dict[str, Any]] = [
        {
            "resource": "enterprise-registration",
            "subject": ("uscc", COMPANY.uscc),
            "fields": ["name"],
        },
        {
            "resource": "enterprise-registration",
            "subject": ("uscc", COMPANY.uscc),
            "fields": ["registered_capital"],
        },
        {"resource": "enterprise-registration", "subject": ("uscc", bad), "fields": ["name"]},
        {
            "resource": "enterprise-registration",
            "subject": ("uscc", companies()[1].uscc),
            "fields": ["name", "status"],
        },
        {
            "resource": "criminal-record",
            "subject": ("resident-id", people()[0].id_number),
            "fields": ["has_record"],
        },
    ]
    with gateway.client("service-centre") as c:
        answer = c.lookup_batch(
            queries=queries, item="000201002000", case="PL-1", reason="批量核验", operator="c-2"
        )
    results = answer.claims["results"]
    assert [r["status"] for r in results] == [200, 403, 400, 200, 403]
    assert results[0]["data"] == {"name": COMPANY.name}
    assert results[1]["reason"] == "field-not-granted"
    assert results[2]["field"] == "queries[2].subject.id"
    assert results[4]["reason"] == "not-shared"
    indexes = [r["audit"]["index"] for r in results]
    assert len(set(indexes)) == 5
    for r in results:
        entry = gateway.audit_entry(r["audit"]["index"])
        assert entry["decision"] == ("allowed" if r["status"] == 200 else "refused")


def test_batch_over_the_limit_is_refused_whole(gateway: Gateway) -> None:
    query = {
        "resource": "enterprise-registration",
        "subject": ("uscc", COMPANY.uscc),
        "fields": ["name"],
    }
    with gateway.client("service-centre") as c:
        # 100 queries make a token far over a single lookup's 8 KiB: batches have their own cap.
        full = c.lookup_batch(
            queries=[query] * 100, item="000201002000", case="PL-2", reason="r", operator="o"
        )
        assert [r["status"] for r in full.claims["results"]] == [200] * 100
        with pytest.raises(BadRequest) as err:
            c.lookup_batch(
                queries=[query] * 101, item="000201002000", case="PL-2", reason="r", operator="o"
            )
    assert err.value.problem["field"] == "queries"
    assert gateway.audit_entry(err.value.problem["audit_index"])["decision"] == "refused"


def test_manifest_lists_what_the_applicant_need_not_bring(gateway: Gateway) -> None:
    with gateway.client("service-centre") as c:
        answer = c.manifest(
            applicant=("uscc", COMPANY.uscc),
            item="000201002000",
            case="MF-1",
            reason="一次性告知",
            operator="c-3",
        )
    materials = {m["name"]: m for m in answer.claims["materials"]}
    assert materials["营业执照"]["status"] == "available"
    assert materials["营业执照"]["grant"] == "g-centre-enterprise"
    assert materials["变更决议"]["status"] == "bring"
    # Availability only: none of the record's values is in the answer.
    assert COMPANY.name not in str(answer.claims)
    assert gateway.audit_entry(answer.claims["audit"]["index"])["event"] == (
        "manifest:materials:listed"
    )


def test_manifest_says_why_a_source_cannot_be_used(gateway: Gateway) -> None:
    person = people()[2]
    with gateway.client("tax") as c:
        answer = c.manifest(
            applicant=("resident-id", person.id_number),
            item="000109002000",
            case="MF-2",
            reason="房产税申报",
            operator="t-1",
        )
    [material] = answer.claims["materials"]
    assert material == {
        "name": "不动产权证书",
        "resource": "property-ownership",
        "provider": "realestate",
        "status": "not-granted",
        "reason": "grant-expired",
    }
    with gateway.client("realestate") as c:
        answer = c.manifest(
            applicant=("resident-id", _absent_person()),
            item="000113001000",
            case="MF-3",
            reason="转移登记",
            operator="r-1",
        )
    statuses = {m["name"]: (m["status"], m.get("reason")) for m in answer.claims["materials"]}
    assert statuses["身份证明"] == ("bring", "no-record")
    assert statuses["买卖合同"] == ("bring", "no-shared-source")


@ALSO_ON_CLUSTER
def test_closed_case_refuses_later_lookups(gateway: Gateway) -> None:
    case = f"BJ-{uuid.uuid4().hex[:10]}"
    with gateway.client("service-centre") as c:
        c.lookup(**{**QUERY, "case": case, "fields": ["name"]})
        receipt = c.close_case(case=case, reason="办结", operator="c-4")
        assert receipt.claims["closed"] is True
        assert receipt.claims["already_closed"] is False
        # Every worker sees it (the server setup runs two).
        for _ in range(4):
            with pytest.raises(Forbidden) as err:
                c.lookup(**{**QUERY, "case": case, "fields": ["name"]})
            assert err.value.reason == "case-closed"
        assert c.close_case(case=case, reason="办结", operator="c-4").claims["already_closed"]
        # Other cases, and the same case number of another department, are unaffected.
        c.lookup(**{**QUERY, "case": case + "-2", "fields": ["name"]})
    with gateway.client("tax") as t:
        t.lookup(**{**QUERY, "case": case, "item": "000109001000", "fields": ["name"]})


@pytest.fixture(scope="module", params=["embedded", "server", "cluster"])
def quota_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[Gateway]:
    """Its own gateway, so that no other test has counted subjects against the quota (the
    quota sets live in Redis: on a Redis Cluster too)."""
    redis_url = None
    if request.param == "cluster":
        redis_url = request.getfixturevalue("redis_cluster").url(0)
    with in_process_gateway(
        tmp_path_factory.mktemp("quota"),
        keys_dir,
        server=request.param != "embedded",
        redis_url=redis_url,
    ) as gw:
        yield gw


def test_daily_subject_quota(quota_gateway: Gateway) -> None:
    persons = people()[:51]
    with quota_gateway.client("civil-affairs") as c:
        answer = c.lookup_batch(
            queries=[
                {
                    "resource": "resident-identity",
                    "subject": ("resident-id", p.id_number),
                    "fields": ["birth_date"],
                }
                for p in persons
            ],
            item="000105001000",
            case="DB-9",
            reason="低保资格核验",
            operator="w-2",
        )
        statuses = [r["status"] for r in answer.claims["results"]]
        assert statuses[:50] == [200] * 50
        assert answer.claims["results"][50]["reason"] == "quota-exhausted"
        # A subject already counted today can be read again; a new one cannot.
        c.lookup(
            resource="resident-identity",
            subject=("resident-id", persons[0].id_number),
            fields=["birth_date"],
            item="000105001000",
            case="DB-9",
            reason="复核",
            operator="w-2",
        )
        with pytest.raises(Forbidden) as err:
            c.lookup(
                resource="resident-identity",
                subject=("resident-id", people()[60].id_number),
                fields=["birth_date"],
                item="000105001000",
                case="DB-9",
                reason="复核",
                operator="w-2",
            )
    assert err.value.reason == "quota-exhausted"


def test_explain_is_for_administrators(gateway: Gateway) -> None:
    params = {
        "consumer": "service-centre",
        "resource": "enterprise-registration",
        "item": "000201002000",
        "fields": "name,registered_capital",
    }
    url = gateway.url + "/v1/policy/explain"
    assert gateway.http.get(url, params=params).status_code == 401
    assert (
        gateway.http.get(
            url, params=params, headers={"Authorization": "Bearer not-the-token"}
        ).status_code
        == 403
    )
    token = (gateway.keys_dir / "operators" / "admin.token").read_text().strip()
    response = gateway.http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    explained = response.json()
    assert explained["decision"]["allowed"] is False
    assert explained["decision"]["reason_code"] == "field-not-granted"
    assert [c["grant"] for c in explained["candidates"]] == ["g-centre-enterprise"]
    bad = gateway.http.get(
        url, params={**params, "resource": "nope"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "resource"
