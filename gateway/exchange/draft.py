"""What the entries of one request share, typed: the draft that every entry is made from."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from gateway.audit import AuditEntry, Outcome
from gateway.core.protocol import AuditEvent

__all__ = ["AuditDraft", "elapsed_ms"]


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``perf_counter`` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(slots=True)
class AuditDraft:
    """The fields every audit entry of one request shares, filled in as they become known
    (who sent it once the token verified, why once the claims parsed, which record once the
    query is read); :meth:`entry` makes an entry of it."""

    at: dt.datetime
    started: float  # perf_counter reading at arrival: the entries' latency
    request_hash: str | None = None
    policy_version: str | None = None
    department: str | None = None
    operator: str | None = None
    service_item: str | None = None
    case_number: str | None = None
    reason: str | None = None
    resource: str | None = None
    subject_hmac: str | None = None
    fields: tuple[str, ...] | None = None
    grant_id: str | None = None

    def but(self, **changes: Any) -> AuditDraft:
        """A copy with ``changes`` (one query of a batch, say)."""
        return dataclasses.replace(self, **changes)

    def entry(self, event: AuditEvent | str, decision: Outcome, **fields: Any) -> AuditEntry:
        """The entry: the draft's fields, then ``fields`` (which may override them)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _SHARED}
        values.update(fields)
        values.setdefault("latency_ms", elapsed_ms(self.started))
        return AuditEntry(event=str(event), decision=decision, **values)


_SHARED = tuple(f.name for f in dataclasses.fields(AuditDraft) if f.name != "started")
