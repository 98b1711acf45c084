"""Embargoes: an auditor hides a subject's entries from the citizens' access history until a
date, for an investigation (the person looked into must not learn of it from the portal).

An embargo covers one keyed subject — every department's reads of it, or one department's —
through its ``until`` date (district calendar, inclusive), unless lifted earlier. Auditors
still see every entry. Adding and lifting are audit entries themselves
(``audit:embargo:added``, ``audit:embargo:lifted``), written before the change is stored, so
no embargo exists that the log does not name. The access-history adapter reads the table
(:func:`gateway.oversight.adapter.embargoed_departments`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.core.protocol import AuditEvent
from gateway.storage.schema import audit_embargoes

__all__ = ["EVENT_ADDED", "EVENT_LIFTED", "Embargo", "add", "get", "lift", "list_embargoes"]

EVENT_ADDED = AuditEvent.EMBARGO_ADDED
EVENT_LIFTED = AuditEvent.EMBARGO_LIFTED


@dataclass(frozen=True, slots=True)
class Embargo:
    """One embargo as stored."""

    id: str
    subject_hmac: str
    department: str | None
    until: dt.date
    reason: str
    operator: str
    created_at: dt.datetime
    audit_index: int
    lifted_at: dt.datetime | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None
    lift_audit_index: int | None = None

    def in_force(self, today: dt.date) -> bool:
        return self.lifted_at is None and today <= self.until

    def as_json(self, today: dt.date) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_hmac": self.subject_hmac,
            "department": self.department,
            "until": self.until.isoformat(),
            "reason": self.reason,
            "operator": self.operator,
            "created_at": _text(self.created_at),
            "audit_index": self.audit_index,
            "in_force": self.in_force(today),
            "lifted": None
            if self.lifted_at is None
            else {
                "at": _text(self.lifted_at),
                "by": self.lifted_by,
                "reason": self.lift_reason,
                "audit_index": self.lift_audit_index,
            },
        }


def _text(at: dt.datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """A fresh embargo id (known before the audit entry that names it is written)."""
    return "emb-" + secrets.token_hex(8)


def _embargo(row: Any) -> Embargo:
    return Embargo(**{k: row._mapping[k] for k in audit_embargoes.c.keys()})  # noqa: SIM118


def add(engine: sa.Engine, embargo: Embargo) -> None:
    """Store a new embargo (its audit entry is already written)."""
    row = {k: getattr(embargo, k) for k in audit_embargoes.c.keys()}  # noqa: SIM118
    row["created_at"] = embargo.created_at.astimezone(dt.UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_embargoes), row)


def get(engine: sa.Engine, embargo_id: str) -> Embargo | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_embargoes).where(audit_embargoes.c.id == embargo_id)
        ).first()
    return None if row is None else _embargo(row)


def list_embargoes(
    engine: sa.Engine, *, today: dt.date, in_force: bool | None = None, limit: int = 500
) -> list[Embargo]:
    """Embargoes, newest first: all of them, or only those (not) in force today."""
    e = audit_embargoes.c
    query = sa.select(audit_embargoes).order_by(e.created_at.desc(), e.id).limit(limit)
    if in_force is True:
        query = query.where(e.lifted_at.is_(None), e.until >= today)
    elif in_force is False:
        query = query.where(sa.or_(e.lifted_at.is_not(None), e.until < today))
    with engine.connect() as conn:
        return [_embargo(r) for r in conn.execute(query)]


def lift(
    engine: sa.Engine,
    embargo_id: str,
    *,
    at: dt.datetime,
    by: str,
    reason: str,
    audit_index: int,
) -> bool:
    """Mark an embargo lifted; False if it was lifted meanwhile."""
    e = audit_embargoes.c
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(audit_embargoes)
            .where(e.id == embargo_id, e.lifted_at.is_(None))
            .values(
                lifted_at=at.astimezone(dt.UTC),
                lifted_by=by,
                lift_reason=reason,
                lift_audit_index=audit_index,
            )
        ).rowcount
    return bool(done)
