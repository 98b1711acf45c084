"""The administrators' console pages in a real browser, on a gateway of this module's own (it
revokes a department key and suspends a seal, which the shared console gateway must not see):
an administrator sees departments and their keys, explains a policy decision, suspends and
reinstates a seal and sees its history, revokes a key and a seal — each change on a
confirmation page of its own that says what will happen, nothing preselected, answered 303 to
a result page a reload does not resend; a forged CSRF token is refused and changes nothing;
another role gets the 403 page; the Chinese pages hold no English words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import add_user, audit_events, shot
from tests.browser.words import english_words
from tests.support import GatewayProcess, running_gateway

ADMIN = "admin-zhao"
ADMIN_PASSWORD = "Admin-Desk-2026!"
OFFICER = "officer-qian"
OFFICER_PASSWORD = "Audit-Desk-2026!"
DEPARTMENTS = "/console/admin/departments"
SEALS = "/console/admin/seals"
POLICY = "/console/admin/policy"


@pytest.fixture(scope="module")
def admin_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> Iterator[GatewayProcess]:
    """A gateway of this module's own, with an administrator and a security officer."""
    with running_gateway(tmp_path_factory.mktemp("console-admin"), keys_dir, server=False) as gw:
        add_user(gw, ADMIN, ADMIN_PASSWORD, "--role", "admin")
        add_user(gw, OFFICER, OFFICER_PASSWORD, "--role", "auditor")
        yield gw


@pytest.fixture
def admin_page(browser: Browser, admin_gateway: GatewayProcess) -> Iterator[Page]:
    """A fresh browser context (no cookies) at tablet width, for one test."""
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="zh-CN")
    try:
        yield context.new_page()
    finally:
        context.close()


def _rows(gw: GatewayProcess, query: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(query), params).mappings()]
    finally:
        engine.dispose()


def _key_status(gw: GatewayProcess, kid: str) -> str:
    rows = _rows(gw, "SELECT status FROM department_keys WHERE kid = :k", k=kid)
    return str(rows[0]["status"])


