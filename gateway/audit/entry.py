"""What one audit entry records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditEntry", "Outcome", "SubjectHasher"]


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

    def as_row(self) -> dict[str, Any]:
        """The entry as a database row."""
        row = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        # Stored in UTC: SQLite keeps the wall time only, and the leaf names the instant.
        row["at"] = self.at.astimezone(dt.UTC)
        row["decision"] = str(self.decision)
        row["fields"] = None if self.fields is None else json.dumps(list(self.fields))
        return row


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEntry))


class SubjectHasher:
    """Keys subject identifiers with HMAC-SHA256 so the log can be searched but not read."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the audit HMAC key must be at least 32 bytes")
        self._key = key

    def __call__(self, subject_type: str, subject_id: str) -> str:
        msg = f"{subject_type}:{subject_id}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()
