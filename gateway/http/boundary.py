"""The HTTP boundary's own strictness: what the framework hands over before any handler runs.

Route handlers decode their bodies and tokens strictly (:mod:`gateway.core.wire`); this hook
covers what they receive as plain strings — path and query parameters — so that no NUL, lone
surrogate or control character reaches a database query, a log line or a page, and no integer
beyond what a database column holds reaches a query (``before=10**29`` overflowed SQLite's
64-bit integers). Every refusal is a 400 problem naming the parameter.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from litestar import Request
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler

from gateway.core.wire import MAX_INDEX, storable, text_problem
from gateway.errors import InvalidInput

__all__ = ["MAX_PARAMETER_LENGTH", "check_parameters"]

#: The longest query parameter value any endpoint takes (filters are far shorter).
MAX_PARAMETER_LENGTH = 2048
#: The most query parameters one request may carry.
_MAX_PARAMETERS = 64
#: How an integer parameter is written: decimal digits only (no exponent, no fraction, no
#: ``NaN``) — the framework alone would read ``1e3`` as 1000.
_INTEGER = re.compile(r"^[+-]?[0-9]{1,30}$")


async def check_parameters(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: refuse unsafe path and query parameters (400, by name).

    A coroutine although it never waits: Litestar runs a plain function hook in a worker
    thread, a thread hop on every request for a few string checks."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            if problem := text_problem(value):
                raise InvalidInput(name, problem)
        elif isinstance(value, int) and not 0 <= value <= MAX_INDEX:
            raise InvalidInput(name, f"must be between 0 and {MAX_INDEX}")
    items = list(request.query_params.multi_items())
    if len(items) > _MAX_PARAMETERS:
        raise InvalidInput("query", f"at most {_MAX_PARAMETERS} parameters")
    integers, known = _query_parameters(request.route_handler)
    for name, value in items:
        if known is not None and name not in known:
            # An API endpoint takes exactly the parameters it documents: a misspelt filter
            # silently ignored would answer a question nobody asked.
            raise InvalidInput(storable(name, 64) or "query", "is not a parameter of this endpoint")
        if name in integers and not _INTEGER.match(value):
            raise InvalidInput(name, "must be a whole number written in decimal digits")
        if text_problem(name) or len(name) > 64:
            raise InvalidInput("query", "a parameter name is not valid text")
        if problem := text_problem(value):
            raise InvalidInput(name, problem)
        if len(value) > MAX_PARAMETER_LENGTH:
            raise InvalidInput(name, f"at most {MAX_PARAMETER_LENGTH} characters")


#: Handler arguments that are not query parameters.
_NOT_QUERY = frozenset({"request", "state", "scope", "data", "headers", "cookies", "socket"})
_NOT_QUERY_MARKERS = frozenset({ParamType.PATH, ParamType.HEADER, ParamType.COOKIE})


@functools.cache
def _query_parameters(handler: HTTPRouteHandler) -> tuple[frozenset[str], frozenset[str] | None]:
    """``handler``'s integer query parameters, and all its query parameters (``None`` for a
    page of the console, which is not part of the API and takes e.g. ``lang``)."""
    path_names = {
        part.strip("{}").split(":")[0]
        for path in handler.paths
        for part in path.split("/")
        if part.startswith("{")
    }
    integers, known = set(), set()
    for name, field in handler.parsed_fn_signature.parameters.items():
        definition = field.kwarg_definition
        if name in _NOT_QUERY or name in path_names:
            continue
        marker = getattr(definition, "param_type", None)  # QueryParameter, HeaderParameter …
        if marker in _NOT_QUERY_MARKERS:
            continue
        if getattr(definition, "header", None) or getattr(definition, "cookie", None):
            continue  # the older Parameter(header=…) spelling (the console's pages)
        # The name on the wire: QueryParameter(name="from"), or the older Parameter(query=…).
        alias = getattr(definition, "name", None) if marker is ParamType.QUERY else None
        alias = alias or getattr(definition, "query", None)
        wire = alias if isinstance(alias, str) and alias else name
        known.add(wire)
        kinds = (
            [t.annotation for t in field.inner_types] if field.is_optional else [field.annotation]
        )
        if int in kinds and bool not in kinds:
            integers.add(wire)
    return frozenset(integers), (frozenset(known) if handler.include_in_schema else None)
