"""The browsable docs in a real browser: ``/docs`` renders the OpenAPI 3.1 document with the
Swagger UI vendored in the gateway, and no request leaves the gateway's own address."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Page, Request, expect

from gateway.http.docs import SWAGGER_UI_VERSION
from tests.browser.conftest import Console, shot


def test_docs_render_the_operations_from_local_assets(page: Page, console: Console) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(_url(request)))

    page.goto(console.gateway.url + "/docs")

    # Rendered by Swagger UI, not merely named in the page: an operation's path and summary,
    # the document's title and OpenAPI version badge, and no "Unable to render" error.
    lookup = page.locator("#operations-lookups-lookup")
    expect(lookup).to_be_visible()
    expect(lookup).to_contain_text("/v1/lookups")
    expect(lookup).to_contain_text("Signed lookup of a shared record")
    expect(page.locator(".info .title")).to_contain_text("Yiwang Gateway")
    expect(page.locator(".info .version-stamp").last).to_contain_text("OAS 3.1")
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
    assert page.evaluate("() => window.versions && window.versions.swaggerUI.version") == (
        SWAGGER_UI_VERSION
    )

    # The refusals operation (a department's own refused requests) is on the page too.
    expect(page.locator("#operations-refusals-own_refusals")).to_contain_text("/v1/refusals")

    lookup.locator(".opblock-summary").click()
    expect(lookup.locator(".opblock-body")).to_contain_text("application/jwt")
    shot(page, "docs-openapi")

    gateway_host = urlsplit(console.gateway.url).netloc
    outside = [url for url in requested if urlsplit(url).netloc not in (gateway_host, "")]
    assert requested, "the page made no request at all"
    assert outside == [], f"requests left {gateway_host}: {outside}"


def _url(request: Request) -> str:
    return request.url
