"""Licence source adapter: e-licences of one type, shared through the ordinary lookup path.

Catalogue options (``[resource.source]``)::

    adapter = "licence"
    type_code = "11430600006122001T001"   # the licence type (defining authority USCC + 3 digits)

Licences live in the gateway's own database (published by issuers through
``POST /v1/licences``). A record is the holder's current licence of the type: the newest one
not superseded, a live one (valid or suspended) before ended ones. Its fields are named by
the catalogue and read from:

- ``sealed`` — the sealed licence itself (compact JWS), so the consumer can verify it again;
- ``qr`` — its QR payload; ``status`` — its stored status; ``status_list``/``status_index``;
- any member of the licence content (``licence_id``, ``holder_name``, ``valid_until`` …);
- otherwise the type-specific field of that name (``type_fields``), e.g. ``经营范围``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.core.licences import LicenceContent, LicenceRecord, qr_payload
from gateway.core.policy import FieldType, Resource
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.errors import ConfigurationError, SourceFailed, StoreUnavailable
from gateway.licensing.store import LicenceStore

__all__ = ["LicenceSourceAdapter", "create"]

_CONTENT_FIELDS = frozenset(f.name for f in msgspec.structs.fields(LicenceContent)) - {
    "type_fields",
    "status",
}
_RECORD_FIELDS: dict[str, Callable[[LicenceRecord], Any]] = {
    "sealed": lambda r: r.sealed,
    "qr": lambda r: qr_payload(r.content),
    "status": lambda r: str(r.status),
    "status_list": lambda r: r.status_ref.list_id,
    "status_index": lambda r: r.status_ref.index,
}


def _value(record: LicenceRecord, name: str, kind: FieldType) -> Any:
    if name in _RECORD_FIELDS:
        value = _RECORD_FIELDS[name](record)
    elif name in _CONTENT_FIELDS:
        value = getattr(record.content, name)
    else:
        value = record.content.type_fields.get(name)
    if isinstance(value, dt.date):
        return value.isoformat()
    if kind is FieldType.STRING and value is not None and not isinstance(value, str):
        return str(value)  # enum members (holder_id_type) and numbers in text fields
    return value


class LicenceSourceAdapter:
    """Reads the holder's current licence of one type from the licence registry."""

    def __init__(self, *, resource: Resource, store: LicenceStore, type_code: str) -> None:
        self._resource = resource
        self._store = store
        self._type_code = type_code
        self._fields = {f.name: f.type for f in resource.fields}
        self.description = f"licence:{type_code}"

    async def fetch(self, subject: str) -> SourceRecord | None:
        """The holder's current licence of this type, or ``None`` if it holds none."""
        try:
            record = await asyncio.to_thread(self._store.by_holder, self._type_code, subject)
        except StoreUnavailable:
            raise SourceFailed(self._resource.id, "licence registry unreachable") from None
        if record is None:
            return None
        return SourceRecord(
            values={name: _value(record, name, kind) for name, kind in self._fields.items()},
            source=self.description,
            as_of=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            version=record.content.licence_id,
        )

    async def close(self) -> None:
        """Nothing to release: the engine is the gateway's own."""


def create(resource: Resource, *, context: AdapterContext) -> LicenceSourceAdapter:
    """Build the adapter; a missing or malformed ``type_code`` fails at start or reload."""
    type_code = resource.source.get("type_code")
    if not isinstance(type_code, str) or len(type_code) != 21 or not type_code[18:].isdigit():
        raise ConfigurationError(
            [f"resource {resource.id!r}: source.type_code must be a USCC followed by 3 digits"]
        )
    unknown = set(resource.source) - {"adapter", "type_code"}
    if unknown:
        raise ConfigurationError(
            [f"resource {resource.id!r}: unknown source options {', '.join(sorted(unknown))}"]
        )
    if not isinstance(context.database, sa.Engine):
        raise ConfigurationError([f"resource {resource.id!r}: licence sources need the database"])
    return LicenceSourceAdapter(
        resource=resource, store=LicenceStore(context.database), type_code=type_code
    )
