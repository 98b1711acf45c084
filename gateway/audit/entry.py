"""What one audit entry records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.wire import storable
from gateway.storage.schema import audit_entries
from gateway.telemetry.context import current_request_id

__all__ = ["AuditEntry", "Outcome", "SubjectHasher"]


_DETAIL_LIMIT = 2000


class Outcome(enum.StrEnum):
    """Outcome of the audited request."""

    ALLOWED = "allowed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited event. ``subject_hmac`` is keyed, so the log never names a person."""

    at: dt.datetime
    event: str  # e.g. "lookup:record:released", "lookup:record:refused"
    decision: Outcome
    department: str | None = None
    operator: str | None = None
    service_item: str | None = None
    case_number: str | None = None
    reason: str | None = None
    resource: str | None = None
    subject_hmac: str | None = None
    fields: tuple[str, ...] | None = None
    reason_code: str | None = None
    grant_id: str | None = None
    policy_version: str | None = None
    request_hash: str | None = None
    response_hash: str | None = None
    latency_ms: float | None = None
    detail: str | None = None
    #: On a correction entry: the index of the entry whose answer was never handed over.
    withholds: int | None = None
    #: The id of the HTTP request that wrote the entry; by default the request being served
    #: (:func:`gateway.telemetry.context.current_request_id`), none outside a request.
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.request_id is None:
            object.__setattr__(self, "request_id", current_request_id())
        # Storable by construction: whatever a sender managed to put into a field (a claim
        # value, a header member's name inside a message) cannot fail the entry's write —
        # and with it the group commit of other departments' entries. Text that is already
        # safe passes unchanged (one C-level regex search per field).
        for name, limit in _TEXT_LIMITS:
            value = getattr(self, name)
            if value is not None:
                safe = storable(str(value), limit)
                if safe is not value:
                    object.__setattr__(self, name, safe)
        if self.fields is not None:
            object.__setattr__(self, "fields", tuple(storable(f, 64) for f in self.fields))
        if self.latency_ms is not None and not math.isfinite(self.latency_ms):
            object.__setattr__(self, "latency_ms", None)

    def as_row(self) -> dict[str, Any]:
        """The entry as a database row."""
        row = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        # Stored in UTC: SQLite keeps the wall time only, and the leaf names the instant.
        row["at"] = self.at.astimezone(dt.UTC)
        row["decision"] = str(self.decision)
        row["fields"] = None if self.fields is None else json.dumps(list(self.fields))
        return row


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEntry))
#: Text fields and the most characters their column holds (``detail`` is unbounded text in
#: the schema; an entry keeps its first 2,000 characters).
_TEXT_LIMITS = tuple(
    (column.name, getattr(column.type, "length", None) or _DETAIL_LIMIT)
    for column in audit_entries.columns
    if column.name in _ENTRY_FIELDS
    and isinstance(column.type, sa.String)  # Text is a String too
    and column.name not in ("decision", "fields")
)


class SubjectHasher:
    """Keys subject identifiers with HMAC-SHA256 so the log can be searched but not read."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the audit HMAC key must be at least 32 bytes")
        self._key = key

    def __call__(self, subject_type: str, subject_id: str) -> str:
        msg = f"{subject_type}:{subject_id}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()
