"""Access-history source adapter: who read a subject's data, from the gateway's own audit log.

Catalogue options (``[resource.source]``)::

    adapter = "audit"
    events = ["lookup:record:released", "licence:verification:performed"]   # the default

A record of such a resource is one **access**: an allowed read of the subject's data recorded
in the audit log — a released lookup or a licence verification, never a refusal. Its fields
are named by the catalogue, each one of :data:`ACCESS_FIELDS`: ``at`` (RFC 3339, UTC),
``department`` (who read), ``service_item`` and ``case_number`` (for what), ``resource`` (what
was read: a resource id, or ``licence:<type code>`` for a verification) and ``fields`` (the
fields released, comma-separated).

The log keys subjects with the audit secret, so this adapter is asked by **keyed** subject
(the HMAC the audit log holds, 64 hex characters): ``GET /v1/audit/subjects/{type:id}/accesses``
keys the subject before it gets here (:meth:`AccessHistorySource.accesses`). A signed lookup
of the resource passes a subject identifier in clear, which is never a key, so it finds no
record: the access history is read through its own endpoint only.

Embargoes (table ``audit_embargoes``) that are in force on the district's date hide the
subject's accesses — all of them, or one department's — from this view; auditors still see
every entry through the officers' search.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gateway.core.policy import DISTRICT_TZ, Resource
from gateway.core.protocol import AuditEvent
from gateway.core.sources import AdapterContext, SourceRecord
from gateway.errors import ConfigurationError, SourceFailed, SourceTimeout
from gateway.oversight.history import Access, AccessPage
from gateway.storage.schema import audit_embargoes, audit_entries

__all__ = [
    "ACCESS_FIELDS",
    "DEFAULT_EVENTS",
    "AccessHistorySource",
    "create",
    "embargoed_departments",
]

#: The events that are accesses to a subject's data (allowed reads), unless the catalogue
#: names others.
DEFAULT_EVENTS = (
    AuditEvent.LOOKUP_RELEASED,
    AuditEvent.VERIFICATION_PERFORMED,
    AuditEvent.RECEIPT_PRINTED,  # the print page shows the licence, holder included, again
)
#: What a record of an access-history resource can hold (its catalogue fields).
ACCESS_FIELDS = ("at", "department", "service_item", "case_number", "resource", "fields")
MAX_PAGE = 500

#: A keyed subject: HMAC-SHA256 (64 hex) or HMAC-SM3 (``sm3:`` and 60 hex).
_KEYED = re.compile(r"^([0-9a-f]{64}|sm3:[0-9a-f]{60})$")
_ALL = "*"  # an embargo of every department's reads


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back the UTC wall time it stored
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def embargoed_departments(
    conn: sa.Connection, tags: Sequence[str], today: dt.date
) -> frozenset[str]:
    """Departments whose reads of the subject (its ``tags`` under every keying) are
    embargoed today (``"*"``: every one)."""
    rows = conn.execute(
        sa.select(audit_embargoes.c.department).where(
            audit_embargoes.c.subject_hmac.in_(tags),
            audit_embargoes.c.lifted_at.is_(None),
            audit_embargoes.c.until >= today,
        )
    ).scalars()
    return frozenset(_ALL if d is None else d for d in rows)


class AccessHistorySource:
    """Reads a keyed subject's accesses from the audit log, embargoes applied."""

    def __init__(self, *, resource: Resource, engine: sa.Engine, events: Sequence[str]) -> None:
        self._resource = resource
        self._engine = engine
        self._events = tuple(events)
        self.description = "audit:access-history"

    def _read(self, tags: tuple[str, ...], before: int | None, limit: int) -> AccessPage:
        e = audit_entries.c
        corrections = audit_entries.alias("corrections")
        today = dt.datetime.now(DISTRICT_TZ).date()
        with self._engine.connect() as conn:
            hidden = embargoed_departments(conn, tags, today)
            if _ALL in hidden:
                return AccessPage([], None)
            query = (
                sa.select(
                    e.idx,
                    e.at,
                    e.event,
                    e.department,
                    e.service_item,
                    e.case_number,
                    e.resource,
                    e.fields,
                )
                # (subject_hmac, idx) index: a range scan per tag, newest first.
                .where(
                    e.subject_hmac.in_(tags),
                    e.event.in_(self._events),
                    e.decision == "allowed",
                    # A read whose answer was never handed over (a correction names it) is
                    # no access: nobody received the data.
                    ~sa.exists().where(corrections.c.withholds == e.idx),
                )
                .order_by(e.idx.desc())
                .limit(limit + 1)
            )
            if hidden:
                query = query.where(
                    sa.or_(e.department.is_(None), e.department.not_in(sorted(hidden)))
                )
            if before is not None:
                query = query.where(e.idx < before)
            rows = conn.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        accesses = [
            Access(
                index=int(r.idx),
                event=r.event,
                values={
                    "at": _utc_text(r.at),
                    "department": r.department,
                    "service_item": r.service_item,
                    "case_number": r.case_number,
                    "resource": r.resource,
                    "fields": None if r.fields is None else ",".join(json.loads(r.fields)),
                },
            )
            for r in rows
        ]
        return AccessPage(accesses, accesses[-1].index if more else None)

    async def accesses(
        self, subject: str | Sequence[str], *, before: int | None = None, limit: int = 100
    ) -> AccessPage:
        """The keyed subject's accesses (by its tag, or its tags under every keying), newest
        first, at most ``limit`` (≤ 500), older than entry ``before`` when given; those
        under an embargo in force are left out."""
        tags = (subject,) if isinstance(subject, str) else tuple(subject)
        if not tags or not all(_KEYED.match(t) for t in tags):
            raise ValueError("the access history is read by keyed subject (64 hex or sm3:60 hex)")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        rid = self._resource.id
        try:
            return await asyncio.to_thread(self._read, tags, before, limit)
        except OperationalError as exc:
            if "timeout" in str(exc.orig).lower() or "canceling statement" in str(exc.orig):
                raise SourceTimeout(rid, "statement timed out") from None
            raise SourceFailed(rid, "audit store unreachable or failing") from None
        except SQLAlchemyError:
            raise SourceFailed(rid, "query failed") from None

    async def fetch(self, subject: str) -> SourceRecord | None:
        """The latest access to a keyed subject; ``None`` for a subject in clear (see the
        module's docstring) or one with no visible access."""
        if not _KEYED.match(subject):
            return None
        page = await self.accesses(subject, limit=1)
        if not page.accesses:
            return None
        latest = page.accesses[0]
        return SourceRecord(
            values={f.name: latest.values.get(f.name) for f in self._resource.fields},
            source=self.description,
            as_of=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    async def close(self) -> None:
        """Nothing to release: the engine is the gateway's own."""


def create(resource: Resource, *, context: AdapterContext) -> AccessHistorySource:
    """Build the adapter; unknown options or fields fail here, i.e. at start or reload."""
    where = f"resource {resource.id!r}"
    problems: list[str] = []
    unknown = set(resource.source) - {"adapter", "events"}
    if unknown:
        problems.append(f"{where}: unknown source options {', '.join(sorted(unknown))}")
    events = resource.source.get("events", DEFAULT_EVENTS)
    if (
        not isinstance(events, list | tuple)
        or not events
        or not all(isinstance(e, str) and e for e in events)
    ):
        problems.append(f"{where}: source.events must be a non-empty list of event names")
        events = DEFAULT_EVENTS
    bad = [f.name for f in resource.fields if f.name not in ACCESS_FIELDS]
    if bad:
        problems.append(
            f"{where}: fields {', '.join(bad)} are not access fields ({', '.join(ACCESS_FIELDS)})"
        )
    if not isinstance(context.database, sa.Engine):
        problems.append(f"{where}: access-history sources need the gateway's database")
    if problems:
        raise ConfigurationError(problems)
    return AccessHistorySource(resource=resource, engine=context.database, events=events)
