"""The web console in a real browser: a clerk logs in (Chinese by default), verifies a valid
and a revoked demo licence by identifier, downloads the signed receipt and checks it with
joserfc against the JWKS; a wrong password shows the one generic message; a forged CSRF token
gives the 403 page and verifies nothing; the form is reachable by keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Page, expect

from gateway.core.licences import LicenceRecord, qr_payload
from gateway.core.policy import load_policy_set
from gateway.core.protocol import TokenType
from gateway.demo.licences import demo_cases
from gateway.licensing.store import LicenceStore
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
from tests.support import ROOT

CASES = demo_cases(load_policy_set(ROOT / "policies").departments)
LOGIN_REFUSED_ZH = "用户名或密码错误，或该账户暂时无法登录。"
VERIFIED = "licence:verification:performed"


def _verify_by_identifier(page: Page, licence_id: str, case: str) -> None:
    page.get_by_label("证照编号").fill(licence_id)
    page.get_by_label("事项编码").fill("000201002000")
    page.get_by_label("办件编号").fill(case)
    page.get_by_label("用证事由说明").fill("核验营业执照")
    page.get_by_role("button", name="核验").click()


def _receipt_claims(console: Console, token: str) -> dict[str, Any]:
    """The receipt verified with joserfc against the gateway's published JWKS."""
    jwks = httpx.get(console.gateway.url + "/.well-known/jwks.json").json()
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert decoded.header["typ"] == TokenType.VERIFICATION_RECEIPT
    return dict(decoded.claims)


