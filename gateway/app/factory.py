"""The app factory: one Litestar app, configured by one plugin."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response, route
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.plugins import InitPluginProtocol

from gateway import __version__
from gateway.app import health
from gateway.app.runtime import GatewayRuntime
from gateway.audit import routes as audit_log
from gateway.console import admin as console_admin
from gateway.console import manifests as console_manifests
from gateway.console import officers as console_officers
from gateway.console import routes as console_routes
from gateway.http.boundary import check_parameters
from gateway.http.docs import docs_assets_router, swagger_ui
from gateway.http.openapi import COMPONENTS, JWS_CONVENTION, operation_id
from gateway.http.problems import exception_handlers, record_unexpected
from gateway.http.signed import BODY_LIMITS_STATE
from gateway.licensing import routes as licences
from gateway.lookups import routes as lookups
from gateway.oversight import routes as oversight
from gateway.policy import routes as policy
from gateway.registry import routes as registry
from gateway.reporting import routes as reporting
from gateway.settings import Settings, load_settings
from gateway.telemetry import routes as telemetry
from gateway.telemetry.access import AccessMiddleware
from gateway.telemetry.logs import configure_logging
from gateway.uploads import routes as uploads

__all__ = ["SERVING_GC_THRESHOLD", "GatewayPlugin", "create_app", "create_app_from_environment"]

#: The collector's young-generation threshold while the app serves (CPython's is 700). Each
#: request in flight holds a few hundred containers at once, so with 16 lookups in flight the
#: young generation was collected every ~8 lookups and the whole heap every ~1,000 (a pause of
#: ~9 ms each). Measured in-process, 3,000 lookups: 384 young, 34 middle and 3 full collections
#: (~110 ms) at 700; 3 young ones (3-7 ms) at 10,000, with the same resident memory. Cyclic
#: garbage waits a little longer; refcounting frees the rest at once either way.
SERVING_GC_THRESHOLD = 10_000


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
            # What hooks and guards (which take no dependencies) need: the pipeline that
            # records unexpected failures, and the operators' tokens.
            app.state.exchanges = runtime.exchanges
            app.state.operator_tokens = runtime.operator_tokens
            app.state.metrics = runtime.metrics
            app.state[BODY_LIMITS_STATE] = runtime.limits
            # What startup loaded lives as long as the process: frozen out of the collector's
            # sight, a full collection scans only what requests made since. With the startup
            # heap in it, each one stopped the event loop for ~100 ms under load (gen2 pauses
            # of 90-110 ms in `make bench`, 4 ms once frozen). Not collected first: a full
            # collection of a test process's heap at every app's start would cost more than
            # the little startup garbage frozen with the rest.
            gc.freeze()
            previous = gc.get_threshold()
            gc.set_threshold(SERVING_GC_THRESHOLD, *previous[1:])
            try:
                yield
            finally:
                gc.set_threshold(*previous)
                gc.unfreeze()  # in a process that starts another app (tests), collectable again
                await runtime.close()

        app_config.route_handlers.extend(
            _by_path(
                *lookups.ROUTES,
                *uploads.ROUTES,
                *licences.ROUTES,
                *audit_log.ROUTES,
                *registry.ROUTES,
                *oversight.ROUTES,
                *policy.ROUTES,
                *health.ROUTES,
                *telemetry.ROUTES,
                *console_routes.ROUTES,
                *console_officers.ROUTES,
                *console_admin.ROUTES,
                *console_manifests.ROUTES,
                *reporting.ROUTES,
            )
        )
        # Handlers name the service they need; each comes from the runtime built at start.
        app_config.dependencies.update(
            {name: Provide(_service(name), sync_to_thread=False) for name in SERVICES}
        )
        app_config.route_handlers.append(docs_assets_router())
        # RFC 9457 problems for the API; the console's own 404 / 500 pages under /console.
        app_config.exception_handlers.update(
            console_routes.console_error_pages(exception_handlers)  # type: ignore[arg-type]
        )
        # Durable entry for any request that ends in an unexpected exception, before its 500.
        app_config.after_exception.append(record_unexpected)
        app_config.before_request = check_parameters
        app_config.lifespan.append(lifespan)
        app_config.openapi_config = OpenAPIConfig(
            title="Yiwang Gateway",
            version=__version__,
            description="Signed, policy-bound, audited lookups between departments.\n\n"
            + JWS_CONVENTION,
            path="/docs",
            components=COMPONENTS,
            operation_id_creator=operation_id,
            # The browsable docs load their script and styles from this server, not a CDN:
            # the gateway's networks are closed.
            render_plugins=[swagger_ui()],
        )
        return app_config


#: The services a handler may ask for by parameter name (attributes of the runtime).
SERVICES = (
    "lookups",
    "manifests",
    "cases",
    "resources",
    "uploads",
    "licensing",
    "transparency",
    "leaves",
    "keys",
    "officers",
    "operator_tokens",
    "policy",
    "signer",
    "readiness",
    "console",
    "metrics",
)


def _service(name: str) -> Callable[[State], Any]:
    def provide(state: State) -> Any:
        return getattr(state.runtime, name)

    provide.__name__ = f"provide_{name}"
    return provide


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
    """A gateway app for ``settings``: every request goes through the access layer (request
    id, access-log line, metrics) first, 404s included."""
    server = settings.server
    configure_logging(level=server.log_level, fmt=server.log_format, access_log=server.access_log)
    # Logging is the gateway's own (text or JSON lines, gateway.telemetry.logs), not Litestar's.
    app = Litestar(plugins=[GatewayPlugin(settings)], debug=False, logging_config=None)
    app.asgi_handler = AccessMiddleware(
        app.asgi_handler,
        metrics=lambda: app.state.get("metrics"),
        access_log=server.access_log,
    )
    return app


def create_app_from_environment() -> Litestar:
    """Factory for uvicorn workers: settings from ``GATEWAY_*`` variables."""
    return create_app(load_settings())
