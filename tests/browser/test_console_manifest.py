"""The clerk's manifest page in a real browser: a clerk opens the one-time notice of
企业变更登记 for a demo company — 营业执照 is supplied by the gateway, 变更决议 still to bring —
prints it (print media: navigation and form hidden, the notice with the issuing department,
window, clerk, date, item, case, the applicant's name and masked ID and the signature lines),
and the ``manifest:materials:listed`` audit entry names the clerk.
A forged CSRF token lists nothing; a malformed input, an unknown service item or a missing
applicant's name is said in Chinese words and lists nothing."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from gateway.core.policy import load_policy_set
from gateway.demo.population import companies
from tests.browser.conftest import (
    AUDITOR,
    AUDITOR_PASSWORD,
    CLERK,
    CLERK_PASSWORD,
    Console,
    audit_events,
    log_in,
    shot,
)
from tests.browser.test_console import english_words
from tests.support import ROOT

COMPANY = next(c for c in companies() if c.status == "存续")
CENTRE = load_policy_set(ROOT / "policies").departments["service-centre"].name
LISTED = "manifest:materials:listed"
ITEM = "000201002000"


def _fill(page: Page, applicant: str, case: str, *, window: str = "") -> None:
    page.get_by_label("受理窗口").fill(window)
    page.get_by_label("办理事项").select_option(ITEM)
    page.get_by_label("申请人姓名或名称").fill(COMPANY.name)
    page.get_by_label("申请人类型").select_option("uscc")
    page.get_by_label("申请人证件号码").fill(applicant)
    page.get_by_label("办件编号").fill(case)
    page.get_by_label("告知事由说明").fill("一次性告知")
    page.get_by_role("button", name="生成告知单").click()


def test_clerk_prints_the_one_time_notice(page: Page, console: Console) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    page.goto(console.url + "/manifest")
    expect(page.get_by_role("heading", name="一次性告知", exact=True)).to_be_visible()
    shot(page, "20-manifest-form")

    before = len(audit_events(console.gateway, LISTED))
    _fill(page, COMPANY.uscc, "YW-2026-WEB-MF-1", window="3号窗口")
    supplied, missing = page.locator("#supplied"), page.locator("#missing")
    expect(supplied).to_contain_text("营业执照")
    expect(supplied).not_to_contain_text("变更决议")
    expect(missing).to_contain_text("变更决议")
    expect(missing).not_to_contain_text("营业执照")
    expect(missing).to_contain_text("没有可共享的数据来源")
    expect(page.locator("#notice-item")).to_contain_text("企业变更登记")
    expect(page.locator("#notice-case")).to_have_text("YW-2026-WEB-MF-1")
    applicant = page.locator("#notice-applicant")
    expect(applicant).to_contain_text(COMPANY.uscc[:6] + "*")
    expect(applicant).not_to_contain_text(COMPANY.uscc)
    expect(page.locator("#notice-office")).to_have_text(CENTRE)
    expect(page.locator("#notice-window")).to_have_text("3号窗口")
    expect(page.locator("#notice-clerk")).to_have_text(CLERK)
    expect(page.locator("#notice-applicant-name")).to_have_text(COMPANY.name)  # as typed
    expect(page.locator("#signatures")).to_contain_text("申请人（签字）")
    expect(page.locator("#signatures")).to_contain_text("窗口工作人员（签字）")
    assert english_words(page) == []
    expect(page.locator("#print-hint")).to_be_visible()
    shot(page, "21-manifest-notice")

    page.emulate_media(media="print")
    expect(page.locator("header")).to_be_hidden()
    expect(page.locator("form[action='/console/manifest']")).to_be_hidden()
    expect(page.locator("#print-hint")).to_be_hidden()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice-date")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))
    expect(page.locator("#signatures")).to_be_visible()
    expect(page.locator("#notice-applicant-name")).to_be_visible()
    shot(page, "22-manifest-print")
    page.emulate_media(media="screen")

    entries = audit_events(console.gateway, LISTED)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry["department"], entry["operator"]) == ("service-centre", CLERK)
    assert (entry["service_item"], entry["case_number"]) == (ITEM, "YW-2026-WEB-MF-1")
    assert entry["reason"] == "一次性告知"
    assert entry["decision"] == "allowed"
    assert str(entry["idx"]) == page.locator("#audit-index").inner_text()


def test_manifest_errors_in_words_and_csrf(page: Page, console: Console) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    page.goto(console.url + "/manifest")
    listed = len(audit_events(console.gateway, LISTED))
    _fill(page, "not-a-credit-code", "YW-2026-WEB-MF-2")
    expect(page.get_by_role("alert")).to_contain_text("申请人证件号码")
    assert english_words(page) == []
    shot(page, "23-manifest-bad-input")

    # a service item the catalogue does not know, and no applicant's name: refused in words
    page.get_by_label("办理事项").evaluate(
        "s => { const o = new Option('x', '999999999999'); s.add(o); s.value = o.value; }"
    )
    page.get_by_label("申请人证件号码").fill(COMPANY.uscc)
    page.get_by_role("button", name="生成告知单").click()
    expect(page.get_by_role("alert")).to_contain_text("不在本区的事项目录中")
    page.get_by_label("办理事项").select_option(ITEM)
    page.get_by_label("申请人姓名或名称").evaluate("e => { e.required = false; e.value = '' }")
    page.get_by_role("button", name="生成告知单").click()
    expect(page.get_by_role("alert")).to_contain_text("请填写申请人姓名或名称")
    assert len(audit_events(console.gateway, LISTED)) == listed
    # an empty window prints a blank to fill in by hand
    _fill(page, COMPANY.uscc, "YW-2026-WEB-MF-3")
    expect(page.locator("#notice-window .blank")).to_have_count(1)
    listed += 1
    assert len(audit_events(console.gateway, LISTED)) == listed
    assert len(audit_events(console.gateway, LISTED)) == listed

    refused = len(audit_events(console.gateway, "console:csrf:refused"))
    page.locator("form[action='/console/manifest'] input[name=csrf_token]").evaluate(
        "e => { e.value = 'forged-token' }"
    )
    _fill(page, COMPANY.uscc, "YW-2026-WEB-MF-CSRF")
    expect(page.get_by_role("heading", name="无法完成操作")).to_be_visible()
    assert len(audit_events(console.gateway, LISTED)) == listed
    assert len(audit_events(console.gateway, "console:csrf:refused")) == refused + 1

    page.goto(console.url + "/manifest?lang=en")
    expect(page.get_by_role("heading", name="One-time notice")).to_be_visible()
    expect(page.get_by_label("Service item")).to_contain_text("企业变更登记")


def test_manifest_page_is_for_clerks_only(page: Page, console: Console) -> None:
    page.goto(console.url + "/manifest")
    expect(page).to_have_url(console.url + "/login")
    log_in(page, console.url, AUDITOR, AUDITOR_PASSWORD)
    page.goto(console.url + "/manifest")
    expect(page.get_by_role("alert")).to_contain_text("窗口工作人员")