def _log_in(page: Page, gw: GatewayProcess, username: str, password: str) -> None:
    page.goto(gw.url + "/console/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()


def _first_active_key(page: Page, department: str) -> str:
    row = page.locator(f"#department-{department} tr:has(a.revoke-key)").first
    kid = row.get_attribute("data-kid")
    assert kid
    return kid


def _no_english(page: Page) -> None:
    found = english_words(page, also=frozenset({"zhao"}))
    assert found == [], f"{page.url}: {found}"


def test_admin_sees_departments_and_keys(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + DEPARTMENTS)
    expect(admin_page.get_by_role("heading", name="部门与密钥", exact=True)).to_be_visible()
    market = admin_page.locator("#department-market")
    expect(market).to_contain_text("区市场监督管理局")
    expect(market).to_contain_text("11430600006122001T")
    expect(market).to_contain_text("使用部门、提供部门、发证机关")
    expect(market.locator(".key-status").first).to_have_text("有效")
    kid = _first_active_key(admin_page, "market")
    expect(market.locator(f"#key-{kid}")).to_contain_text("ES256")
    expect(market.locator(f"#key-{kid}")).to_contain_text(
        re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    )
    _no_english(admin_page)
    shot(admin_page, "admin-01-departments")


def test_admin_explains_a_policy_decision(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + POLICY)
    expect(admin_page.locator("#policy-version")).not_to_be_empty()
    expect(admin_page.locator("#grants")).to_contain_text("g-centre-enterprise")
    expect(admin_page.locator("#resources")).to_contain_text("enterprise-registration")
    _no_english(admin_page)
    admin_page.get_by_label("使用部门").select_option("service-centre")
    admin_page.get_by_label("数据资源", exact=True).select_option("enterprise-registration")
    admin_page.get_by_label("事项编码").fill("000201002000")
    admin_page.get_by_label("字段（逗号分隔").fill("name, status")
    admin_page.get_by_role("button", name="解释").click()
    expect(admin_page.locator("#decision")).to_have_text("允许")
    expect(admin_page.locator("#candidates")).to_contain_text("g-centre-enterprise")
    expect(admin_page.locator("#candidates")).to_contain_text("此授权允许该请求。")
    shot(admin_page, "admin-02-explain-allowed")

    # a field the grant does not name: refused, and said in words
    admin_page.get_by_label("字段（逗号分隔").fill("name, registered_capital")
    admin_page.get_by_role("button", name="解释").click()
    expect(admin_page.locator("#decision")).to_have_text("拒绝")
    expect(admin_page.locator("#candidates")).to_contain_text("请求了未授权的字段")
    _no_english(admin_page)
    shot(admin_page, "admin-03-explain-refused")


def _seal_section(page: Page, action: str, *, last: bool = False) -> tuple[str, Locator]:
    found = page.locator(f"section.seal:has(input[value={action}])")
    seal_id = (
        (found.last if last else found.first).locator("input[name=seal_id]").get_attribute("value")
    )
    assert seal_id
    return seal_id, page.locator(f"section[id='seal-{seal_id}']")


def test_the_seal_form_preselects_nothing(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + SEALS)
    expect(admin_page.get_by_role("heading", name="电子印章", exact=True)).to_be_visible()
    assert admin_page.locator("form.seal-change input[type=radio]").count() >= 2
    expect(admin_page.locator("form.seal-change input[type=radio]:checked")).to_have_count(0)
    selects = admin_page.locator("form.seal-change select[name=revocation_reason]")
    for i in range(selects.count()):
        assert selects.nth(i).input_value() == ""  # the "choose" placeholder, no reason
    options = selects.first.locator("option")
    # The least harmful reasons first; the one that invalidates every licence last.
    assert options.last.get_attribute("value") == "key-compromise"
    expect(options.last).to_contain_text("全部证照随之失效")
    _no_english(admin_page)

    # Revoking without a revocation reason goes nowhere: the form says what is missing.
    _, section = _seal_section(admin_page, "revoke")
    before = len(audit_events(admin_gateway, "seal:status:changed"))
    section.get_by_label("吊销", exact=True).check()
    section.get_by_label("原因", exact=True).fill("未选吊销原因类别")
    section.get_by_role("button", name="下一步：确认").click()
    expect(admin_page.locator("#error")).to_have_text("吊销印章时请选择吊销原因类别。")
    assert len(audit_events(admin_gateway, "seal:status:changed")) == before
    shot(admin_page, "admin-04-seal-needs-a-revocation-reason")


def test_admin_suspends_and_reinstates_a_seal(
    admin_page: Page, admin_gateway: GatewayProcess
) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + SEALS)
    seal_id, section = _seal_section(admin_page, "suspend")
    before = len(audit_events(admin_gateway, "seal:status:changed"))

    section.get_by_label("暂停").check()
    section.get_by_label("原因", exact=True).fill("印章保管人员变动，暂停使用")
    section.get_by_role("button", name="下一步：确认").click()
    # Its own page: what will happen, nothing done yet.
    expect(admin_page.get_by_role("heading", name="确认变更印章状态")).to_be_visible()
    expect(admin_page.locator("#effect")).to_contain_text("暂停前已加盖的证照仍有效")
    expect(admin_page.locator("#confirm-action")).to_have_text("暂停")
    assert len(audit_events(admin_gateway, "seal:status:changed")) == before
    _no_english(admin_page)
    shot(admin_page, "admin-05-seal-suspend-confirm")
    with admin_page.expect_response(lambda r: r.request.method == "POST") as posted:
        admin_page.get_by_role("button", name="确认暂停").click()
    assert posted.value.status == 303
    admin_page.wait_for_load_state()
    assert f"/console/admin/seals?changed={seal_id}" in admin_page.url
    expect(admin_page.locator("#notice")).to_contain_text(f"{seal_id} → 已暂停")
    section = admin_page.locator(f"section[id='seal-{seal_id}']")
    expect(section.locator(".seal-status")).to_have_text("已暂停")
    expect(section.locator(".seal-history")).to_contain_text("印章保管人员变动，暂停使用")
    expect(section.locator(".seal-history")).to_contain_text(ADMIN)
    # A reload shows the result again and sends nothing.
    admin_page.reload()
    expect(admin_page.locator("#notice")).to_contain_text(f"{seal_id} → 已暂停")
    assert len(audit_events(admin_gateway, "seal:status:changed")) == before + 1
    shot(admin_page, "admin-06-seal-suspended")

    section.get_by_label("恢复").check()
    section.get_by_label("原因", exact=True).fill("核实完毕，恢复使用")
    section.get_by_role("button", name="下一步：确认").click()
    admin_page.get_by_role("button", name="确认恢复").click()
    section = admin_page.locator(f"section[id='seal-{seal_id}']")
    expect(section.locator(".seal-status")).to_have_text("有效")
    expect(section.locator(".seal-history tbody tr")).to_have_count(2)
    shot(admin_page, "admin-07-seal-reinstated")

    entries = audit_events(admin_gateway, "seal:status:changed")
    assert len(entries) == before + 2
    assert [e["operator"] for e in entries[-2:]] == [ADMIN, ADMIN]
    assert entries[-2]["reason"] == "印章保管人员变动，暂停使用"


