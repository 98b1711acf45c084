"""The protocol every source adapter implements (see the ``adapters`` package).

A source adapter reads one catalogued resource from its provider's own system. The gateway
core defines only this protocol; each kind of source (SQL database, HTTP API, uploaded files)
is one module in ``adapters/`` so adding a kind never changes the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["SourceAdapter", "SourceRecord"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as the provider's source holds it, with where and when it was read."""

    values: Mapping[str, Any]
    source: str  # a non-secret description of the source, e.g. "sql:enterprises"
    as_of: str  # RFC 3339 time the values are current as of


class SourceAdapter(Protocol):
    """Reads records of one resource, keyed by the subject identifier."""

    async def fetch(self, subject: str, fields: Sequence[str]) -> SourceRecord | None:
        """The record for ``subject`` with at least ``fields``, or ``None`` if none exists.

        Raise :class:`~gateway.errors.StoreUnavailable` when the source cannot answer.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
