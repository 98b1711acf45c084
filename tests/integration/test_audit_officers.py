"""The security officers' tools and the citizens' access history over real HTTP, on both
setups: search with every filter (entries made by real lookups), keyset paging while lookups
keep arriving, CSV and JSON Lines exports (and 200,000 entries exported in constant memory on
SQLite and PostgreSQL), the portal's signed access history under a grant, embargoes, and
alerts end to end (HTTP and CLI).

The session's gateways are shared with other test modules, so every test marks its own
entries with a case number of its own and filters on it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.demo.population import companies, people
from gateway.errors import InvalidInput
from gateway.oversight.search import (
    EXPORT_COLUMNS,
    EntryFilter,
    decode_cursor,
    encode_cursor,
    export_chunks,
    parse_filter,
)
from gateway.sdk import Forbidden, GatewayClient
from gateway.storage import migrations
from gateway.storage.database import create_database_engine
from tests.inprocess import Gateway
from tests.support import CommandResult, GatewayProcess, gateway_command, postgres_database

COMPANIES = [c for c in companies() if c.status == "存续"]
PEOPLE = people()
HISTORY_ITEM = "000198001000"


# --- helpers ---------------------------------------------------------------------------------


def auditor(gw: Gateway) -> dict[str, str]:
    token = (gw.keys_dir / "operators" / "auditor.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def case_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def search(gw: Gateway, **params: Any) -> dict[str, Any]:
    params = {("from" if k == "since" else k): v for k, v in params.items()}
    response = gw.http.get(
        gw.url + "/v1/audit/entries", params=params, headers=auditor(gw), timeout=10
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def indexes(gw: Gateway, **params: Any) -> list[int]:
    """Every matching entry's index, through all pages."""
    out: list[int] = []
    cursor = None
    while True:
        page = search(gw, limit=500, **params, **({"cursor": cursor} if cursor else {}))
        out += [e["index"] for e in page["entries"]]
        cursor = page["next"]
        if cursor is None:
            return out


def enterprise_lookup(
    client: GatewayClient, company: str, case: str, *, operator: str = "clerk-ao"
) -> int:
    return client.lookup(
        resource="enterprise-registration",
        subject=("uscc", company),
        fields=["name"],
        item="000201002000",
        case=case,
        reason="安全审计测试",
        operator=operator,
    ).audit_index


def identity_lookup(gw: Gateway, department: str, person: str, case: str) -> int:
    """A released read of a person's identity, under the department's grant."""
    item, fields = {
        "market": ("000201001000", ["name", "gender"]),
        "hrss": ("000111002000", ["name", "birth_date"]),
        "realestate": ("000113001000", ["name", "address"]),
    }[department]
    with gw.client(department) as c:
        return c.lookup(
            resource="resident-identity",
            subject=("resident-id", person),
            fields=fields,
            item=item,
            case=case,
            reason="安全审计测试",
            operator=f"{department}-clerk",
        ).audit_index


def history_token(
    client: GatewayClient,
    subject: tuple[str, str],
    *,
    item: str = HISTORY_ITEM,
    case: str = "WEB-2026-0001",
    **extra: Any,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client.department,
        "aud": client.audience,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        "operator": "portal-1",
        "purpose": {"item": item, "case": case, "reason": "本人查询数据使用记录"},
        "subject": {"type": subject[0], "id": subject[1]},
        **extra,
    }
    return client.sign(claims, typ=TokenType.ACCESS_HISTORY)


def history(
    gw: Gateway, department: str, subject: tuple[str, str], **params: Any
) -> tuple[httpx.Response, str]:
    with gw.client(department) as c:
        token = history_token(c, subject)
    response = gw.http.get(
        f"{gw.url}/v1/audit/subjects/{subject[0]}:{subject[1]}/accesses",
        headers={"Request-Token": token},
        params=params,
        timeout=10,
    )
    return response, token