def test_admin_revokes_a_department_key(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + DEPARTMENTS)
    kid = _first_active_key(admin_page, "hrss")
    before = len(audit_events(admin_gateway, "key:department:revoked"))
    admin_page.locator(f"#key-{kid} a.revoke-key").click()
    expect(admin_page.get_by_role("heading", name="确认吊销部门密钥")).to_be_visible()
    expect(admin_page.locator("#effect")).to_contain_text("吊销不可撤回")
    expect(admin_page.locator("#key-to-revoke")).to_contain_text(kid)
    expect(admin_page.get_by_label("原因")).to_have_value("")
    assert _key_status(admin_gateway, kid) == "active"  # the link itself changes nothing
    _no_english(admin_page)
    shot(admin_page, "admin-08-key-revoke-confirm")

    admin_page.get_by_label("原因").fill("私钥疑似泄露")
    with admin_page.expect_response(lambda r: r.request.method == "POST") as posted:
        admin_page.get_by_role("button", name="确认吊销此密钥").click()
    assert posted.value.status == 303
    admin_page.wait_for_load_state()
    assert "/console/admin/departments?revoked=" in admin_page.url
    expect(admin_page.locator("#notice")).to_contain_text(kid)
    row = admin_page.locator(f"#key-{kid}")
    expect(row.locator(".key-status")).to_have_text("已吊销")
    expect(row.locator("a.revoke-key")).to_have_count(0)
    admin_page.reload()
    expect(admin_page.locator("#notice")).to_contain_text(kid)
    shot(admin_page, "admin-09-key-revoked")
    assert _key_status(admin_gateway, kid) == "revoked"
    entries = audit_events(admin_gateway, "key:department:revoked")
    assert len(entries) == before + 1  # the reload sent nothing
    entry = entries[-1]
    assert (entry["department"], entry["operator"]) == ("hrss", ADMIN)
    assert entry["reason"] == "私钥疑似泄露"
    assert kid in entry["detail"]


def test_forged_csrf_token_revokes_nothing(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + DEPARTMENTS)
    kid = _first_active_key(admin_page, "tax")
    refused = len(audit_events(admin_gateway, "console:csrf:refused"))
    admin_page.locator(f"#key-{kid} a.revoke-key").click()
    admin_page.locator("#confirm-form input[name=csrf_token]").evaluate(
        "e => { e.value = 'forged-token' }"
    )
    admin_page.get_by_label("原因").fill("伪造的请求")
    admin_page.get_by_role("button", name="确认吊销此密钥").click()
    expect(admin_page.get_by_role("heading", name="无法完成操作")).to_be_visible()
    expect(admin_page.get_by_role("alert")).to_contain_text("操作未执行")
    shot(admin_page, "admin-10-csrf-refused")
    assert _key_status(admin_gateway, kid) == "active"
    entries = audit_events(admin_gateway, "console:csrf:refused")
    assert len(entries) == refused + 1
    assert entries[-1]["operator"] == ADMIN


def test_other_roles_get_the_403_page(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, OFFICER, OFFICER_PASSWORD)
    for path in (DEPARTMENTS, SEALS, POLICY, SEALS + "/confirm", DEPARTMENTS + "/revoke-key"):
        response = admin_page.goto(admin_gateway.url + path + "?lang=en")
        assert response is not None
        assert response.status == 403
        expect(admin_page.get_by_role("alert")).to_have_text(
            "Only administrators may use this page."
        )
    shot(admin_page, "admin-11-officer-refused-en")


def test_admin_revokes_a_seal_in_english(admin_page: Page, admin_gateway: GatewayProcess) -> None:
    _log_in(admin_page, admin_gateway, ADMIN, ADMIN_PASSWORD)
    admin_page.goto(admin_gateway.url + SEALS + "?lang=en")
    expect(admin_page.get_by_role("heading", name="E-seals", exact=True)).to_be_visible()
    seal_id, section = _seal_section(admin_page, "revoke", last=True)
    section.get_by_label("Revoke", exact=True).check()
    section.get_by_label("Revocation reason (revoke only)").select_option("key-compromise")
    section.get_by_label("Reason", exact=True).fill("the seal's key was compromised")
    section.get_by_role("button", name="Next: confirm").click()
    expect(admin_page.locator("#effect")).to_contain_text(
        "Revoking the seal invalidates every licence it sealed"
    )
    shot(admin_page, "admin-12-seal-revoke-confirm-en")
    admin_page.get_by_role("button", name="Revoke", exact=True).click()
    section = admin_page.locator(f"section[id='seal-{seal_id}']")
    expect(section.locator(".seal-status")).to_have_text("Revoked")
    expect(section.locator(".seal-history")).to_contain_text("Seal key compromised")
    expect(section).to_contain_text("its status cannot change any more")
    expect(section.locator("form")).to_have_count(0)
    shot(admin_page, "admin-13-seal-revoked-en")
