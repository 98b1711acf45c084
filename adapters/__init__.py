"""Connectors to department source systems, one module per kind of source.

A resource's catalogue entry names its adapter (``source.adapter = "sql"``); the module of that
name here provides ``create(resource, *, context)`` returning a
:class:`gateway.core.sources.SourceAdapter`. Adding a kind of source means adding a module
here and nothing in ``gateway/``.
"""

from __future__ import annotations

import importlib
import re

from gateway.core.policy import Resource
from gateway.core.sources import AdapterContext, SourceAdapter
from gateway.errors import ConfigurationError

__all__ = ["create_adapter"]

_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


def create_adapter(resource: Resource, *, context: AdapterContext) -> SourceAdapter:
    """The adapter the catalogue names for ``resource``, built from its ``source`` options."""
    kind = str(resource.source.get("adapter", ""))
    if not _KIND.match(kind):
        raise ConfigurationError([f"resource {resource.id!r}: bad adapter name {kind!r}"])
    try:
        module = importlib.import_module(f"adapters.{kind}")
    except ModuleNotFoundError:
        raise ConfigurationError(
            [f"resource {resource.id!r}: no adapter module adapters.{kind}"]
        ) from None
    adapter: SourceAdapter = module.create(resource, context=context)
    return adapter