def test_clerk_verifies_a_valid_and_a_revoked_licence(
    page: Page, console: Console, tmp_path: Path
) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    expect(page.get_by_role("heading", name="核验电子证照")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    shot(page, "01-clerk-logged-in")

    for step, (case, words) in enumerate(
        [("business-licence", "有效"), ("revoked", "已吊销")], start=2
    ):
        before = len(audit_events(console.gateway, VERIFIED))
        licence_id = CASES[case].licence_id
        _verify_by_identifier(page, licence_id, f"YW-2026-WEB-{step}")
        expect(page.locator("#verdict")).to_have_text(words)
        expect(page.locator("#checks")).to_contain_text("证照状态")
        expect(page.locator("#checks")).to_contain_text("通过")
        shot(page, f"0{step}-verified-{case}")

        with page.expect_download() as info:
            page.get_by_role("link", name="下载签名回执").click()
        saved = tmp_path / f"{case}.jwt"
        info.value.save_as(saved)
        claims = _receipt_claims(console, saved.read_text().strip())
        assert claims["verdict"] == CASES[case].verdict
        assert claims["licence_id"] == licence_id
        assert claims["aud"] == "service-centre"
        assert claims["operator"] == CLERK
        assert claims["purpose"]["case"] == f"YW-2026-WEB-{step}"

        entries = audit_events(console.gateway, VERIFIED)
        assert len(entries) == before + 1
        entry = entries[-1]
        assert entry["idx"] == claims["audit"]["index"]
        assert (entry["department"], entry["operator"]) == ("service-centre", CLERK)
        assert entry["case_number"] == f"YW-2026-WEB-{step}"
        assert entry["reason"] == "核验营业执照"

    page.get_by_role("button", name="退出登录").click()
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    shot(page, "04-logged-out")
    page.goto(console.url + "/verify")
    expect(page).to_have_url(console.url + "/login")


def test_wrong_password_shows_the_generic_message(page: Page, console: Console) -> None:
    failed = len(audit_events(console.gateway, "console:login:failed"))
    log_in(page, console.url, CLERK, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text(LOGIN_REFUSED_ZH)
    shot(page, "05-wrong-password")
    log_in(page, console.url, "nobody-here", "whatever-it-is")
    expect(page.get_by_role("alert")).to_have_text(LOGIN_REFUSED_ZH)
    assert len(audit_events(console.gateway, "console:login:failed")) == failed + 2


def test_forged_csrf_token_is_refused_and_verifies_nothing(page: Page, console: Console) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    expect(page.get_by_role("heading", name="核验电子证照")).to_be_visible()
    verified = len(audit_events(console.gateway, VERIFIED))
    refused = len(audit_events(console.gateway, "console:csrf:refused"))
    page.locator("form[action='/console/verify'] input[name=csrf_token]").evaluate(
        "e => { e.value = 'forged-token' }"
    )
    _verify_by_identifier(page, CASES["business-licence"].licence_id, "YW-2026-WEB-CSRF")
    expect(page.get_by_role("heading", name="无法完成操作")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("操作未执行")
    shot(page, "06-csrf-refused")
    assert len(audit_events(console.gateway, VERIFIED)) == verified
    entries = audit_events(console.gateway, "console:csrf:refused")
    assert len(entries) == refused + 1
    assert entries[-1]["operator"] == CLERK


def test_keyboard_reaches_the_identifier_and_the_submit_button(
    page: Page, console: Console
) -> None:
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    expect(page.get_by_role("heading", name="核验电子证照")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    shot(page, "07-skip-link-focused")
    reached: list[str] = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
        if reached[-1] == "licence_id":
            shot(page, "08-identifier-focused")
        if reached[-1] == "verify-submit":
            break
    assert "licence_id" in reached
    assert reached[-1] == "verify-submit"
    shot(page, "09-submit-focused")


def test_english_and_other_roles(page: Page, console: Console) -> None:
    page.goto(console.url + "/login?lang=en")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto(console.url + "/login")  # the choice is remembered
    page.get_by_label("Username").fill(AUDITOR)
    page.get_by_label("Password").fill(AUDITOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/audit")  # an auditor starts on the audit log, in English
    page.goto(console.url + "/verify")  # and may not use the clerks' page
    expect(page.get_by_role("alert")).to_have_text("Only service-hall clerks may use this page.")
    shot(page, "10-auditor-refused-en")


def _record(console: Console, licence_id: str) -> LicenceRecord:
    engine = sa.create_engine(console.gateway.database_url)
    try:
        record = LicenceStore(engine).get(licence_id)
    finally:
        engine.dispose()
    assert record is not None
    return record


def test_clerk_verifies_a_qr_payload_and_an_uploaded_sealed_file(
    page: Page, console: Console, tmp_path: Path
) -> None:
    record = _record(console, CASES["food-permit"].licence_id)
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    page.get_by_label("二维码内容").fill(qr_payload(record.content))
    page.get_by_label("事项编码").fill("000201002000")
    page.get_by_label("办件编号").fill("YW-2026-WEB-QR")
    page.get_by_label("用证事由说明").fill("核验食品经营许可证")
    page.get_by_role("button", name="核验").click()
    expect(page.locator("#verdict")).to_have_text("有效")
    expect(page.locator("#checks")).to_contain_text("二维码与证照内容一致")
    shot(page, "11-verified-qr")

    sealed = tmp_path / "licence.jws"
    sealed.write_text(_record(console, CASES["revoked"].licence_id).sealed)
    page.get_by_label("二维码内容").fill("")
    page.get_by_label("办件编号").fill("YW-2026-WEB-FILE")
    page.get_by_label("盖章的证照文件").set_input_files(str(sealed))
    page.get_by_role("button", name="核验").click()
    expect(page.locator("#verdict")).to_have_text("已吊销")
    expect(page.locator("#checks")).to_contain_text("印章签名")
    shot(page, "12-verified-uploaded-file")
    claims = _receipt_claims(console, page.locator("#receipt").inner_text().strip())
    assert claims["input"]["kind"] == "licence"
    assert claims["purpose"]["case"] == "YW-2026-WEB-FILE"

    # two ways at once: said in words, nothing verified
    before = len(audit_events(console.gateway, VERIFIED))
    page.get_by_label("证照编号").fill(CASES["revoked"].licence_id)
    page.get_by_label("二维码内容").fill(qr_payload(record.content))
    page.get_by_role("button", name="核验").click()
    expect(page.get_by_role("alert")).to_contain_text("三者选一")
    assert len(audit_events(console.gateway, VERIFIED)) == before
