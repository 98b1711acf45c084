"""Browser tests: Debian's Chromium headless shell (with a CJK font) driven through
Playwright's sync API against a real gateway process, with a clerk account made by
`gateway users add`.

The headless shell is Chromium's own engine without the desktop browser around it — what
Playwright itself runs for headless Chromium. The full browser in headless mode rendered the
same 37 tests with 102 CPU-s where the shell needs 37 (and 117 s where it needs 67, alone on
this project's 2-core machine).

chromium-headless-shell and fonts-wqy-zenhei are installed with apt-get when missing and
running as root; otherwise the tests skip with a message — except under ``CI=true``, where
they fail.
Screenshots of every step go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import ROOT, GatewayProcess, apt_install, running_gateway, unavailable

CHROMIUM = Path("/usr/bin/chromium-headless-shell")
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

CLERK = "clerk-wang"
CLERK_PASSWORD = "Yiwang-Desk-2026!"
AUDITOR = "officer-li"
AUDITOR_PASSWORD = "Audit-Desk-2026!"


def _install_browser() -> str | None:
    """Install the headless shell and the CJK font if missing; why not, if it cannot be done."""
    if CHROMIUM.exists() and CJK_FONT.exists():
        return None
    why = apt_install("chromium-headless-shell", "fonts-wqy-zenhei")
    if why is None and not (CHROMIUM.exists() and CJK_FONT.exists()):
        why = "apt-get finished but chromium-headless-shell or fonts-wqy-zenhei is still missing"
    return why


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for all the browser tests. Package scope, not session: while
    Playwright's sync API is open, an event loop runs in this thread, and the other tests'
    ``asyncio.run`` would refuse to start."""
    why = _install_browser()
    if why:
        unavailable("Chromium", why)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass(frozen=True)
class Console:
    """A gateway with a clerk and a security officer account."""

    gateway: GatewayProcess

    @property
    def url(self) -> str:
        return self.gateway.url + "/console"


def add_user(gateway: GatewayProcess, username: str, password: str, *role: str) -> None:
    """An account made the way an administrator makes one: `gateway users add`."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gateway.app", "users", "add", username, *role),
            *("--password-stdin", "--operator", "admin-test"),
        ],
        cwd=ROOT,
        env=gateway.environment(),
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Console]:
    """A real embedded gateway with its own data directory, and the console accounts."""
    with running_gateway(tmp_path_factory.mktemp("console"), keys_dir, server=False) as gw:
        add_user(gw, CLERK, CLERK_PASSWORD, "--role", "clerk", "--department", "service-centre")
        add_user(gw, AUDITOR, AUDITOR_PASSWORD, "--role", "auditor")
        yield Console(gw)


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A fresh browser context (no cookies) at tablet width, for one test."""
    context = browser.new_context(
        viewport={"width": 768, "height": 1024}, locale="zh-CN", accept_downloads=True
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot of this step."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, console_url: str, username: str, password: str) -> None:
    """Log in through the console's form (Chinese labels, the default language)."""
    page.goto(console_url + "/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state()


def audit_events(gateway: GatewayProcess, event: str) -> list[dict[str, Any]]:
    """The gateway's audit entries of one event, oldest first, read from its database."""
    engine = sa.create_engine(gateway.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT * FROM audit_entries WHERE event = :e ORDER BY idx"), {"e": event}
            ).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()