def accesses(gw: Gateway, subject: tuple[str, str], **params: Any) -> dict[str, Any]:
    """The service centre's verified access-history answer for ``subject``."""
    response, token = history(gw, "service-centre", subject, **params)
    assert response.status_code == 200, response.text
    with gw.client("service-centre") as c:
        claims = c.verify_answer(
            response.text, request_token=token, typ=TokenType.ACCESS_HISTORY_RESULT
        ).claims
    assert claims["subject"] == {"type": subject[0], "id": subject[1]}
    assert claims["audit"]["index"] == int(response.headers["Audit-Index"])
    return claims


# --- credentials -------------------------------------------------------------------------------


OFFICER_ENDPOINTS = [
    ("GET", "/v1/audit/entries"),
    ("GET", "/v1/audit/entries/export?format=jsonl"),
    ("GET", "/v1/audit/alerts"),
    ("GET", "/v1/audit/embargoes"),
    ("POST", "/v1/audit/embargoes"),
    ("DELETE", "/v1/audit/embargoes/emb-0000000000000000"),
]


def test_officer_endpoints_need_the_auditor_token(gateway: Gateway) -> None:
    admin = (gateway.keys_dir / "operators" / "admin.token").read_text().strip()
    with gateway.client("service-centre") as c:
        department_token = c.sign({"iss": "service-centre", "aud": c.audience})
    before = gateway.audit_count()
    for method, path in OFFICER_ENDPOINTS:
        url = gateway.url + path
        none = gateway.http.request(method, url, json={} if method == "POST" else None)
        assert none.status_code == 401, (path, none.text)
        assert none.headers["content-type"].startswith("application/problem+json")
        for bearer in (admin, department_token, "x" * 43):
            refused = gateway.http.request(
                method, url, headers={"Authorization": f"Bearer {bearer}"}
            )
            assert refused.status_code == 403, (path, refused.text)
        # A department's signed token in the header the portal uses is no credential here.
        signed = gateway.http.request(method, url, headers={"Request-Token": department_token})
        assert signed.status_code == 401, path
    # Nothing was exported, embargoed or lifted.
    assert gateway.audit_count() == before
    ok = gateway.http.get(gateway.url + "/v1/audit/entries?limit=1", headers=auditor(gateway))
    assert ok.status_code == 200
    assert ok.headers["cache-control"] == "no-store"


# --- search --------------------------------------------------------------------------------------


