"""The browsable docs: Swagger UI served from the gateway itself, never from a CDN.

The gateway's networks are closed, so the page at ``/docs`` loads its script and styles from
``/docs/assets`` (``swagger-ui-dist``, vendored in ``static/swagger-ui``; see its
``VERSION.md``). Swagger UI 5 is the first to read OpenAPI 3.1, the version Litestar writes.
"""

from __future__ import annotations

from pathlib import Path

from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

__all__ = ["DOCS_ASSETS", "SWAGGER_UI_VERSION", "docs_assets_router", "swagger_ui"]

#: Where the page's assets are served.
DOCS_ASSETS = "/docs/assets"
#: The vendored ``swagger-ui-dist`` release (keep in step with ``static/swagger-ui``).
SWAGGER_UI_VERSION = "5.35.0"
_ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"


def docs_assets_router() -> Router:
    """The route serving the vendored Swagger UI files (kept out of the OpenAPI document)."""
    return create_static_files_router(
        path=DOCS_ASSETS,
        directories=[_ASSETS_DIR],
        name="docs-assets",
        include_in_schema=False,
    )


def swagger_ui() -> SwaggerRenderPlugin:
    """The ``/docs`` page, loading only the vendored assets."""
    return SwaggerRenderPlugin(
        version=SWAGGER_UI_VERSION,
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        path="/",
        favicon="",  # the default points at a CDN
    )
