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

from gateway.core.sm2 import hmac_sm3
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


#: How an entry keys its subject. HMAC-SHA256 tags are 64 hex digits (every entry before
#: keyings had names); HMAC-SM3 tags carry their name: ``sm3:`` and the first 60 hex digits
#: (240 bits) of the HMAC, so that each entry records which keying it used, stays findable
#: after the setting changes, and fits the same 64 characters (no table is rewritten).
#: Truncating an HMAC is allowed (RFC 2104 §5, NIST SP 800-107 §5.3.3: at least half its
#: length); at 240 bits two subjects share a tag with probability far below 2⁻¹⁸⁰.
SUBJECT_KEYINGS = ("hmac-sha256", "hmac-sm3")
_SM3_TAG_PREFIX = "sm3:"
_SM3_TAG_HEX_DIGITS = 60


class SubjectHasher:
    """Keys subject identifiers (HMAC-SHA256, or HMAC-SM3 for 国密) so that the log can be
    searched but not read.

    New tags use ``keying``; :meth:`tags` gives the tags of a subject under every keying,
    for searches, histories and embargoes to find entries written before a change.
    """

    def __init__(self, key: bytes, *, keying: str = "hmac-sha256") -> None:
        if len(key) < 32:
            raise ValueError("the audit HMAC key must be at least 32 bytes")
        if keying not in SUBJECT_KEYINGS:
            raise ValueError(f"subject keying {keying!r}: one of {', '.join(SUBJECT_KEYINGS)}")
        self._key = key
        self.keying = keying

    def _sha256(self, msg: bytes) -> str:
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _sm3(self, msg: bytes) -> str:
        return _SM3_TAG_PREFIX + hmac_sm3(self._key, msg).hex()[:_SM3_TAG_HEX_DIGITS]

    def __call__(self, subject_type: str, subject_id: str) -> str:
        msg = f"{subject_type}:{subject_id}".encode()
        return self._sm3(msg) if self.keying == "hmac-sm3" else self._sha256(msg)

    def tags(self, subject_type: str, subject_id: str) -> tuple[str, ...]:
        """The subject's tag under every keying, this one's first."""
        msg = f"{subject_type}:{subject_id}".encode()
        both = (self._sha256(msg), self._sm3(msg))
        return both if self.keying == "hmac-sha256" else both[::-1]


def keying_of(tag: str) -> str:
    """Which keying made ``tag`` (as :class:`SubjectHasher` writes them)."""
    return "hmac-sm3" if tag.startswith(_SM3_TAG_PREFIX) else "hmac-sha256"
