"""Upload source adapter: records that a provider uploads to the gateway as files.

Catalogue options (``[resource.source]``, see :mod:`gateway.uploads.options`)::

    adapter = "upload"
    key = "id_number"        # column / member of the files holding the subject id
    keep_versions = 3        # accepted versions kept, the current one included
    required = ["name"]      # fields every row must have (besides the key)
    max_bytes = 1073741824   # largest file accepted

The provider sends files through ``POST /v1/uploads/{resource}`` (see
:mod:`gateway.uploads.service`); each accepted file becomes a version in the gateway's own
database. This adapter answers lookups from the CURRENT version, reading the version pointer,
the version and the subject's row in one statement: an upload that replaces the version
meanwhile is seen entirely or not at all.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.core.policy import FieldType, Resource
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout
from gateway.storage.database import ShortReads
from gateway.uploads.options import UploadOptions
from gateway.uploads.store import CurrentRow, read_current

__all__ = ["UploadSourceAdapter", "create"]

_decode = msgspec.json.Decoder().decode


def _coerce(value: Any, kind: FieldType) -> Any:
    # Rows were type-checked on upload; this only keeps the answer's types exact (a number
    # stored as 3 answers 3.0) and refuses a stored value that no longer fits the catalogue.
    if value is None:
        return None
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise TypeError(kind)
        return value
    if kind is FieldType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(kind)
        return value
    if kind is FieldType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(kind)
        return float(value)
    if not isinstance(value, str):
        raise TypeError(kind)
    return value


class UploadSourceAdapter:
    """Reads one uploaded resource's current version from the gateway's database."""

    def __init__(self, *, resource: Resource, engine: sa.Engine) -> None:
        self._resource = resource
        self._engine = engine
        self._types = {f.name: f.type for f in resource.fields}
        self.description = f"upload:{resource.id}"
        self._reads = ShortReads(engine)  # as for SQL sources

    def _read(self, subject: str) -> CurrentRow | None:
        with self._engine.connect() as conn:
            return read_current(conn, resource=self._resource.id, subject=subject)

    async def fetch(self, subject: str) -> SourceRecord | None:
        """The subject's record in the current version, or ``None`` if it has none."""
        rid = self._resource.id
        try:
            row = await self._reads.run(self._read, subject)
        except OperationalError as exc:
            if "timeout" in str(exc.orig).lower() or "canceling statement" in str(exc.orig):
                raise SourceTimeout(rid, "statement timed out") from None
            raise SourceFailed(rid, "database unreachable or failing") from None
        except SQLAlchemyError:
            raise SourceFailed(rid, "query failed") from None
        if row is None:
            return None
        try:
            stored = _decode(row.data)
            if not isinstance(stored, dict):
                raise TypeError("row")
            values = {name: _coerce(stored.get(name), kind) for name, kind in self._types.items()}
        except (msgspec.DecodeError, TypeError):
            raise SourceFailed(rid, "a stored value does not match the field's type") from None
        return SourceRecord(
            values=values,
            source=self.description,
            as_of=row.uploaded_at.isoformat(timespec="seconds"),
            version=str(row.version),
        )

    async def close(self) -> None:
        """Nothing to release: the engine is the gateway's own, disposed of by the runtime."""


def create(resource: Resource, *, context: AdapterContext) -> UploadSourceAdapter:
    """Build the adapter; bad upload options fail here, i.e. at start or reload."""
    UploadOptions.from_resource(resource)
    if not isinstance(context.database, sa.Engine):
        raise ConfigurationError([f"resource {resource.id!r}: upload sources need the database"])
    return UploadSourceAdapter(resource=resource, engine=context.database)
