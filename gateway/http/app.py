"""The app factory: one Litestar app, configured by one plugin."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Response, route
from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins import InitPluginProtocol
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from gateway import __version__
from gateway.console import admin as console_admin
from gateway.console import manifests as console_manifests
from gateway.console import officers as console_officers
from gateway.console import routes as console_routes
from gateway.http import admin, audit_log, audit_officers, licences, routes, uploads
from gateway.http.boundary import check_parameters
from gateway.http.openapi import COMPONENTS
from gateway.http.problems import exception_handlers, record_unexpected
from gateway.runtime import GatewayRuntime
from gateway.settings import Settings, load_settings

__all__ = ["GatewayPlugin", "create_app", "create_app_from_environment"]

DOCS_ASSETS = "/docs/assets"


class GatewayPlugin(InitPluginProtocol):
    """Wires the gateway into a Litestar app: routes, problem details, runtime lifecycle."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self._settings

        @asynccontextmanager
        async def lifespan(app: Litestar) -> AsyncIterator[None]:
            runtime = GatewayRuntime.open(settings)
            await runtime.start()
            app.state.runtime = runtime
            try:
                yield
            finally:
                await runtime.close()

        app_config.route_handlers.extend(
            _by_path(
                routes.lookup,
                routes.lookup_batch,
                routes.manifest,
                routes.close_case,
                routes.invalidate_resource,
                uploads.upload,
                uploads.upload_rejections,
                licences.reserve_status_entry,
                licences.issue_licence,
                licences.change_licence_status,
                licences.verify_licence,
                licences.register_seal,
                licences.change_seal_status,
                licences.list_seals,
                licences.seal_registry,
                licences.status_list,
                *audit_log.ROUTES,
                *admin.ROUTES,
                *audit_officers.ROUTES,
                routes.explain_policy,
                routes.jwks,
                routes.healthz,
                routes.readyz,
                *console_routes.ROUTES,
                *console_officers.ROUTES,
                *console_admin.ROUTES,
                *console_manifests.ROUTES,
            )
        )
        app_config.route_handlers.append(
            create_static_files_router(
                path=DOCS_ASSETS, directories=[Path(str(swagger_ui_path))], name="docs-assets"
            )
        )
        app_config.exception_handlers.update(exception_handlers)  # type: ignore[arg-type]
        # Durable entry for any request that ends in an unexpected exception, before its 500.
        app_config.after_exception.append(record_unexpected)
        app_config.before_request = check_parameters
        app_config.lifespan.append(lifespan)
        app_config.openapi_config = OpenAPIConfig(
            title="Yiwang Gateway",
            version=__version__,
            description="Signed, policy-bound, audited lookups between departments.",
            path="/docs",
            components=COMPONENTS,
            # The browsable docs load their script and styles from this server, not a CDN:
            # the gateway's networks are closed.
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                    path="/",
                    favicon="",  # the default points at a CDN
                )
            ],
        )
        return app_config


def _by_path(*handlers: HTTPRouteHandler) -> list[HTTPRouteHandler]:
    """The handlers, with an explicit ``OPTIONS`` answer first for each path that several
    handlers share.

    Litestar builds a path's automatic ``OPTIONS`` answer when the path is first registered;
    a handler added later for the same path (GET and POST ``/v1/seals``) is then missing from
    its ``Allow`` header. A path whose ``OPTIONS`` handler comes first gets no automatic one.
    """
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, set()).update(handler.http_methods)
    out: list[HTTPRouteHandler] = []
    for handler in handlers:
        for path in sorted(handler.paths):
            allowed = methods.pop(path, None)
            if allowed is not None and len(allowed) > 1:
                out.append(_options(path, allowed | {"OPTIONS"}))
        out.append(handler)
    return out


def _options(path: str, allowed: set[str]) -> HTTPRouteHandler:
    allow = ", ".join(sorted(allowed))

    async def options() -> Response[None]:
        return Response(content=None, status_code=204, headers={"Allow": allow})

    handler: HTTPRouteHandler = route(
        path, http_method=["OPTIONS"], include_in_schema=False, name=f"options:{path}"
    )(options)
    return handler


def create_app(settings: Settings) -> Litestar:
    """A gateway app for ``settings``."""
    logging.basicConfig(level=settings.log_level.upper())
    return Litestar(plugins=[GatewayPlugin(settings)], debug=False)


def create_app_from_environment() -> Litestar:
    """Factory for uvicorn workers: settings from ``GATEWAY_*`` variables."""
    return create_app(load_settings())
