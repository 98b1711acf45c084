"""Connectors to department source systems, one module per kind of source.

A resource's catalogue entry names its adapter (``source.adapter = "sql"``); the module of that
name here provides ``create(resource, *, context)`` returning a
:class:`gateway.core.sources.SourceAdapter`. Adding a kind of source means adding a module
here and nothing in ``gateway/``.

Sources kept by the gateway itself live with their feature (:data:`INTERNAL`): licences in
``gateway.licensing.adapter``, uploaded tables in ``gateway.uploads.adapter``, the access
history in ``gateway.oversight.adapter``.
"""

from __future__ import annotations

import importlib
import re

from gateway.core.policy import Resource
from gateway.core.sources import AdapterContext, SourceAdapter
from gateway.errors import ConfigurationError

__all__ = ["INTERNAL", "create_adapter"]

#: Kinds of source the gateway keeps itself, and the feature module that reads each.
INTERNAL = {
    "audit": "gateway.oversight.adapter",
    "licence": "gateway.licensing.adapter",
    "upload": "gateway.uploads.adapter",
}

_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


def create_adapter(resource: Resource, *, context: AdapterContext) -> SourceAdapter:
    """The adapter the catalogue names for ``resource``, built from its ``source`` options."""
    kind = str(resource.source.get("adapter", ""))
    if not _KIND.match(kind):
        raise ConfigurationError([f"resource {resource.id!r}: bad adapter name {kind!r}"])
    try:
        module = importlib.import_module(INTERNAL.get(kind, f"adapters.{kind}"))
    except ModuleNotFoundError:
        raise ConfigurationError(
            [f"resource {resource.id!r}: no adapter module adapters.{kind}"]
        ) from None
    adapter: SourceAdapter = module.create(resource, context=context)
    return adapter
