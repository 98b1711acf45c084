"""The protocol every source adapter implements (see the ``adapters`` package).

A source adapter reads one catalogued resource from its provider's own system. The gateway
core defines only this protocol and the context an adapter is built with; each kind of source
(SQL database, HTTP API, uploaded files) is one module in ``adapters/`` providing
``create(resource, *, context) -> SourceAdapter``, so adding a kind never changes the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AdapterContext", "SourceAdapter", "SourceRecord"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as the provider's source holds it, with where and when it was read.

    ``values`` holds every field of the resource the source has (the gateway keeps only the
    granted ones when it releases data, and may cache the whole record).
    """

    values: Mapping[str, Any]
    source: str  # a non-secret description of the source, e.g. "sql:enterprises"
    as_of: str  # RFC 3339 time the values are current as of
    version: str | None = None  # which upload version answered, for uploaded resources


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the gateway hands an adapter when it builds one (once, at start or reload)."""

    data_dir: Path  # substituted for ``{data_dir}`` in source options
    database: Any  # the gateway's own SQLAlchemy engine (uploaded versions live there)
    gateway_id: str  # ``iss`` of tokens the gateway signs towards a source
    sign: Callable[[Mapping[str, Any], str], str]  # sign(claims, typ) with the gateway key
    environ: Mapping[str, str]  # where secrets named by the catalogue are read


class SourceAdapter(Protocol):
    """Reads records of one resource, keyed by the subject identifier."""

    async def fetch(self, subject: str) -> SourceRecord | None:
        """The record for ``subject``, or ``None`` if the source holds none.

        Raise :class:`~gateway.errors.SourceTimeout` when the source does not answer within
        its deadline and :class:`~gateway.errors.SourceFailed` when it fails or answers
        something malformed — never a partial record.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