def test_search_finds_entries_by_every_filter(gateway: Gateway) -> None:
    case = case_id("AO-SEARCH")
    company, other = COMPANIES[3].uscc, COMPANIES[4].uscc
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    with gateway.client("service-centre") as sc, gateway.client("tax") as tax:
        released = enterprise_lookup(sc, company, case, operator="clerk-s1")
        second = enterprise_lookup(sc, other, case, operator="clerk-s2")
        by_tax = tax.lookup(
            resource="enterprise-registration",
            subject=("uscc", company),
            fields=["name", "registered_capital"],
            item="000109001000",
            case=case,
            reason="开业登记核验",
            operator="tax-clerk-s",
        ).audit_index
        with pytest.raises(Forbidden) as refusal:
            enterprise_lookup(tax, company, case, operator="tax-clerk-s")  # item not granted
    refused = refusal.value.audit_index
    assert refused is not None
    t1 = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=1)
    mine = sorted([released, second, by_tax, refused])

    assert indexes(gateway, case=case) == mine
    assert indexes(gateway, case=case, department="tax") == [by_tax, refused]
    assert indexes(gateway, case=case, operator="clerk-s2") == [second]
    assert indexes(gateway, case=case, resource="enterprise-registration") == mine
    assert indexes(gateway, case=case, resource="resident-identity") == []
    assert indexes(gateway, case=case, item="000109001000") == [by_tax]
    assert indexes(gateway, case=case, decision="refused") == [refused]
    assert indexes(gateway, case=case, decision="allowed") == [released, second, by_tax]
    assert indexes(gateway, case=case, event="lookup:record:refused") == [refused]
    assert indexes(gateway, case=case, event="lookup:*") == mine
    assert indexes(gateway, case=case, event="licence:*") == []
    assert indexes(gateway, case=case, subject=f"uscc:{company}") == [released, by_tax, refused]
    assert indexes(gateway, case=case, subject=f"uscc:{other}") == [second]
    assert indexes(gateway, case=case, since=t0.isoformat(), until=t1.isoformat()) == mine
    assert indexes(gateway, case=case, since=t1.isoformat()) == []
    assert indexes(gateway, case=case, until=t0.isoformat()) == []
    # A time with another offset is the same instant.
    local = t0.astimezone(DISTRICT_TZ).isoformat()
    assert indexes(gateway, case=case, since=local, department="service-centre") == [
        released,
        second,
    ]
    assert indexes(
        gateway, department="tax", case=case, subject=f"uscc:{company}", decision="allowed"
    ) == [by_tax]

    page = search(gateway, case=case)
    entry = next(e for e in page["entries"] if e["index"] == by_tax)
    assert {k: entry[k] for k in ("event", "decision", "department", "operator")} == {
        "event": "lookup:record:released",
        "decision": "allowed",
        "department": "tax",
        "operator": "tax-clerk-s",
    }
    assert entry["fields"] == ["name", "registered_capital"]
    assert entry["grant_id"] == "g-tax-enterprise"
    assert entry["at"].endswith("Z")
    assert len(entry["subject_hmac"]) == 64
    assert entry["proof"] == f"/v1/audit/proofs/inclusion?index={by_tax}&size={page['tree_size']}"
    proof = gateway.http.get(gateway.url + entry["proof"])
    assert proof.status_code == 200, proof.text
    assert proof.json()["index"] == by_tax
    # The subject is keyed: neither the answer nor the log names it in clear.
    assert company not in json.dumps(page)
    stored = gateway.audit_entry(by_tax)
    assert stored["subject_hmac"] == entry["subject_hmac"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"subject": "uscc:91430671AUDLE3UHM1"}, "subject"),  # wrong check character
        ({"subject": "passport:E1234567"}, "subject"),
        ({"subject": "91430671AUDLE3UHM0"}, "subject"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-06-10T08:00:00"}, "from"),  # no offset
        ({"from": "2026-06-10T08:00:00Z", "until": "2026-06-10T07:00:00Z"}, "until"),
        ({"decision": "maybe"}, "decision"),
        ({"event": "lookup:*:released"}, "event"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"department": "tax'; drop table audit_entries; --"}, "department"),
    ],
)
def test_bad_filters_are_refused_with_the_parameter_named(
    embedded_gateway: GatewayProcess, params: dict[str, str], field: str
) -> None:
    response = embedded_gateway.http.get(
        embedded_gateway.url + "/v1/audit/entries", params=params, headers=auditor(embedded_gateway)
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_paging_neither_skips_nor_repeats_while_entries_arrive(gateway: Gateway) -> None:
    case = case_id("AO-PAGE")
    with gateway.client("service-centre") as c:
        first = [enterprise_lookup(c, COMPANIES[n % 20].uscc, case) for n in range(12)]
    stop = threading.Event()
    made: list[int] = []

    def keep_looking_up() -> None:
        with gateway.client("service-centre") as c:
            n = 0
            while not stop.is_set() and n < 60:
                made.append(enterprise_lookup(c, COMPANIES[n % 20].uscc, case))
                n += 1

    writer = threading.Thread(target=keep_looking_up)
    writer.start()
    seen: list[int] = []
    pages = 0
    try:
        cursor = None
        while True:
            page = search(gateway, case=case, limit=5, **({"cursor": cursor} if cursor else {}))
            seen += [e["index"] for e in page["entries"]]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
            time.sleep(0.01)  # let entries arrive between pages
    finally:
        stop.set()
        writer.join()
    assert pages >= 3
    assert seen == sorted(set(seen)), "a page repeated or went back"
    assert seen[: len(first)] == first
    # Every entry of the case up to the last one seen was on a page: none skipped.
    everything = indexes(gateway, case=case)
    assert sorted(first + made) == everything
    assert seen == [i for i in everything if i <= seen[-1]]
    # Newest first works the same way.
    newest: list[int] = []
    cursor = None
    while True:
        page = search(
            gateway, case=case, order="desc", limit=7, **({"cursor": cursor} if cursor else {})
        )
        newest += [e["index"] for e in page["entries"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert newest == everything[::-1]


def test_cursor_and_filter_parsing() -> None:
    assert decode_cursor(encode_cursor("desc", 123456789)) == ("desc", 123456789)
    with pytest.raises(InvalidInput):
        decode_cursor(encode_cursor("asc", 5)[:-2] + "!!")
    flt = parse_filter(
        {"event": "lookup:*", "subject": f"resident-id:{PEOPLE[0].id_number}"},
        key_subject=lambda kind, ident: (f"{kind}|{ident}", f"sm3:{kind}|{ident}"),
    )
    assert flt.subject_hmac == f"resident-id|{PEOPLE[0].id_number}"
    assert flt.subject_tags == (flt.subject_hmac, f"sm3:resident-id|{PEOPLE[0].id_number}")
    assert PEOPLE[0].id_number not in flt.described()
    assert EntryFilter().described() == "all entries"


# --- export -------------------------------------------------------------------------------------


def test_export_as_csv_and_json_lines(served_gateway: GatewayProcess) -> None:
    case = case_id("AO-EXPORT")
    with served_gateway.client("service-centre") as c:
        made = [enterprise_lookup(c, COMPANIES[n].uscc, case) for n in range(7)]
        made.append(
            c.lookup(
                resource="enterprise-registration",
                subject=("uscc", COMPANIES[9].uscc),
                fields=["name"],
                item="000201002000",
                case=case,
                # A reason a spreadsheet would run as a formula.
                reason='=HYPERLINK("http://evil.invalid","x")',
                operator="clerk-ao",
            ).audit_index
        )
    url = served_gateway.url + "/v1/audit/entries/export"
    with served_gateway.http.stream(
        "GET", url, params={"format": "csv", "case": case}, headers=auditor(served_gateway)
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        disposition = response.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="audit-entries-')
        assert disposition.endswith('.csv"')
        exported_at = int(response.headers["audit-index"])
        assert int(response.headers["audit-tree-size"]) >= made[-1]
        body = b"".join(response.iter_bytes())
    assert body.startswith(b"\xef\xbb\xbfindex,")  # a UTF-8 BOM, so spreadsheets read UTF-8
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [int(r[0]) for r in rows[1:]] == made
    by_column = [dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert {r["department"] for r in by_column} == {"service-centre"}
    assert by_column[0]["fields"] == "name"
    assert by_column[-1]["reason"] == '\'=HYPERLINK("http://evil.invalid","x")'
    # The export is an entry of its own, written before the body (and not part of it).
    entry = served_gateway.audit_entry(exported_at)
    assert entry["event"] == "audit:entries:exported"
    assert case in str(entry["detail"])

    response = served_gateway.http.get(
        url, params={"format": "jsonl", "case": case}, headers=auditor(served_gateway), timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.jsonl"')
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["index"] for line in lines] == made
    assert set(lines[0]) == set(EXPORT_COLUMNS)
    assert lines[-1]["reason"] == '=HYPERLINK("http://evil.invalid","x")'  # exact here
    assert lines[0]["fields"] == ["name"]

    bad = served_gateway.http.get(url, params={"format": "xlsx"}, headers=auditor(served_gateway))
    assert bad.status_code == 400
    assert bad.json()["field"] == "format"


BULK = 200_000


def _bulk_insert(engine: sa.Engine, count: int) -> None:
    """``count`` entries generated by the database itself (fast: no Python per row)."""
    columns = (
        "idx, at, event, decision, department, operator, service_item, case_number, reason, "
        "resource, subject_hmac, fields, grant_id, policy_version, request_hash, latency_ms"
    )
    if engine.dialect.name == "postgresql":
        rows = (
            "SELECT n, now() - (n || ' ms')::interval, 'lookup:record:released', 'allowed', "
            "'tax', 'bulk-clerk', '000109001000', 'BULK-' || (n % 1000), '开业登记核验', "
            "'enterprise-registration', lpad(to_hex(n), 64, '0'), "
            "'[\"name\", \"status\"]', 'g-tax-enterprise', 'sha256:bulk', "
            "lpad(to_hex(n * 7), 64, '0'), 0.5 "
            f"FROM generate_series(1, {count}) AS n"
        )
    else:
        rows = (
            f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
            "SELECT n, '2026-06-10 02:00:00.000000', 'lookup:record:released', 'allowed', 'tax', "
            "'bulk-clerk', '000109001000', 'BULK-' || (n % 1000), '开业登记核验', "
            "'enterprise-registration', printf('%064x', n), '[\"name\", \"status\"]', "
            "'g-tax-enterprise', 'sha256:bulk', printf('%064x', n * 7), 0.5 FROM s"
        )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # The gateway's engine cuts statements at twice its lock timeout; filling the
            # table is the test's own set-up, not a statement the gateway would run.
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        conn.execute(sa.text(f"INSERT INTO audit_entries ({columns}) {rows}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def bulk_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated database holding BULK entries, on each dialect."""
    with postgres_database() if request.param == "postgresql" else _sqlite(tmp_path) as url:
        engine = create_database_engine(url)
        migrations.upgrade(engine)
        _bulk_insert(engine, BULK)
        try:
            yield engine
        finally:
            engine.dispose()


class _sqlite:
    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'bulk.sqlite3'}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *_: object) -> None:
        pass


def test_export_of_200000_entries_streams_in_constant_memory(bulk_engine: sa.Engine) -> None:
    """The export's own generator (what the route streams) over 200,000 entries: every entry
    once, in order, while this process's memory stays far below the size of what was
    produced (all rows held at once would take several hundred MB)."""
    fmt = "csv" if bulk_engine.dialect.name == "sqlite" else "jsonl"
    process = psutil.Process()

    async def consume() -> tuple[int, int, bytes, int]:
        lines = size = 0
        tail = b""
        before = highest = process.memory_info().rss
        async for chunk in export_chunks(bulk_engine, EntryFilter(), fmt=fmt, upto=BULK):
            size += len(chunk)
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
            highest = max(highest, process.memory_info().rss)
        return lines, size, tail, highest - before

    lines, size, tail, growth = asyncio.run(consume())
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    assert lines == BULK + (1 if fmt == "csv" else 0)
    if fmt == "csv":
        assert last.split(b",")[0] == str(BULK).encode()
    else:
        assert json.loads(last)["index"] == BULK
    assert size > 50 * 1024 * 1024  # what was streamed…
    assert growth < 40 * 1024 * 1024, f"memory grew by {growth / 1e6:.1f} MB"  # …and held

    # A filter, and the snapshot bound: entries after it are not exported.
    async def count(flt: EntryFilter, upto: int) -> int:
        return sum(
            [c.count(b"\n") async for c in export_chunks(bulk_engine, flt, fmt="jsonl", upto=upto)]
        )

    assert asyncio.run(count(EntryFilter(case="BULK-7"), BULK)) == BULK // 1000
    assert asyncio.run(count(EntryFilter(case="BULK-7"), 100_000)) == 100


# --- citizens' access history -------------------------------------------------------------


def test_access_history_shows_who_read_a_persons_data(gateway: Gateway) -> None:
    person = PEOPLE[-3].id_number
    subject = ("resident-id", person)
    case = case_id("AO-HIST")
    by_market = identity_lookup(gateway, "market", person, case)
    by_hrss = identity_lookup(gateway, "hrss", person, case)
    with gateway.client("tax") as tax, pytest.raises(Forbidden):
        tax.lookup(  # refused (field not granted): never shown
            resource="resident-identity",
            subject=subject,
            fields=["gender"],
            item="000109001000",
            case=case,
            reason="安全审计测试",
            operator="tax-clerk",
        )
    claims = accesses(gateway, subject)
    assert claims["grant"] == "g-centre-access-history"
    mine = [a for a in claims["accesses"] if a.get("case_number") == case]
    assert [a["index"] for a in mine] == [by_hrss, by_market]  # newest first
    latest = mine[0]
    assert latest == {
        "index": by_hrss,
        "kind": "lookup",
        "at": latest["at"],
        "department": "hrss",
        "department_name": "区人力资源和社会保障局",
        "service_item": "000111002000",
        "service_item_name": "失业保险金申领",
        "case_number": case,
        "resource": "resident-identity",
        "resource_name": "居民身份信息",
        "fields": ["name", "birth_date"],
    }
    assert dt.datetime.fromisoformat(latest["at"]) <= dt.datetime.now(dt.UTC)
    # Refusals and operators never appear.
    assert "tax" not in {a["department"] for a in claims["accesses"]}
    assert "hrss-clerk" not in json.dumps(claims, ensure_ascii=False)
    # The read is audited, for this subject, with the grant; before the answer left.
    entry = gateway.audit_entry(claims["audit"]["index"])
    assert entry["event"] == "audit:access-history:read"
    assert entry["department"] == "service-centre"
    assert entry["grant_id"] == "g-centre-access-history"
    assert entry["service_item"] == HISTORY_ITEM
    assert entry["subject_hmac"] == gateway.audit_entry(by_market)["subject_hmac"]

    # Paging, newest first: one at a time, the cursor continues with older ones.
    first = accesses(gateway, subject, limit=1)
    assert len(first["accesses"]) == 1
    assert first["next"] is not None
    second = accesses(gateway, subject, limit=1, cursor=first["next"])
    assert second["accesses"][0]["index"] < first["accesses"][0]["index"]


def test_access_history_of_a_company_shows_verifications(gateway: Gateway) -> None:
    engine = sa.create_engine(gateway.database_url)
    try:
        with engine.connect() as conn:
            licence_id, holder = conn.execute(
                sa.text(
                    "SELECT licence_id, holder_id FROM licences WHERE type_code = :t AND "
                    "status = 'valid' AND superseded_by IS NULL ORDER BY licence_id LIMIT 1"
                ),
                {"t": "11100000000013338W001"},
            ).one()
    finally:
        engine.dispose()
    case = case_id("AO-VERIFY")
    with gateway.client("hrss") as c:
        receipt = c.verify_licence(
            licence_id=licence_id,
            item="000111001000",
            case=case,
            reason="社保登记核验营业执照",
            operator="hrss-clerk",
        )
    claims = accesses(gateway, ("uscc", holder))
    assert claims["grant"] == "g-centre-access-history-enterprise"
    [shown] = [a for a in claims["accesses"] if a.get("case_number") == case]
    assert shown["index"] == receipt.audit_index
    assert shown["kind"] == "verification"
    assert shown["department"] == "hrss"
    assert shown["resource"] == "licence:11100000000013338W001"
    assert shown["resource_name"] == "营业执照（电子证照）"
    assert shown["fields"] is None


def test_access_history_is_refused_without_a_grant(gateway: Gateway) -> None:
    subject = ("resident-id", PEOPLE[-4].id_number)
    # The market department holds no access-history grant.
    response, _ = history(gateway, "market", subject)
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["reason"] == "no-grant"
    entry = gateway.audit_entry(problem["audit_index"])
    assert (entry["event"], entry["decision"], entry["reason_code"]) == (
        "audit:access-history:refused",
        "refused",
        "no-grant",
    )
    assert entry["department"] == "market"
    assert entry["resource"] == "access-history"

    with gateway.client("service-centre") as c:
        url = f"{gateway.url}/v1/audit/subjects/resident-id:{subject[1]}/accesses"
        # A service item the grant does not name.
        token = history_token(c, subject, item="000201002000")
        wrong_item = gateway.http.get(url, headers={"Request-Token": token})
        assert wrong_item.status_code == 403
        assert wrong_item.json()["reason"] == "purpose-not-granted"
        # A token for another subject than the path's.
        token = history_token(c, ("resident-id", PEOPLE[-5].id_number))
        mismatch = gateway.http.get(url, headers={"Request-Token": token})
        assert mismatch.status_code == 400
        assert mismatch.json()["field"] == "subject"
        # A token of another type (a lookup's) is a token failure: 401, audited.
        wrong_typ = c.sign({"iss": "service-centre", "aud": c.audience, "jti": "x"})
        unauthorised = gateway.http.get(url, headers={"Request-Token": wrong_typ})
        assert unauthorised.status_code == 401
        assert gateway.audit_entry(unauthorised.json()["audit_index"])["reason_code"] == (
            "token:wrong-typ"
        )
        # No token at all.
        assert gateway.http.get(url).status_code == 401
        # Replayed token.
        token = history_token(c, subject)
        assert gateway.http.get(url, headers={"Request-Token": token}).status_code == 200
        assert gateway.http.get(url, headers={"Request-Token": token}).status_code == 409


def test_embargo_hides_entries_from_the_history_until_its_date(gateway: Gateway) -> None:
    person = PEOPLE[-6].id_number
    subject = ("resident-id", person)
    case = case_id("AO-EMB")
    by_market = identity_lookup(gateway, "market", person, case)
    by_hrss = identity_lookup(gateway, "hrss", person, case)

    def shown() -> list[int]:
        return [
            a["index"] for a in accesses(gateway, subject)["accesses"] if a["case_number"] == case
        ]

    assert shown() == [by_hrss, by_market]
    today = dt.datetime.now(DISTRICT_TZ).date()
    url = gateway.url + "/v1/audit/embargoes"
    added = gateway.http.post(
        url,
        headers=auditor(gateway),
        json={
            "subject": f"resident-id:{person}",
            "until": today.isoformat(),
            "reason": "调查 2026-07 号线索",
            "operator": "officer-1",
        },
    )
    assert added.status_code == 201, added.text
    embargo = added.json()
    assert embargo["in_force"] is True
    assert person not in added.text  # keyed, like everywhere else
    assert shown() == []  # hidden from the portal…
    assert indexes(gateway, case=case, subject=f"resident-id:{person}") == [by_market, by_hrss]
    # …and the embargo is an entry of the log itself, for the same keyed subject.
    entry = gateway.audit_entry(embargo["audit_index"])
    assert entry["event"] == "audit:embargo:added"
    assert entry["operator"] == "officer-1"
    assert entry["reason"] == "调查 2026-07 号线索"
    assert entry["subject_hmac"] == gateway.audit_entry(by_market)["subject_hmac"]
    assert embargo["id"] in str(entry["detail"])
    listed = gateway.http.get(url, params={"in_force": "true"}, headers=auditor(gateway)).json()
    assert embargo["id"] in {e["id"] for e in listed["embargoes"]}

    # The date passes (the row is moved back a day, as time would): visible again.
    engine = sa.create_engine(gateway.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE audit_embargoes SET until = :d WHERE id = :i"),
                {"d": today - dt.timedelta(days=1), "i": embargo["id"]},
            )
    finally:
        engine.dispose()
    assert shown() == [by_hrss, by_market]

    # An embargo of one department's reads only, lifted before its date.
    scoped = gateway.http.post(
        url,
        headers=auditor(gateway),
        json={
            "subject": f"resident-id:{person}",
            "until": (today + dt.timedelta(days=30)).isoformat(),
            "reason": "核查市场监管局调取记录",
            "operator": "officer-2",
            "department": "market",
        },
    ).json()
    assert shown() == [by_hrss]
    lifted = gateway.http.delete(
        f"{url}/{scoped['id']}",
        params={"operator": "officer-2", "reason": "核查完毕"},
        headers=auditor(gateway),
    )
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["in_force"] is False
    assert gateway.audit_entry(lifted.json()["lifted"]["audit_index"])["event"] == (
        "audit:embargo:lifted"
    )
    assert shown() == [by_hrss, by_market]

    for body, field in (
        (
            {
                "subject": f"resident-id:{person}",
                "until": "2020-01-01",
                "reason": "x",
                "operator": "o",
            },
            "until",
        ),
        (
            {
                "subject": "resident-id:123",
                "until": today.isoformat(),
                "reason": "x",
                "operator": "o",
            },
            "subject",
        ),
        (
            {"subject": f"resident-id:{person}", "until": today.isoformat(), "operator": "o"},
            "reason",
        ),
    ):
        refused = gateway.http.post(url, headers=auditor(gateway), json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == field
    missing = gateway.http.delete(
        f"{url}/emb-ffffffffffffffff",
        params={"operator": "o", "reason": "r"},
        headers=auditor(gateway),
    )
    assert missing.status_code == 404


# --- alerts --------------------------------------------------------------------------------


def _alerts_cli(gw: GatewayProcess, *args: str) -> CommandResult:
    env = {k: v for k, v in gw.environment().items() if k.startswith("GATEWAY_")}
    return gateway_command("audit", "alerts", *args, env=env)


def test_repeated_bad_tokens_and_closed_cases_raise_alerts(served_gateway: GatewayProcess) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=5)
    case = case_id("AO-ALERT")
    with served_gateway.client("civil-affairs") as c:
        for _ in range(6):  # signed for another audience: token:wrong-aud, owner known
            now = int(time.time())
            token = c.sign(
                {
                    "iss": "civil-affairs",
                    "aud": "someone-else",
                    "iat": now,
                    "exp": now + 60,
                    "jti": uuid.uuid4().hex,
                }
            )
            response = served_gateway.http.post(
                served_gateway.url + "/v1/lookups",
                content=token,
                headers={"Content-Type": "application/jwt"},
            )
            assert response.status_code == 401
    with served_gateway.client("service-centre") as c:
        enterprise_lookup(c, COMPANIES[0].uscc, case)
        c.close_case(case=case, reason="办结", operator="clerk-ao")
        for n in range(2):
            with pytest.raises(Forbidden) as closed:
                enterprise_lookup(c, COMPANIES[n].uscc, case)
            assert closed.value.reason == "case-closed"
    window = {"from": start.isoformat()}
    response = served_gateway.http.get(
        served_gateway.url + "/v1/audit/alerts", params=window, headers=auditor(served_gateway)
    )
    assert response.status_code == 200, response.text
    found = response.json()["alerts"]
    [tokens] = [a for a in found if a["kind"] == "token-failures"]
    assert tokens["department"] == "civil-affairs"
    assert tokens["department_name"] == "区民政局"
    assert tokens["numbers"]["failures"] == 6
    assert tokens["numbers"]["reasons"] == {"token:wrong-aud": 6}
    assert "6 request tokens of civil-affairs refused" in tokens["why"]
    [closed_case] = [a for a in found if a["kind"] == "closed-case"]
    assert closed_case["department"] == "service-centre"
    assert closed_case["numbers"]["case"] == case
    assert closed_case["numbers"]["refused"] == 2
    assert dt.datetime.fromisoformat(tokens["window"]["from"]) >= start

    # The same from the command line, straight from the database.
    result = _alerts_cli(served_gateway, "--json", "--from", start.isoformat())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [a["kind"] for a in report["alerts"]] == [a["kind"] for a in found]
    text = _alerts_cli(served_gateway, "--from", start.isoformat(), "--fail-on-alert")
    assert text.returncode == 3
    assert "[token-failures] civil-affairs 区民政局" in text.stdout

    bad = served_gateway.http.get(
        served_gateway.url + "/v1/audit/alerts",
        params={"from": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        headers=auditor(served_gateway),
    )
    assert bad.status_code == 400
