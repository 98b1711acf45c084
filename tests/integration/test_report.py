"""The once-only report on a synthetic quarter made through the real API (in process: real
app, real SQLite, real crypto): several departments, items, verdicts and refusals. The
expected counts are tallied here from what was sent and what came back — never by the
report's code — and the report, its public form, CSV and XLSX must show them; ``gateway
report verify`` must accept the published report and refuse an edited figure or entry — at an
SM2-signed checkpoint too. ``gateway init && gateway demo --history && gateway report quarter``
works with no gateway running (the demo signs the checkpoint)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.core.jose import parse_compact
from gateway.core.policy import DISTRICT_TZ
from gateway.demo.licences import _entries as demo_licence_entries
from gateway.demo.licences import demo_cases
from gateway.demo.population import companies, people
from gateway.sdk import GatewayProblem
from tests.inprocess import InProcessGateway, console_log_in, in_process_gateway
from tests.support import ROOT, gateway_command

OFFICER, OFFICER_PASSWORD = "officer-qian", "Audit-Desk-2026!"
ADMIN, ADMIN_PASSWORD = "admin-li", "Admin-Desk-2026!"


def _quarter_now() -> str:
    today = dt.datetime.now(DISTRICT_TZ).date()
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


@dataclass
class Tally:
    """What the test expects, tallied from what it did."""

    released: Counter[str] = field(default_factory=Counter)  # by department
    released_items: Counter[str] = field(default_factory=Counter)
    not_found: Counter[str] = field(default_factory=Counter)
    verdicts: dict[str, Counter[str]] = field(default_factory=dict)  # department -> verdicts
    manifests: Counter[str] = field(default_factory=Counter)
    available: Counter[str] = field(default_factory=Counter)
    bring: Counter[str] = field(default_factory=Counter)
    refusals: dict[str, Counter[str]] = field(default_factory=dict)  # department -> reasons
    saved: dict[str, set[tuple[str, str, str]]] = field(
        default_factory=dict
    )  # dept -> (case, res, subj)
    saved_items: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    applicants: dict[str, set[str]] = field(default_factory=dict)  # dept -> plain subject ids
    manifest_cases: set[tuple[str, str, str]] = field(default_factory=set)
    candidates: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    plain_ids: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)


@dataclass
class Quarter:
    gw: InProcessGateway
    env: dict[str, str]
    tally: Tally
    dir: Path


def _env(gw: InProcessGateway) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(gw.data_dir),
        "GATEWAY_KEYS_DIR": str(gw.keys_dir),
        "GATEWAY_POLICIES_DIR": gw.settings.policies_dir,
        "GATEWAY_DATABASE_URL": gw.database_url,
    }


def _generate(gw: InProcessGateway, t: Tally) -> None:
    live = [c for c in companies() if c.status == "存续"]
    persons = people()
    cases = demo_cases(gw.runtime.policy.current.departments)
    holders = {e.case: e.holder for e in demo_licence_entries() if e.case is not None}

    def served(dept: str, subject: str) -> None:
        t.applicants.setdefault(dept, set()).add(subject)
        t.plain_ids.add(subject)

    def manifest(dept: str, item: str, case: str, subject: tuple[str, str]) -> None:
        with gw.client(dept) as c:
            answer = c.manifest(item=item, case=case, reason="一次性告知", operator="clerk-r",
                                applicant=subject)  # fmt: skip
        summary = answer.claims["summary"]
        t.manifests[dept] += 1
        t.available[dept] += summary["available"]
        t.bring[dept] += summary["bring"]
        t.manifest_cases.add((dept, item, case))
        t.cases.add(case)
        served(dept, subject[1])

    def lookup(dept: str, resource: str, subject: tuple[str, str], fields: list[str],
               item: str, case: str) -> None:  # fmt: skip
        t.cases.add(case)
        try:
            with gw.client(dept) as c:
                c.lookup(resource=resource, subject=subject, fields=fields, item=item, case=case,
                         reason="核验", operator="clerk-r")  # fmt: skip
        except GatewayProblem as exc:
            if exc.status == 404:
                t.not_found[dept] += 1
                served(dept, subject[1])
                return
            reason = exc.reason
            assert reason is not None
            t.refusals.setdefault(dept, Counter())[reason] += 1
            return
        t.released[dept] += 1
        t.released_items[item] += 1
        served(dept, subject[1])
        t.candidates.append((dept, item, case, resource, subject[1]))

    def verify(dept: str, name: str, item: str, case: str) -> None:
        t.cases.add(case)
        with gw.client(dept) as c:
            receipt = c.verify_licence(licence_id=cases[name].licence_id, item=item, case=case,
                                       reason="核验证照", operator="clerk-r")  # fmt: skip
        verdict = str(receipt.verdict)
        t.verdicts.setdefault(dept, Counter())[verdict] += 1
        holder = holders[name]
        subject = getattr(holder, "uscc", None) or holder.id_number  # type: ignore[union-attr]
        served(dept, subject)
        if verdict == "valid":
            t.candidates.append((dept, item, case, "licence", subject))

    change, food, retire = "000201002000", "000201004000", "000111003000"
    # 区政务服务中心: manifests, then the materials they name read online, several times.
    for n, company in enumerate(live[:7]):
        case = f"RPT-C-{n}"
        manifest("service-centre", change, case, ("uscc", company.uscc))
        lookup("service-centre", "enterprise-registration", ("uscc", company.uscc),
               ["name", "status"], change, case)  # fmt: skip
        if n % 3 == 0:  # looked up again in the same case: still one material saved
            lookup("service-centre", "enterprise-registration", ("uscc", company.uscc),
                   ["name"], change, case)  # fmt: skip
    # Lookups with no manifest in their case: released, but no material counted as saved.
    for n, company in enumerate(live[7:10]):
        lookup("service-centre", "enterprise-registration", ("uscc", company.uscc), ["name"],
               food, f"RPT-F-{n}")  # fmt: skip
    # Verifications in a manifest's case (valid saves a material) and others.
    verify("service-centre", "business-licence", change, "RPT-C-0")
    verify("service-centre", "revoked", change, "RPT-C-1")
    verify("service-centre", "expired", change, "RPT-V-2")
    verify("service-centre", "business-licence", change, "RPT-V-3")
    # 区人社局: retirement applications (identity read online).
    for n, person in enumerate(persons[:6]):
        case = f"RPT-H-{n}"
        if n < 4:
            manifest("hrss", retire, case, ("resident-id", person.id_number))
        lookup("hrss", "resident-identity", ("resident-id", person.id_number), ["name"],
               retire, case)  # fmt: skip
    # Refusals: an item the grant does not cover; a resource never shared.
    for n in range(3):
        lookup("service-centre", "enterprise-registration", ("uscc", live[n].uscc), ["name"],
               "000111002000", f"RPT-X-{n}")  # fmt: skip
    lookup("hrss", "criminal-record", ("resident-id", persons[0].id_number), ["has_record"],
           retire, "RPT-X-9")  # fmt: skip
    # Not found: a well-formed resident ID no one holds.
    from gateway.core.identifiers import resident_id_check_character

    body = "43060219900101999"
    lookup("hrss", "resident-identity", ("resident-id", body + resident_id_check_character(body)),
           ["name"], retire, "RPT-H-9")  # fmt: skip
    # Materials saved: distinct (case, resource, subject) whose case had a manifest.
    for dept, item, case, resource, subject in t.candidates:
        if (dept, item, case) in t.manifest_cases:
            t.saved.setdefault(dept, set()).add((case, resource, subject))
            t.saved_items.setdefault(item, set()).add((case, resource, subject))


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Quarter]:
    root = tmp_path_factory.mktemp("report")
    with in_process_gateway(root / "gw", keys_dir, audit_checkpoint_seconds=3600) as gw:
        tally = Tally()
        _generate(gw, tally)
        env = _env(gw)
        for username, password, role in (
            (OFFICER, OFFICER_PASSWORD, "auditor"),
            (ADMIN, ADMIN_PASSWORD, "admin"),
        ):
            done = gateway_command(
                "users", "add", username, "--role", role, "--password-stdin",
                "--operator", "admin-t", env=env, stdin=password + "\n",
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        assert gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC)) is not None
        yield Quarter(gw, env, tally, root)


def _report(q: Quarter, *extra: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    full, public = q.dir / "report.json", q.dir / "public.json"
    done = gateway_command(
        "report", "quarter", _quarter_now(), "--json", str(full), "--public", str(public),
        "--csv", str(q.dir / "report.csv"), "--xlsx", str(q.dir / "report.xlsx"), *extra,
        env=q.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(full.read_text()), json.loads(public.read_text()), done.stdout


def _department(doc: dict[str, Any], dept: str) -> dict[str, Any]:
    (row,) = [r for r in doc["figures"]["departments"] if r["department"] == dept]
    counts: dict[str, Any] = row["counts"]
    return counts


def test_the_quarter_report_shows_the_counts_tallied_by_the_test(quarter: Quarter) -> None:
    doc, _public, out = _report(quarter)
    t = quarter.tally
    for dept in ("service-centre", "hrss"):
        counts = _department(doc, dept)
        assert counts["lookups_released"] == t.released[dept], dept
        assert counts["lookups_not_found"] == t.not_found[dept], dept
        assert counts["verdicts"] == dict(t.verdicts.get(dept, {})), dept
        assert counts["verifications"] == sum(t.verdicts.get(dept, Counter()).values())
        assert counts["manifests"] == t.manifests[dept], dept
        assert counts["materials_available"] == t.available[dept], dept
        assert counts["materials_to_bring"] == t.bring[dept], dept
        assert counts["refusal_reasons"] == dict(t.refusals.get(dept, {})), dept
        assert counts["refusals"] == sum(t.refusals.get(dept, Counter()).values())
        assert counts["materials_saved"] == len(t.saved.get(dept, ())), dept
        assert counts["applicants"] == len(t.applicants[dept]), dept
    totals = doc["figures"]["totals"]
    assert totals["lookups_released"] == sum(t.released.values())
    assert totals["materials_saved"] == sum(len(s) for s in t.saved.values())
    assert totals["applicants"] == len(set().union(*t.applicants.values()))
    items = {r["item"]: r["counts"] for r in doc["figures"]["items"]}
    for item, n in t.released_items.items():
        assert items[item]["lookups_released"] == n
    expected_top = sorted(((-len(s), i) for i, s in t.saved_items.items()))
    assert [(x["item"], x["materials_saved"]) for x in doc["figures"]["top_items"]] == [
        (i, -n) for n, i in expected_top
    ]
    providers = {p["resource"]: p for p in doc["figures"]["providers"]}
    assert providers["enterprise-registration"]["provider"] == "market"
    assert providers["enterprise-registration"]["released"] == t.released["service-centre"]
    assert providers["resident-identity"]["not_found"] == t.not_found["hrss"]
    # The previous quarter is empty in this fresh district: every change is from zero.
    assert all(c["before"] == 0 and c["percent"] is None for c in doc["change"])
    # The report rests on a signed checkpoint, named in what the command prints.
    checkpoint = doc["checkpoint"]
    assert checkpoint["size"] >= quarter.gw.audit_count() - 2
    assert f"size {checkpoint['size']} root {checkpoint['root']}" in out
    assert "免提交材料" in out


def test_the_public_form_has_no_personal_data_and_suppresses_small_cells(
    quarter: Quarter,
) -> None:
    doc, public, _ = _report(quarter)
    text = json.dumps(public, ensure_ascii=False)
    rows = quarter.gw.audit_rows()
    secrets = {r["subject_hmac"] for r in rows if r["subject_hmac"]}
    secrets |= {r["request_id"] for r in rows if r["request_id"]}
    secrets |= quarter.tally.plain_ids | quarter.tally.cases
    assert secrets
    assert not [s for s in secrets if s in text]
    assert public["form"] == "public"
    assert public["threshold"] == 5
    hrss_full, hrss_public = _department(doc, "hrss"), _department(public, "hrss")
    # hrss: 1 not-found lookup and 1 refusal: below 5, shown as "<5".
    assert hrss_full["lookups_not_found"] == 1
    assert hrss_public["lookups_not_found"] == "<5"
    assert hrss_public["refusal_reasons"] == dict.fromkeys(hrss_full["refusal_reasons"], "<5")

    # Every count in the public form is a number >= 5, zero, or "<5".
    def cells(value: Any) -> Iterator[Any]:
        if isinstance(value, dict):
            for v in value.values():
                yield from cells(v)
        elif isinstance(value, list):
            for v in value:
                yield from cells(v)
        else:
            yield value

    for row in public["figures"]["departments"] + public["figures"]["items"]:
        for value in cells(row["counts"]):
            assert value == "<5" or value == 0 or value >= 5
    # No group with a published total has exactly one hidden cell.
    for row in [public["figures"]["totals"]] + [
        r["counts"] for r in public["figures"]["departments"] + public["figures"]["items"]
    ]:
        for group, total in (("verdicts", "verifications"), ("refusal_reasons", "refusals")):
            hidden = [v for v in [*row[group].values(), row[total]] if v == "<5"]
            assert len(hidden) != 1, row


def test_csv_has_a_bom_and_xlsx_the_same_tables(quarter: Quarter) -> None:
    _report(quarter)
    raw = (quarter.dir / "report.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert "各部门情况" in text
    assert "区政务服务中心" in text
    assert "免提交材料" in text
    with zipfile.ZipFile(io.BytesIO((quarter.dir / "report.xlsx").read_bytes())) as z:
        names = set(z.namelist())
        assert {"[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet3.xml"} <= names
        workbook = z.read("xl/workbook.xml").decode()
        departments = z.read("xl/worksheets/sheet3.xml").decode()
    assert "各部门情况" in workbook
    assert "区政务服务中心" in departments


def test_report_verify_accepts_the_report_and_catches_an_edited_figure(
    quarter: Quarter,
) -> None:
    doc, _public, _ = _report(quarter)
    for name in ("report.json", "public.json"):
        done = gateway_command("report", "verify", str(quarter.dir / name), env=quarter.env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK")
    edited = json.loads(json.dumps(doc))
    _department(edited, "hrss")["lookups_released"] += 1
    path = quarter.dir / "edited.json"
    path.write_text(json.dumps(edited, ensure_ascii=False), encoding="utf-8")
    done = gateway_command("report", "verify", str(path), env=quarter.env)
    assert done.returncode == 1
    assert "figures.departments[hrss].counts.lookups_released: published" in done.stdout


def test_report_verify_catches_an_edited_entry(quarter: Quarter) -> None:
    _report(quarter)
    rows = quarter.gw.audit_rows("event = 'lookup:record:released'")
    index, original = rows[0]["idx"], rows[0]["department"]
    engine = sa.create_engine(quarter.gw.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_entries SET department = 'tax' WHERE idx = :i"),
                         {"i": index})  # fmt: skip
        done = gateway_command(
            "report", "verify", str(quarter.dir / "report.json"), env=quarter.env
        )
        assert done.returncode == 1, done.stdout
        assert f"FIRST ENTRY THAT DIFFERS: {index}" in done.stdout
        assert "no longer give the signed root" in done.stdout
        # Nor is a new report computed from entries that no longer give the signed root.
        again = gateway_command("report", "quarter", _quarter_now(), env=quarter.env)
        assert again.returncode == 1
        assert f"entry {index} differs" in again.stderr
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_entries SET department = :d WHERE idx = :i"),
                         {"d": original, "i": index})  # fmt: skip
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("quarter", "2026Q5"), "YYYYQn"),
        (("quarter", "Q4-2026"), "YYYYQn"),
        (("quarter", "1899Q1"), "2000..2099"),
        (("range", "2026-12-01", "2026-10-01"), "must not be before"),
        (("range", "2000-01-01", "2099-12-31"), "at most 366 days"),
        (("range", "2026-13-01", "2026-12-31"), "YYYY-MM-DD"),
        (("quarter", "2026Q4", "--size", "0"), "0"),
    ],
)
def test_bad_periods_are_clear_cli_errors(
    quarter: Quarter, args: tuple[str, ...], words: str
) -> None:
    done = gateway_command("report", *args, env=quarter.env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_verify_refuses_what_is_not_a_report(quarter: Quarter) -> None:
    path = quarter.dir / "nonsense.json"
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    done = gateway_command("report", "verify", str(path), env=quarter.env)
    assert done.returncode == 1
    assert "not a report" in done.stdout


def _log_in(gw: InProcessGateway, username: str, password: str) -> None:
    assert console_log_in(gw, username, password) == 303


@pytest.mark.parametrize(
    ("user", "password"), [(OFFICER, OFFICER_PASSWORD), (ADMIN, ADMIN_PASSWORD)]
)
def test_the_console_page_is_a_printable_notice(quarter: Quarter, user: str, password: str) -> None:
    _log_in(quarter.gw, user, password)
    page = quarter.gw.http.get("/console/reports", params={"quarter": _quarter_now()})
    assert page.status_code == 200
    text = page.text
    for part in ("数据共享“免提交”工作情况通报", "期间", "发布单位", "摘要", "@media print",
                 "<svg", "各部门情况"):  # fmt: skip
        assert part in text, part
    checkpoint = quarter.gw.runtime.transparency.latest()
    assert checkpoint is not None
    assert checkpoint.root in text
    saved = sum(len(s) for s in quarter.tally.saved.values())
    assert f"免于提交材料 {saved} 件" in text
    public = quarter.gw.http.get(
        "/console/reports", params={"quarter": _quarter_now(), "form": "public"}
    )
    assert "&lt;5" in public.text
    download = quarter.gw.http.get(
        "/console/reports/download", params={"quarter": _quarter_now(), "format": "csv"}
    )
    assert download.status_code == 200
    assert download.content.startswith(b"\xef\xbb\xbf")
    as_json = quarter.gw.http.get(
        "/console/reports/download", params={"quarter": _quarter_now(), "format": "public-json"}
    ).json()
    assert as_json["form"] == "public"


@pytest.mark.parametrize(
    "params",
    [
        {"quarter": "2026Q5"},
        {"quarter": "x" * 60},
        {"from": "2026-12-01", "until": "2026-10-01"},
        {"from": "2000-01-01", "until": "2099-12-31"},
        {"from": "2026-10-01"},
        {"quarter": "2026Q4", "form": "secret"},
    ],
)
def test_bad_periods_on_the_console_are_400_pages(quarter: Quarter, params: dict[str, str]) -> None:
    _log_in(quarter.gw, OFFICER, OFFICER_PASSWORD)
    page = quarter.gw.http.get("/console/reports", params=params)
    assert page.status_code == 400, page.text[:300]
    if "form" not in params:  # the download's format names its form
        download = quarter.gw.http.get(
            "/console/reports/download", params={**params, "format": "csv"}
        )
        assert download.status_code == 400
    bad_format = quarter.gw.http.get(
        "/console/reports/download", params={"quarter": "2026Q4", "format": "pdf"}
    )
    assert bad_format.status_code == 400


def test_clerks_and_strangers_may_not_read_the_report(quarter: Quarter) -> None:
    quarter.gw.http.cookies.clear()
    away = quarter.gw.http.get("/console/reports", follow_redirects=False)
    assert away.status_code == 303


def _alg(token: str) -> str:
    return parse_compact(token, allowed_members={"alg", "kid", "typ"}).header.alg


@pytest.mark.parametrize("algorithm", ["ES256", "SM2"])
def test_init_then_demo_history_gives_a_full_report_with_no_gateway_running(
    tmp_path: Path, keys_dir: Path, algorithm: str
) -> None:
    """`gateway init && gateway demo --history && gateway report quarter` with no server: the
    history is covered by the checkpoint the demo signs, with the gateway's key of the answer
    algorithm."""
    shutil.copytree(keys_dir, tmp_path / "keys")
    env = {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_KEYS_DIR": str(tmp_path / "keys"),
        "GATEWAY_POLICIES_DIR": str(ROOT / "policies"),
        "GATEWAY_ANSWER_ALGORITHM": algorithm,
    }
    init = gateway_command("init", env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    done = gateway_command("demo", "--history", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    written = int(re.search(r"written: (\d+) audit entries", done.stdout)[1])  # type: ignore[index]
    signed = re.search(r"signed checkpoint: size (\d+) root ([0-9a-f]{64})", done.stdout)
    assert signed is not None, done.stdout
    database = f"sqlite:///{tmp_path / 'data' / 'gateway.sqlite3'}"
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            history = conn.execute(
                sa.text("SELECT count(*) FROM audit_entries WHERE operator = 'demo-history'")
            ).scalar_one()
            size = conn.execute(sa.text("SELECT max(idx) FROM audit_entries")).scalar_one()
    finally:
        engine.dispose()
    assert written == history > 0
    assert int(signed[1]) == size  # the whole log, the history with it
    again = gateway_command("demo", "--history", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already written" in again.stdout
    assert "signed checkpoint" not in again.stdout  # the tree did not grow

    path = tmp_path / "report.json"
    made = gateway_command("report", "quarter", _quarter_now(), "--json", str(path), env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"size {size} root {signed[2]}" in made.stdout
    doc = json.loads(path.read_text())
    assert (doc["checkpoint"]["size"], doc["checkpoint"]["root"]) == (size, signed[2])
    assert _alg(doc["checkpoint"]["token"]) == algorithm
    change = {c["name"]: c for c in doc["change"]}
    assert change["lookups_released"]["now"] > 0
    assert change["lookups_released"]["before"] > 0
    assert change["materials_saved"]["now"] > 0
    assert doc["figures"]["top_items"]
    # The clerks verified licences online too: mostly valid, some not.
    assert change["verifications"]["now"] > 0
    verdicts = doc["figures"]["totals"]["verdicts"]
    assert verdicts["valid"] > sum(v for k, v in verdicts.items() if k != "valid") > 0
    ok = gateway_command("report", "verify", str(path), env=env)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.startswith("OK")


def test_a_report_at_an_sm2_checkpoint_verifies_and_catches_an_edited_entry(
    tmp_path: Path, keys_dir: Path
) -> None:
    """A gateway that signs with SM2 (``GATEWAY_ANSWER_ALGORITHM=SM2``): the report of a quarter
    made through the API rests on an SM2 checkpoint, `report verify` accepts it (full and
    public form) and names the first entry changed after it was computed."""
    with in_process_gateway(
        tmp_path / "gw", keys_dir, audit_checkpoint_seconds=3600, answer_algorithm="SM2"
    ) as gw:
        tally = Tally()
        _generate(gw, tally)
        checkpoint = gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC))
        assert checkpoint is not None
        assert _alg(checkpoint.token) == "SM2"
        q = Quarter(gw, {**_env(gw), "GATEWAY_ANSWER_ALGORITHM": "SM2"}, tally, tmp_path)
        doc, public, out = _report(q)
        assert doc["checkpoint"]["token"] == checkpoint.token
        assert f"size {checkpoint.size} root {checkpoint.root}" in out
        assert _department(doc, "hrss")["lookups_released"] == tally.released["hrss"]
        assert public["checkpoint"]["token"] == checkpoint.token
        for name in ("report.json", "public.json"):
            done = gateway_command("report", "verify", str(tmp_path / name), env=q.env)
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.startswith("OK")
        rows = gw.audit_rows("event = 'lookup:record:released' AND department = 'hrss'")
        index = rows[-1]["idx"]
        engine = sa.create_engine(gw.database_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE audit_entries SET department = 'tax' WHERE idx = :i"),
                    {"i": index},
                )
        finally:
            engine.dispose()
        for name in ("report.json", "public.json"):
            done = gateway_command("report", "verify", str(tmp_path / name), env=q.env)
            assert done.returncode == 1, done.stdout
            assert f"FIRST ENTRY THAT DIFFERS: {index}" in done.stdout
            assert "no longer give the signed root" in done.stdout
