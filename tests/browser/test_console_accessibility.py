"""Every console page, for each role, at tablet width: it fits the screen without sideways
scrolling, its main content is reachable from the keyboard alone, and it names itself in a
heading. (The page fixture's viewport is 768 px wide.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

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
