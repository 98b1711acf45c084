"""The quarterly once-only report (按季度通报) in a real browser, on a gateway of this module's
own (``gateway serve``) that checkpoints only hourly, so that the checkpoint the page rests on
is the one the test reads: lookups and a manifest made through the gateway's API, a quarter
and a half of history from ``gateway demo --history`` (which signs the checkpoint over them).

A security officer and an administrator see the 通报 of the current quarter: its title, 期间,
发布单位, 摘要, the tables with rows, the two SVG charts with bars, the figures ``gateway report
quarter`` computes, and the size and root of the signed checkpoint ``GET /v1/audit/checkpoint``
serves (its signature checked with the gateway's JWKS); the page holds no English words. In
print media the navigation and the print hint are hidden and the sheet shown; Chromium prints
it on A4, the size the page's own CSS asks for. A clerk is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from gateway.core.keyring import verify_gateway_jws
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import TokenType
from gateway.demo.population import companies
from tests.browser.conftest import SCREENSHOTS, add_user, log_in, shot
from tests.browser.words import english_words
from tests.support import ROOT, GatewayProcess, gateway_command, running_gateway

OFFICER, OFFICER_PASSWORD = "officer-zhou", "Audit-Desk-2026!"
ADMIN, ADMIN_PASSWORD = "admin-sun", "Admin-Desk-2026!"
CLERK, CLERK_PASSWORD = "clerk-wu", "Yiwang-Desk-2026!"
TITLE = "数据共享“免提交”工作情况通报"
TABLES = ("summary", "departments", "items", "verdicts", "refusals", "top_items", "providers")


def _quarter() -> str:
    today = dt.datetime.now(DISTRICT_TZ).date()
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


def _gateway_run(gw: GatewayProcess, *args: str) -> str:
    """``gateway ARGS`` in a process of its own, with this gateway's settings."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.app", *args],
        cwd=ROOT,
        env=gw.environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def reporting(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[GatewayProcess]:
    """A gateway with today's service made through its API and the demo's history, covered by
    the checkpoint ``demo --history`` signs; an officer, an administrator and a clerk."""
    with running_gateway(
        tmp_path_factory.mktemp("console-report"),
        keys_dir,
        server=False,
        env={"GATEWAY_AUDIT_CHECKPOINT_SECONDS": "3600"},
    ) as gw:
        # With their names, as an administrator adds people: the header names them in Chinese.
        add_user(gw, OFFICER, OFFICER_PASSWORD, "--role", "auditor", "--name", "周敏")
        add_user(gw, ADMIN, ADMIN_PASSWORD, "--role", "admin", "--name", "孙磊")
        add_user(gw, CLERK, CLERK_PASSWORD, "--role", "clerk", "--department", "service-centre",
                 "--name", "吴芳")  # fmt: skip
        with gw.client("service-centre") as client:
            for n, company in enumerate(companies()[:3]):
                case = f"RPT-WEB-{n}"
                subject = ("uscc", company.uscc)
                client.manifest(item="000201002000", case=case, reason="季度通报测试",
                                operator="clerk-web", applicant=subject)  # fmt: skip
                client.lookup(resource="enterprise-registration", fields=["name", "status"],
                              subject=subject, item="000201002000", case=case,
                              reason="季度通报测试", operator="clerk-web")  # fmt: skip
        out = _gateway_run(gw, "demo", "--history")
        assert "signed checkpoint: size" in out, out
        yield gw


@pytest.fixture
def report_page(browser: Browser, reporting: GatewayProcess) -> Iterator[Page]:
    """A fresh browser context (no cookies) at tablet width, for one test."""
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def _signed_checkpoint(gw: GatewayProcess) -> dict[str, Any]:
    """The claims of the checkpoint the gateway serves, its signature checked with its JWKS."""
    token = gw.http.get("/v1/audit/checkpoint").raise_for_status().text.strip()
    jwks = gw.http.get("/.well-known/jwks.json").raise_for_status().json()
    _, claims = verify_gateway_jws(token, jwks=jwks, typ=TokenType.AUDIT_CHECKPOINT)
    return claims


def _computed(gw: GatewayProcess, tmp_path: Path) -> dict[str, Any]:
    """The report `gateway report quarter` computes from the same log."""
    path = tmp_path / "report.json"
    env = {k: v for k, v in gw.environment().items() if k.startswith("GATEWAY_")}
    done = gateway_command("report", "quarter", _quarter(), "--json", str(path), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _open_report(page: Page, gw: GatewayProcess, username: str, password: str) -> None:
    log_in(page, gw.url + "/console", username, password)
    answer = page.goto(f"{gw.url}/console/reports?quarter={_quarter()}")
    assert answer is not None
    assert answer.status == 200


def _the_notice_is_whole(page: Page, gw: GatewayProcess, tmp_path: Path) -> None:
    """Title, 期间, 发布单位, 摘要, tables with rows, charts with bars, the figures of the log
    and the signed checkpoint."""
    expect(page.get_by_role("heading", name=TITLE, exact=True)).to_be_visible()
    sheet = page.locator("#report-sheet")
    for term in ("期间", "发布单位", "发布日期"):
        expect(sheet.locator("dt", has_text=term)).to_have_count(1)
    quarter = _quarter()
    year, q = int(quarter[:4]), int(quarter[-1])
    first = dt.date(year, 3 * q - 2, 1)
    expect(page.locator("#report-period")).to_contain_text(f"{first.isoformat()} 至 ")
    expect(page.locator("#report-office")).to_have_text("区政务服务管理办公室")
    expect(sheet.get_by_role("heading", name="摘要", exact=True)).to_be_visible()
    # Every id of the page is its own (the summary and the first table were both
    # "report-summary").
    ids = page.eval_on_selector_all("[id]", "els => els.map(e => e.id)")
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for key in TABLES:
        rows = page.locator(f"table#report-table-{key} tbody tr")
        assert rows.count() >= 1, key
        expect(rows.first).not_to_have_text("本期无数据")
    # Two charts drawn on the server as inline SVG, each with its bars and its title.
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(2)
    for n in range(2):
        assert charts.nth(n).locator("rect.bar").count() >= 1
        assert (charts.nth(n).locator("> title").text_content() or "").strip()

    doc = _computed(gw, tmp_path)
    totals = doc["figures"]["totals"]
    assert totals["lookups_released"] > 0
    assert totals["materials_saved"] > 0
    summary = page.locator("#report-summary")
    expect(summary).to_contain_text(f"共享查询 {totals['lookups_released']} 次")
    expect(summary).to_contain_text(f"出具一次性告知清单 {totals['manifests']} 份")
    expect(summary).to_contain_text(f"免于提交材料 {totals['materials_saved']} 件")
    expect(summary).to_contain_text("与上期")  # the history's previous quarter

    claims = _signed_checkpoint(gw)
    expect(page.locator("#report-size")).to_have_text(str(claims["size"]))
    expect(page.locator("#report-root")).to_have_text(claims["root"])
    assert (doc["checkpoint"]["size"], doc["checkpoint"]["root"]) == (
        claims["size"],
        claims["root"],
    )
    assert english_words(page) == []


def test_an_officer_sees_the_notice_prints_it_on_a4(
    report_page: Page, reporting: GatewayProcess, tmp_path: Path
) -> None:
    page = report_page
    _open_report(page, reporting, OFFICER, OFFICER_PASSWORD)
    _the_notice_is_whole(page, reporting, tmp_path)
    expect(page.locator("header nav")).to_be_visible()
    expect(page.locator("#print-hint")).to_be_visible()
    shot(page, "60-report-officer")

    page.emulate_media(media="print")
    expect(page.locator("header")).to_be_hidden()
    expect(page.locator("header nav")).to_be_hidden()
    expect(page.locator("#print-hint")).to_be_hidden()
    expect(page.locator("form.period")).to_be_hidden()
    expect(page.locator("#report-sheet")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    shot(page, "61-report-print")
    # The first page of the printout, as the README shows it (docs/screenshots/).
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "62-report-print-first-page.png"))
    # Printed by Chromium at the size the page's CSS asks for (@page { size: A4 }): A4 is
    # 210 × 297 mm, 595.3 × 841.9 PDF points (Letter, the default, would be 612 × 792).
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    assert pdf.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert boxes, "no page in the PDF"
    for width, height in boxes:
        assert abs(float(width) - 595.3) < 1.5, width
        assert abs(float(height) - 841.9) < 1.5, height
    assert len(boxes) >= 2  # seven tables and two charts: more than one A4 page
    (SCREENSHOTS / "report.pdf").write_bytes(pdf)
    page.emulate_media(media="screen")
    expect(page.locator("#print-hint")).to_be_visible()


def test_an_administrator_sees_the_same_notice(
    report_page: Page, reporting: GatewayProcess, tmp_path: Path
) -> None:
    _open_report(report_page, reporting, ADMIN, ADMIN_PASSWORD)
    _the_notice_is_whole(report_page, reporting, tmp_path)
    shot(report_page, "63-report-admin")


def test_a_clerk_is_refused_the_report(report_page: Page, reporting: GatewayProcess) -> None:
    log_in(report_page, reporting.url + "/console", CLERK, CLERK_PASSWORD)
    answer = report_page.goto(f"{reporting.url}/console/reports?quarter={_quarter()}")
    assert answer is not None
    assert answer.status == 403
    expect(report_page.get_by_text("报告仅供安全审计员和管理员查看。")).to_be_visible()
    expect(report_page.locator("#report-sheet")).to_have_count(0)
    download = report_page.goto(f"{reporting.url}/console/reports/download?format=public-json")
    assert download is not None
    assert download.status == 403
    assert english_words(report_page) == []
    shot(report_page, "64-report-clerk-refused")
