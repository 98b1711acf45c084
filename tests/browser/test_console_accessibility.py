"""Every console page, for each role, at tablet width: it fits the screen without sideways
scrolling, its main content is reachable from the keyboard alone, and it names itself in a
heading. (The page fixture's viewport is 768 px wide.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gateway.core.policy import load_policy_set
from gateway.demo.licences import demo_cases
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
from tests.support import ROOT

CASES = demo_cases(load_policy_set(ROOT / "policies").departments)
ADMIN = "admin-zhao"
ADMIN_PASSWORD = "Admin-Desk-2026!"

PAGES = {
    "clerk": ["/verify", "/manifest"],
    "auditor": ["/audit"],
    "admin": ["/admin/departments", "/admin/seals", "/admin/policy"],
}


@pytest.fixture(scope="module")
def admin_account(console: Console) -> str:
    add_user(console.gateway, ADMIN, ADMIN_PASSWORD, "--role", "admin")
    return ADMIN


def _reaches_main_by_keyboard(page: Page) -> bool:
    """Tab from the top of the page until focus is on a control inside <main>."""
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        inside = page.evaluate(
            "() => { const el = document.activeElement;"
            " return !!el && !!el.closest('main') &&"
            " ['A','BUTTON','INPUT','SELECT','TEXTAREA','SUMMARY'].includes(el.tagName); }"
        )
        if inside:
            return True
    return False


@pytest.mark.parametrize("role", ["clerk", "auditor", "admin"])
def test_every_page_fits_a_tablet_and_is_reachable_by_keyboard(
    page: Page, console: Console, admin_account: str, role: str
) -> None:
    username, password = {
        "clerk": (CLERK, CLERK_PASSWORD),
        "auditor": (AUDITOR, AUDITOR_PASSWORD),
        "admin": (admin_account, ADMIN_PASSWORD),
    }[role]
    log_in(page, console.url, username, password)
    for path in PAGES[role]:
        response = page.goto(console.url + path)
        assert response is not None
        assert response.status == 200, path
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at 768 px"
        assert page.locator("main h1, main h2").count() >= 1, f"{path} has no heading"
        assert _reaches_main_by_keyboard(page), f"{path}: Tab never reaches the main content"
        shot(page, f"a11y-{role}{path.replace('/', '-')}")


def _fits_and_names_itself(page: Page, what: str) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{what} scrolls sideways by {overflow} px at 768 px"
    assert page.locator("main h1, main h2").count() >= 1, f"{what} has no heading"
    assert _reaches_main_by_keyboard(page), f"{what}: Tab never reaches the main content"


def test_the_clerks_result_receipt_and_404_pages_fit_a_tablet(page: Page, console: Console) -> None:
    """The pages a clerk reaches only by a form or a wrong address: the verification result
    (the licence's facts, the checks), the printable receipt with its QR code, the 404."""
    log_in(page, console.url, CLERK, CLERK_PASSWORD)
    licence_id = CASES["food-permit"].licence_id
    page.get_by_label("证照编号").fill(licence_id)
    page.get_by_label("办理事项").select_option("000201004000")
    page.get_by_label("办件编号").fill("YW-2026-WEB-A11Y")
    page.get_by_label("用证事由说明").fill("核验食品经营许可证")
    page.get_by_role("button", name="核验").click()
    expect(page.locator("#verdict")).to_have_text("有效")
    _fits_and_names_itself(page, "the verification result")
    page.get_by_role("button", name="打印回执").click()
    expect(page.locator("#receipt-qr svg")).to_have_count(1)
    _fits_and_names_itself(page, "the receipt page")
    shot(page, "a11y-clerk-receipt")
    response = page.goto(console.url + "/no-such-page")
    assert response is not None
    assert response.status == 404
    _fits_and_names_itself(page, "the 404 page")
