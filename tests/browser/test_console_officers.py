"""The security officers' console pages in a real browser: lookups made through the gateway's
client show up in a search filtered by department; an entry's inclusion proof is verified in
the latest signed checkpoint; the charts are inline SVG with bars; "verify now" and the CSV
export work under the console session; a clerk is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from gateway.demo.population import companies
from tests.browser.conftest import (
    AUDITOR,
    AUDITOR_PASSWORD,
    CLERK,
    CLERK_PASSWORD,
    Console,
    log_in,
    shot,
)

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
        expect(rows.nth(i).locator("td").nth(4)).to_have_text("service-centre")
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
    text = saved.read_text(encoding="utf-8")
    assert text.startswith("index,")
    lines = [line for line in text.splitlines()[1:] if line]
    assert len(lines) >= 3
    assert all(",service-centre," in line for line in lines)


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
