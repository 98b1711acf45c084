"""The security officers' console pages in a real browser: lookups made through the gateway's
client show up in a search filtered by department; an entry's inclusion proof is verified in
the latest signed checkpoint; the charts are inline SVG with bars and department names; "verify
now" and the CSV export (with its BOM) work under the console session; a clerk is refused.
Outcomes read as people read them (a verification's verdict, a refusal's reason); the event
filter filters; at 1280×800 nothing overflows and the case column is in view; the Chinese pages
hold no English words outside codes and ids. On a gateway of its own that checkpoints only
hourly, an entry no checkpoint covers yet says so and when, and failed log-ins and a lock-out
are alerts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from gateway.demo.population import companies
from gateway.sdk import Forbidden
from tests.browser.conftest import (
    AUDITOR,
    AUDITOR_PASSWORD,
    CLERK,
    CLERK_PASSWORD,
    Console,
    add_user,
    log_in,
    shot,
)
from tests.browser.words import english_words
from tests.support import GatewayProcess, running_gateway

QUERY: dict[str, Any] = {
    "resource": "enterprise-registration",
    "fields": ["name", "status"],
    "item": "000201002000",
    "case": "YW-2026-AUDIT-WEB",
    "reason": "审计页面测试",
    "operator": "clerk-aud",
}


def _lookups(console: Console, count: int) -> list[int]:
    with console.gateway.client("service-centre") as client:
        return [
            client.lookup(subject=("uscc", companies()[n].uscc), **QUERY).audit_index
            for n in range(count)
        ]


def test_officer_searches_opens_an_entry_and_sees_charts(
    page: Page, console: Console, tmp_path: Path
) -> None:
    indexes = _lookups(console, 3)
    time.sleep(1.5)  # a checkpoint is signed each second while entries arrive
    log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)
    # an auditor starts on the audit log, and the header links to it
    assert page.url.endswith("/console/audit")
    assert page.get_by_role("link", name="审计日志").count() == 1
    page.goto(console.url + "/audit")
    expect(page.get_by_role("heading", name="审计日志", exact=True)).to_be_visible()

    page.get_by_label("部门", exact=True).fill("service-centre")
    page.get_by_label("办件编号", exact=True).fill("YW-2026-AUDIT-WEB")
    page.get_by_role("button", name="检索").click()
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(3)
    for i in range(3):
        department = rows.nth(i).locator("td").nth(4)
        expect(department).to_have_attribute("data-department", "service-centre")
        expect(department).to_have_text("区政务服务中心")
    shot(page, "20-officer-search-by-department")

    bars = page.locator("svg#chart-1 rect.bar")
    assert bars.count() >= 1
    expect(page.locator("svg#chart-1 > title")).to_have_text("各部门每小时查询次数")
    expect(page.locator("svg#chart-2 circle.dot")).to_have_count(24)
    page.locator("svg#chart-1").scroll_into_view_if_needed()
    shot(page, "21-officer-charts")

    newest = max(indexes)
    page.get_by_role("link", name=f"查看 {newest}").click()
    expect(page.get_by_role("heading", name=f"审计记录 {newest}")).to_be_visible()
    expect(page.locator("#proof-status")).to_have_text("已验证")
    expect(page.locator("#proof-checkpoint")).to_contain_text("根哈希")
    expect(page.locator("#entry-fields")).to_contain_text("YW-2026-AUDIT-WEB")
    expect(page.locator("#leaf")).to_contain_text("service-centre")
    shot(page, "22-officer-entry-proof-verified")

    page.get_by_role("link", name="返回检索").click()
    page.get_by_role("button", name="立即校验").click()
    expect(page.locator("#last-verify")).to_contain_text("通过")
    shot(page, "23-officer-verified-now")

    page.get_by_label("部门", exact=True).fill("service-centre")
    page.get_by_role("button", name="检索").click()
    with page.expect_download() as info:
        page.get_by_role("button", name="导出 CSV").click()
    saved = tmp_path / "export.csv"
    info.value.save_as(saved)
    raw = saved.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfindex,")  # a BOM: spreadsheets read it as UTF-8
    text = raw.decode("utf-8-sig")
    lines = [line for line in text.splitlines()[1:] if line]
    assert len(lines) >= 3
    assert all(",service-centre," in line for line in lines)
    assert (found := english_words(page, also=USERNAME_WORDS)) == [], found


def test_officer_pages_in_english_and_refused_to_a_clerk(page: Page, console: Console) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    page.goto(console.url + "/audit")
    expect(page.get_by_role("alert")).to_contain_text("安全审计员")
    shot(page, "24-clerk-refused-audit")
    page.get_by_role("button", name="退出登录").click()

    log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)
    page.goto(console.url + "/audit?lang=en&subject=uscc:not-valid")
    expect(page.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Please correct the search")
    shot(page, "25-officer-bad-filter-en")


#: Usernames the header shows, split as the word check splits them.
USERNAME_WORDS = frozenset({"officer", "li", "wang", "zhang"})


def test_outcomes_read_as_verdicts_and_reasons(page: Page, console: Console) -> None:
    with console.gateway.client("service-centre") as c, pytest.raises(Forbidden):
        c.lookup(
            subject=("uscc", companies()[5].uscc),
            **{**QUERY, "fields": ["name", "business_scope"], "case": "YW-2026-AUDIT-REF"},
        )
    with console.gateway.client("hrss") as c:
        receipt = c.verify_licence(
            licence="not-a-sealed-licence",
            item="000111001000",
            case="YW-2026-AUDIT-VER",
            reason="核验结论测试",
            operator="hrss-clerk",
        )
    assert receipt.verdict == "malformed"
    log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)

    page.goto(console.url + "/audit?case=YW-2026-AUDIT-VER")
    outcome = page.locator("#results tbody tr td.outcome")
    expect(outcome).to_have_count(1)
    expect(outcome).to_have_text("格式错误，无法识别")
    expect(outcome).to_have_class("outcome outcome-bad")
    expect(page.locator("#results tbody tr td").nth(2)).to_have_text("证照核验：已完成")

    page.goto(console.url + "/audit?case=YW-2026-AUDIT-REF")
    expect(page.locator("#results td.outcome")).to_have_text("拒绝：请求了未授权的字段")
    assert (found := english_words(page, also=USERNAME_WORDS)) == [], found
    shot(page, "26-officer-refusal-in-words")


def test_the_event_filter_works(page: Page, console: Console) -> None:
    log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)
    page.goto(console.url + "/audit")
    event = page.get_by_label("事件", exact=True)
    expect(event).to_have_value("")  # every event until one is chosen
    event.select_option(label="工作台：登录成功")
    page.get_by_role("button", name="检索").click()
    rows = page.locator("#results tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        expect(rows.nth(i)).to_have_attribute("data-event", "console:login:succeeded")
        expect(rows.nth(i).locator("td").nth(2)).to_have_text("工作台：登录成功")
    expect(page.get_by_label("事件", exact=True)).to_have_value("console:login:succeeded")
    shot(page, "27-officer-event-filter")


def test_the_audit_page_fits_1280_pixels(browser: Browser, console: Console) -> None:
    _lookups(console, 2)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    try:
        page = context.new_page()
        log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)
        page.goto(console.url + "/audit?department=service-centre")
        expect(page.locator("#results tbody tr").first).to_be_visible()
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow} px wider than the window"
        table = page.locator("#results").bounding_box()
        case = page.locator("#case-column").bounding_box()
        assert table is not None
        assert case is not None
        assert case["width"] > 40
        assert case["x"] + case["width"] <= 1280
        assert table["x"] + table["width"] <= 1280
        # Nothing inside the table is cut off: no cell is wider than it shows.
        clipped = page.evaluate(
            "() => [...document.querySelectorAll('#results td, #results th')]"
            ".filter(c => c.scrollWidth > c.clientWidth + 1).length"
        )
        assert clipped == 0
        expect(page.locator("#results tbody tr").first.locator("td").nth(7)).to_be_in_viewport()
        shot(page, "28-officer-audit-1280")
    finally:
        context.close()


# --- a quiet gateway of this module's own: one checkpoint an hour -----------------------------

QUIET_CLERK = "clerk-zhang"


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[GatewayProcess]:
    """A gateway that looks for a new checkpoint only hourly: its entries after the start
    stay uncovered; with an officer and a clerk."""
    with running_gateway(
        tmp_path_factory.mktemp("console-quiet"),
        keys_dir,
        server=False,
        env={"GATEWAY_AUDIT_CHECKPOINT_SECONDS": "3600"},
    ) as gw:
        add_user(gw, AUDITOR, AUDITOR_PASSWORD, "--role", "auditor")
        add_user(gw, QUIET_CLERK, CLERK_PASSWORD, "--role", "clerk", "--department", "tax")
        yield gw


def test_an_entry_no_checkpoint_covers_yet_renders(page: Page, quiet: GatewayProcess) -> None:
    log_in(page, quiet.url + "/console", AUDITOR, AUDITOR_PASSWORD)
    page.goto(quiet.url + "/console/audit?event=console:login:succeeded")
    newest = page.locator("#results tbody tr").first.locator("td a")
    index = newest.inner_text()
    newest.click()
    expect(page.get_by_role("heading", name=f"审计记录 {index}")).to_be_visible()
    status = page.locator("#proof-status")
    expect(status).to_contain_text("签名检查点")
    expect(status).to_contain_text("3600 秒")
    expect(page.locator("#field-event")).to_contain_text("工作台：登录成功")
    expect(page.locator("#field-at")).to_have_text(
        re.compile(r"时间（北京时间）\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
    )
    assert (found := english_words(page, also=USERNAME_WORDS)) == [], found
    shot(page, "29-officer-entry-not-yet-covered")


def test_failed_log_ins_and_a_lock_out_show_as_alerts(
    browser: Browser, page: Page, quiet: GatewayProcess
) -> None:
    context = browser.new_context(locale="zh-CN")
    try:
        guesser = context.new_page()
        for _ in range(5):
            log_in(guesser, quiet.url + "/console", QUIET_CLERK, "not-the-password-1")
            expect(guesser.get_by_role("alert")).to_be_visible()
    finally:
        context.close()
    log_in(page, quiet.url + "/console", AUDITOR, AUDITOR_PASSWORD)
    page.goto(quiet.url + "/console/audit#alerts-heading")
    alerts = page.locator("#alerts")
    expect(alerts.locator("tr[data-kind=login-failures]")).to_have_count(1)
    expect(alerts.locator("tr[data-kind=login-failures]")).to_contain_text("工作台连续登录失败")
    expect(alerts.locator("tr[data-kind=login-failures]")).to_contain_text(f"账户 {QUIET_CLERK}")
    expect(alerts.locator("tr[data-kind=account-locked]")).to_contain_text("工作台账户被锁定")
    alerts.scroll_into_view_if_needed()
    assert (found := english_words(page, also=USERNAME_WORDS)) == [], found
    shot(page, "30-officer-login-alerts")
