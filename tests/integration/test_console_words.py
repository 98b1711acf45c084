"""No English on the console's Chinese pages, served in process (real app, real SQLite, real
crypto): every console GET route each role can reach in the demo district (and the pages a
role is refused) — the report pages as whole reports of the log's entries at a signed
checkpoint, tables and charts — the header's signed-in account in words, and a tampered
log's verification problems as Chinese sentences (the verifier's English kept for
``?lang=en``).

The word check is :func:`tests.browser.words.english_words_in_html`, the browser tests' rule
applied to the served HTML.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit.verify import ProblemCode
from gateway.core.policy import DISTRICT_TZ
from gateway.demo.population import companies
from gateway.sdk import Forbidden
from gateway.storage.schema import audit_checkpoints, audit_entries
from tests.browser.words import english_words_in_html
from tests.inprocess import InProcessGateway, in_process_gateway
from tests.support import gateway_command

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

#: One account of each role, with the display name the accounts store holds for it.
ACCOUNTS = {
    "clerk": ("clerk-li", "李娜", "Yiwang-Desk-2026!", ("--department", "service-centre")),
    "auditor": ("officer-li", "李明", "Audit-Desk-2026!", ()),
    "admin": ("admin-wang", "王芳", "Admin-Desk-2026!", ()),
}
#: Usernames are identifiers shown as they are (in ``code`` where a page shows them).
USERNAME_WORDS = frozenset({"li", "wang", "officer"})


def _env(gateway: InProcessGateway) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(gateway.data_dir),
        "GATEWAY_KEYS_DIR": str(gateway.keys_dir),
        "GATEWAY_POLICIES_DIR": gateway.settings.policies_dir,
        "GATEWAY_DATABASE_URL": gateway.database_url,
    }


def _add_accounts(gateway: InProcessGateway, *roles: str) -> None:
    for role in roles:
        username, name, password, extra = ACCOUNTS[role]
        done = gateway_command(
            "users", "add", username, "--role", role, *extra, "--name", name,
            "--password-stdin", "--operator", "admin-t", env=_env(gateway), stdin=password + "\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[InProcessGateway]:
    with in_process_gateway(tmp_path_factory.mktemp("console-words"), keys_dir) as gateway:
        _add_accounts(gateway, *ACCOUNTS)
        # Entries of several kinds in the log: data released, a refusal, a verdict.
        with gateway.client("service-centre") as c:
            for n, fields in enumerate((["name"], ["name", "business_scope"])):
                with contextlib.suppress(Forbidden):  # business_scope is not granted
                    c.lookup(
                        resource="enterprise-registration",
                        subject=("uscc", companies()[0].uscc),
                        fields=fields,
                        item="000201002000",
                        case=f"YW-2026-WORDS-{n}",
                        reason="企业信息核验",
                        operator="clerk-017",
                    )
        with gateway.client("hrss") as c:
            c.verify_licence(
                licence="not-a-sealed-licence",
                item="000111001000",
                case="YW-2026-WORDS-3",
                reason="核验测试",
                operator="hrss-clerk",
            )
        # A signed checkpoint over them: the report pages are full reports, not refusals.
        gateway.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC))
        assert gateway.runtime.transparency.latest() is not None
        yield gateway


def _log_in(gw: InProcessGateway, role: str) -> None:
    username, _, password, _ = ACCOUNTS[role]
    gw.http.cookies.clear()
    token = _CSRF.search(gw.http.get("/console/login").text)
    assert token is not None
    answer = gw.http.post(
        "/console/login",
        data={"csrf_token": token.group(1), "username": username, "password": password},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


def _english(page: str) -> list[str]:
    return english_words_in_html(page, also=USERNAME_WORDS)


def _console_get_routes(gw: InProcessGateway) -> set[str]:
    return {
        route.path
        for route in gw.http.app.routes
        if route.path.startswith("/console") and "GET" in route.methods
    }


def _first(pattern: str, page: str) -> str:
    found = re.search(pattern, page)
    assert found is not None, pattern
    return html.unescape(found.group(1))


def _today() -> str:
    return dt.datetime.now(DISTRICT_TZ).date().isoformat()


def _pages(gw: InProcessGateway, role: str) -> dict[str, list[str]]:
    """The URLs to visit of each console GET route ``role`` can reach (logged in as it)."""
    if role == "clerk":
        return {"/console": ["/console"], "/console/verify": ["/console/verify"],
                "/console/manifest": ["/console/manifest"]}  # fmt: skip
    if role == "auditor":
        return {
            "/console": ["/console"],
            "/console/audit": [
                "/console/audit",
                "/console/audit?decision=refused&event=lookup:record:refused",
                "/console/audit?from=not-a-time",  # the search says what is wrong
            ],
            "/console/audit/entries/{index:int}": [
                *(f"/console/audit/entries/{i}" for i in range(1, gw.audit_count() + 1)),
                "/console/audit/entries/999999",  # no such entry
            ],
            "/console/reports": [
                "/console/reports",  # the current quarter, its figures and charts
                "/console/reports?form=public",
                f"/console/reports?from={_today()}&until={_today()}",
                "/console/reports?quarter=2026Q5",  # a bad quarter: a 400 page
            ],
            "/console/reports/download": ["/console/reports/download?format=pdf"],
        }
    departments = gw.http.get("/console/admin/departments").text
    revoke_key = _first(r'class="revoke-key" href="([^"]+)"', departments)
    seals = gw.http.get("/console/admin/seals").text
    seal = _first(r'name="seal_id" value="([^"]+)"', seals)
    return {
        "/console": ["/console"],
        "/console/admin/departments": ["/console/admin/departments"],
        "/console/admin/departments/revoke-key": [
            revoke_key,
            "/console/admin/departments/revoke-key?department=nobody&kid=none",
        ],
        "/console/admin/seals": ["/console/admin/seals"],
        "/console/admin/seals/confirm": [
            f"/console/admin/seals/confirm?seal_id={seal}&action=suspend&reason=核查",
            f"/console/admin/seals/confirm?seal_id={seal}&action=revoke"
            "&revocation_reason=key-compromise&reason=密钥泄露",
            f"/console/admin/seals/confirm?seal_id={seal}&action=suspend",  # no reason
        ],
        "/console/admin/policy": [
            "/console/admin/policy",
            "/console/admin/policy?consumer=service-centre&resource=enterprise-registration"
            "&item=000201002000&fields=name",
            "/console/admin/policy?consumer=service-centre&resource=enterprise-registration"
            "&item=000201002000&fields=name,business_scope",
        ],
    }


def test_every_console_page_of_every_role_is_chinese(gw: InProcessGateway) -> None:
    reached: set[str] = {"/console/login"}
    gw.http.cookies.clear()
    for url in ("/console/login", "/console/verify", "/console/nowhere"):
        page = gw.http.get(url)
        assert _english(page.text) == [], (url, _english(page.text))
    visits: dict[str, list[str]] = {}
    for role in ACCOUNTS:
        _log_in(gw, role)
        visits[role] = [url for urls in _pages(gw, role).values() for url in urls]
        reached |= set(_pages(gw, role))
        for url in visits[role]:
            page = gw.http.get(url)
            assert page.status_code < 500, url
            assert "<html" in page.text, url
            assert (found := _english(page.text)) == [], (role, url, found)
    # The export's refusal of a bad filter is a page too (the export form posts).
    _log_in(gw, "auditor")
    token = _first(r'name="csrf_token" value="([^"]+)"', gw.http.get("/console/audit").text)
    refused = gw.http.post(
        "/console/audit/export", data={"csrf_token": token, "format": "csv", "until": "soon"}
    )
    assert refused.status_code == 400
    assert (found := _english(refused.text)) == [], found
    # A page of another role: the refusal is Chinese too.
    for role in ACCOUNTS:
        _log_in(gw, role)
        for other, urls in visits.items():
            if other != role:
                page = gw.http.get(urls[-1])
                assert (found := _english(page.text)) == [], (role, urls[-1], found)
    # The report pages swept were whole reports of this gateway's entries, not refusals.
    _log_in(gw, "auditor")
    for url in ("/console/reports", "/console/reports?form=public"):
        page = gw.http.get(url)
        assert page.status_code == 200, (url, page.text[:300])
        for part in ('id="report-sheet"', 'id="report-summary"', "<svg", 'class="bar"',
                     'id="report-table-departments"'):  # fmt: skip
            assert part in page.text, (url, part)
    # A new console page joins the sweep, or this fails.
    assert _console_get_routes(gw) <= reached, _console_get_routes(gw) - reached


def test_the_sweep_finds_english_where_there_is_some(gw: InProcessGateway) -> None:
    _log_in(gw, "auditor")
    english = gw.http.get("/console/audit?lang=en").text
    assert "Search" in _english(english)
    assert gw.http.get("/console/audit?lang=zh").status_code == 200  # back to Chinese


@pytest.mark.parametrize(
    ("role", "zh", "en"),
    [
        ("auditor", "当前用户：李明（安全审计员）", "Signed in as 李明 (Security officer)"),
        ("admin", "当前用户：王芳（管理员）", "Signed in as 王芳 (Administrator)"),
        (
            "clerk",
            "当前用户：李娜（区政务服务中心 窗口工作人员）",
            "Signed in as 李娜 (Clerk, 区政务服务中心)",
        ),
    ],
)
def test_the_header_names_the_account_and_its_role(
    gw: InProcessGateway, role: str, zh: str, en: str
) -> None:
    _log_in(gw, role)
    home = gw.http.get("/console", follow_redirects=False).headers["location"]
    assert _signed_in(gw.http.get(home, params={"lang": "zh"}).text) == zh
    assert _signed_in(gw.http.get(home, params={"lang": "en"}).text) == en
    gw.http.get("/console/login?lang=zh")


def _signed_in(page: str) -> str:
    return html.unescape(_first(r'<span id="signed-in">([^<]*)</span>', page))


def _problems(page: str) -> list[str]:
    body = page.split('<ul id="verify-problems">', 1)[1].split("</ul>", 1)[0]
    return [html.unescape(li).strip() for li in re.findall(r"<li>(.*?)</li>", body, flags=re.S)]


def test_a_tampered_logs_problems_read_in_chinese(tmp_path: Path, keys_dir: Path) -> None:
    with in_process_gateway(tmp_path, keys_dir, audit_checkpoint_seconds=3600) as gw:
        _add_accounts(gw, "auditor")
        for _ in range(3):  # entries: the account added, the log-ins
            _log_in(gw, "auditor")
        assert gw.runtime.transparency.make_checkpoint(dt.datetime.now(dt.UTC)) is not None
        size = gw.audit_count()
        assert size >= 3
        engine = sa.create_engine(gw.database_url)
        with engine.begin() as conn:  # a forger at work, as in tests/unit/test_audit_tamper.py
            e, c = audit_entries.c, audit_checkpoints.c
            conn.execute(audit_entries.update().where(e.idx == 1).values(detail="forged"))
            conn.execute(audit_entries.delete().where(e.idx == 2))
            conn.execute(audit_entries.delete().where(e.idx == size))
            conn.execute(audit_checkpoints.update().where(c.size == size).values(root="00" * 32))
        engine.dispose()

        page = gw.http.get("/console/audit")
        token = _first(r'name="csrf_token" value="([^"]+)"', page.text)
        verified = gw.http.post("/console/audit/verify", data={"csrf_token": token})
        assert verified.status_code == 200  # the 303 back to the page, followed
        found = gw.runtime.integrity.last_verification
        assert found is not None
        codes = {p["code"] for p in found["problems"]}
        assert {
            ProblemCode.ENTRY_DIFFERS,
            ProblemCode.ENTRIES_MISSING,
            ProblemCode.LOG_SHORTER_THAN_TREE,
            ProblemCode.CHECKPOINT_CLAIMS,
        } <= codes
        chinese = _problems(verified.text)
        assert "第 1 条记录与写入时的叶子不一致（记录已被改动）。" in chinese
        assert "第 2 条记录缺失（可能被删除）。" in chinese
        assert f"覆盖 {size} 条记录的检查点，其签名内容与存储的检查点不一致。" in chinese
        assert (words := _english(verified.text)) == [], words

        english = _problems(gw.http.get("/console/audit?lang=en").text)
        assert "entry 1 differs from the leaf written with it" in english
        assert "entries 2..2 are missing (deleted?)" in english
        assert len(english) == len(chinese)
