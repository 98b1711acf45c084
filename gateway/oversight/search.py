"""Searching and exporting the audit log for security officers.

Filters are equality tests on the entry's columns (``event`` also by prefix, ``lookup:*``),
a time range on ``at`` and a subject — which arrives as ``type:id`` and is keyed with the
audit secret here, so only its HMAC ever reaches a query, a log line or an entry.

Paging is keyset paging on the entry index (``idx > cursor ORDER BY idx LIMIT n``; the
indexes of migration 0006 make it a range scan for the common filters): a page costs the same
at entry ten or ten million, and it is stable while entries keep arriving — the sequencer
hands out indexes in commit order under one lock, so an entry that was not visible when a
page was read has a higher index than every entry of that page, and appears on a later page,
never skipped, never twice. The export reads the same way in batches up to the tree size at
its start (a snapshot that ends even while entries keep arriving), each batch one short query,
so memory stays constant for any number of entries.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import datetime as dt
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import sqlalchemy as sa

from gateway.audit.tree import tree_size
from gateway.core.identifiers import parse_subject
from gateway.errors import InvalidInput
from gateway.storage.schema import audit_entries

__all__ = [
    "CSV_BOM",
    "EXPORT_COLUMNS",
    "EXPORT_MEDIA_TYPES",
    "MAX_PAGE",
    "EntryFilter",
    "EntryPage",
    "Order",
    "decode_cursor",
    "encode_cursor",
    "encode_export",
    "entry_json",
    "export_batches",
    "export_chunks",
    "export_size",
    "parse_filter",
    "parse_subject_text",
    "parse_time",
    "read_page",
]

MAX_PAGE = 500
EXPORT_BATCH = 2000
_WINDOW = 8  # an export query looks at most this many batches of indexes
#: What a CSV export starts with: the UTF-8 byte order mark.
CSV_BOM = "\ufeff".encode()
#: Media type of each export format.
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}  # UTF-8
#: The columns of an export, in order (CSV header, JSON Lines members).
EXPORT_COLUMNS = (
    "index",
    "at",
    "event",
    "decision",
    "department",
    "operator",
    "service_item",
    "case_number",
    "reason",
    "resource",
    "subject_hmac",
    "fields",
    "reason_code",
    "grant_id",
    "policy_version",
    "request_hash",
    "response_hash",
    "latency_ms",
    "detail",
    "withholds",
    "request_id",
)

Order = Literal["asc", "desc"]
#: A subject's tags under every keying, the one new entries use first
#: (:meth:`gateway.audit.entry.SubjectHasher.tags`).
SubjectKeyer = Callable[[str, str], tuple[str, ...]]

_NAME = re.compile(r"^[A-Za-z0-9_.:*-]{1,64}$")
_DECISIONS = ("allowed", "refused")


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """What an officer looks for; every given condition must hold."""

    since: dt.datetime | None = None  # ``from``, inclusive
    until: dt.datetime | None = None  # exclusive
    department: str | None = None
    operator: str | None = None
    resource: str | None = None
    item: str | None = None
    case: str | None = None
    decision: str | None = None
    event: str | None = None  # exact, or a prefix when it ends with "*"
    #: The subject's tags under every keying (entries written before a change of keying
    #: carry the other one); the first is the keying in use.
    subject_tags: tuple[str, ...] | None = None

    @property
    def subject_hmac(self) -> str | None:
        """The subject's tag under the keying in use (for the entry that records a search)."""
        return self.subject_tags[0] if self.subject_tags else None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The filter as SQL conditions on ``audit_entries``."""
        e = audit_entries.c
        out: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            out.append(e.at >= _db_time(self.since))
        if self.until is not None:
            out.append(e.at < _db_time(self.until))
        for column, value in (
            (e.department, self.department),
            (e.operator, self.operator),
            (e.resource, self.resource),
            (e.service_item, self.item),
            (e.case_number, self.case),
            (e.decision, self.decision),
        ):
            if value is not None:
                out.append(column == value)
        if self.subject_tags is not None:
            out.append(e.subject_hmac.in_(self.subject_tags))
        if self.event is not None:
            if self.event.endswith("*"):
                prefix = self.event[:-1].replace("\\", "\\\\")
                prefix = prefix.replace("%", "\\%").replace("_", "\\_")
                out.append(e.event.like(prefix + "%", escape="\\"))
            else:
                out.append(e.event == self.event)
        return out

    def described(self) -> str:
        """The filter in words for an audit entry (the subject only as 'by subject')."""
        parts = [
            f"{name}={value.isoformat() if isinstance(value, dt.datetime) else value}"
            for name, value in (
                ("from", self.since),
                ("until", self.until),
                ("department", self.department),
                ("operator", self.operator),
                ("resource", self.resource),
                ("item", self.item),
                ("case", self.case),
                ("decision", self.decision),
                ("event", self.event),
            )
            if value is not None
        ]
        if self.subject_tags is not None:
            parts.append("subject=<keyed>")
        return " ".join(parts) or "all entries"


def _db_time(value: dt.datetime) -> dt.datetime:
    # Entries are stored in UTC; SQLite compares the wall time as text, so bounds must be in
    # UTC too (PostgreSQL compares instants either way).
    return value.astimezone(dt.UTC)


def parse_time(text: str, name: str) -> dt.datetime:
    """An RFC 3339 date-time with its offset (``Z`` or ``±hh:mm``)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            name, "must be an RFC 3339 date-time, e.g. 2026-06-10T08:00:00Z"
        ) from None
    if value.tzinfo is None or "T" not in text.upper():
        raise InvalidInput(name, "must be an RFC 3339 date-time with a time zone offset")
    return value


def parse_subject_text(text: str, name: str = "subject") -> tuple[str, str]:
    """``type:id`` → (type, id), the identifier's check character verified."""
    kind, sep, ident = text.partition(":")
    if not sep:
        raise InvalidInput(name, "must be type:id, e.g. uscc:91430671AUDLE3UHM0")
    try:
        subject = parse_subject(kind, ident)
    except InvalidInput as exc:
        raise InvalidInput(name, exc.reason) from None
    return str(subject.type), subject.value


def _name(params: Mapping[str, str | None], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not _NAME.match(value):
        raise InvalidInput(key, "must be 1-64 letters, digits or _ . : - characters")
    return value


def parse_filter(params: Mapping[str, str | None], *, key_subject: SubjectKeyer) -> EntryFilter:
    """The filter named by query parameters (``from``, ``until``, ``department``,
    ``operator``, ``resource``, ``item``, ``case``, ``decision``, ``event``, ``subject``)."""
    since = params.get("from")
    until = params.get("until")
    flt = EntryFilter(
        since=parse_time(since, "from") if since else None,
        until=parse_time(until, "until") if until else None,
        department=_name(params, "department"),
        operator=_name(params, "operator"),
        resource=_name(params, "resource"),
        item=_name(params, "item"),
        case=_name(params, "case"),
        decision=_name(params, "decision"),
        event=_name(params, "event"),
    )
    if flt.since and flt.until and flt.until <= flt.since:
        raise InvalidInput("until", "must be after from")
    if flt.decision is not None and flt.decision not in _DECISIONS:
        raise InvalidInput("decision", "must be allowed or refused")
    if flt.event is not None and "*" in flt.event[:-1]:
        raise InvalidInput("event", "may end with * (a prefix), nowhere else")
    subject = params.get("subject")
    if subject:
        kind, ident = parse_subject_text(subject)
        flt = _with_subject(flt, key_subject(kind, ident))
    return flt


def _with_subject(flt: EntryFilter, tags: tuple[str, ...]) -> EntryFilter:
    values = {f: getattr(flt, f) for f in EntryFilter.__dataclass_fields__}
    values["subject_tags"] = tags
    return EntryFilter(**values)


# --- cursors ---------------------------------------------------------------------------------


def encode_cursor(order: Order, index: int) -> str:
    """An opaque cursor: continue after entry ``index`` in ``order``."""
    raw = f"v1:{order}:{index}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[Order, int]:
    """The order and last index of a cursor made by :func:`encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        version, order, index = raw.split(":")
        if version != "v1" or order not in ("asc", "desc") or not index.isdigit():
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this gateway gave out") from None
    return ("asc" if order == "asc" else "desc"), int(index)


# --- pages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryPage:
    """One page: the rows, the cursor of the next page (None: no more now), the tree size."""

    rows: Sequence[Any]
    next: str | None
    tree_size: int
    order: Order = "asc"


def read_page(
    engine: sa.Engine,
    flt: EntryFilter,
    *,
    order: Order = "asc",
    after: int | None = None,
    limit: int = 100,
) -> EntryPage:
    """Up to ``limit`` entries matching ``flt`` after entry ``after`` (in ``order``)."""
    e = audit_entries.c
    query = sa.select(audit_entries).where(*flt.conditions())
    if order == "asc":
        if after is not None:
            query = query.where(e.idx > after)
        query = query.order_by(e.idx.asc())
    else:
        if after is not None:
            query = query.where(e.idx < after)
        query = query.order_by(e.idx.desc())
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit + 1)).all()
        # Read after the page: every entry on it is in a tree at least this large.
        size = tree_size(conn)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(order, int(rows[-1].idx)) if more else None
    return EntryPage(rows, cursor, size, order)


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back the UTC wall time it stored
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _values(row: Any) -> dict[str, Any]:
    fields = row.fields
    return {
        "index": int(row.idx),
        "at": _utc_text(row.at),
        "event": row.event,
        "decision": row.decision,
        "department": row.department,
        "operator": row.operator,
        "service_item": row.service_item,
        "case_number": row.case_number,
        "reason": row.reason,
        "resource": row.resource,
        "subject_hmac": row.subject_hmac,
        "fields": None if fields is None else json.loads(fields),
        "reason_code": row.reason_code,
        "grant_id": row.grant_id,
        "policy_version": row.policy_version,
        "request_hash": row.request_hash,
        "response_hash": row.response_hash,
        "latency_ms": row.latency_ms,
        "detail": row.detail,
        "withholds": None if row.withholds is None else int(row.withholds),
        "request_id": row.request_id,
    }


def entry_json(row: Any, size: int) -> dict[str, Any]:
    """An entry as the search answers it, with the link to its inclusion proof in the tree of
    ``size`` entries (None if the tree does not hold it yet)."""
    values = _values(row)
    index = values["index"]
    values["proof"] = (
        f"/v1/audit/proofs/inclusion?index={index}&size={size}" if index <= size else None
    )
    return values


# --- export ----------------------------------------------------------------------------------


def export_size(engine: sa.Engine) -> int:
    """The last entry an export started now includes: the log's size at this instant."""
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(audit_entries.c.idx))).scalar()
    return int(last or 0)


_EXPORT_SELECT = [audit_entries.c["idx" if c == "index" else c] for c in EXPORT_COLUMNS]
_AT, _FIELDS = EXPORT_COLUMNS.index("at"), EXPORT_COLUMNS.index("fields")
# Free text and names that came from departments: what CSV injection could use.
_TEXT = tuple(
    EXPORT_COLUMNS.index(c)
    for c in (
        "department",
        "operator",
        "service_item",
        "case_number",
        "reason",
        "resource",
        "reason_code",
        "grant_id",
        "detail",
    )
)


def export_batches(
    engine: sa.Engine, flt: EntryFilter, *, upto: int, batch: int = EXPORT_BATCH
) -> Iterator[Sequence[Any]]:
    """Every entry matching ``flt`` up to entry ``upto``, in index order, ``batch`` at a time
    as tuples of :data:`EXPORT_COLUMNS`; each batch is one short query (keyset), and no
    transaction stays open between batches."""
    e = audit_entries.c
    conditions = flt.conditions()
    after = 0
    while after < upto:
        # A bounded range of indexes per query, so that its cost is bounded whatever plan
        # the database picks (fresh statistics or not) — a range scan of the primary key.
        end = min(upto, after + batch * _WINDOW)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(*_EXPORT_SELECT)
                .where(*conditions, e.idx > after, e.idx <= end)
                .order_by(e.idx.asc())
                .limit(batch)
            ).all()
        if rows:
            yield rows
        after = int(rows[-1][0]) if len(rows) == batch else end


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = frozenset("=+-@\t\r")
_encode_json = msgspec.json.Encoder().encode
_decode_list = msgspec.json.Decoder(list[str]).decode


def _csv_rows(rows: Sequence[Any]) -> Iterator[list[Any]]:
    for row in rows:
        values = list(row)
        values[_AT] = _utc_text(values[_AT])
        fields = values[_FIELDS]
        if fields is not None:
            values[_FIELDS] = " ".join(_decode_list(fields))
        # Reasons, details, case numbers come from departments: a cell a spreadsheet would
        # run gets a leading apostrophe. JSON Lines keeps every value exact.
        for i in _TEXT:
            text = values[i]
            if text and text[0] in _FORMULA_START:
                values[i] = "'" + text
        yield values


def _json_line(row: Any) -> bytes:
    values = list(row)
    values[_AT] = _utc_text(values[_AT])
    fields = values[_FIELDS]
    if fields is not None:
        values[_FIELDS] = msgspec.Raw(fields.encode())  # stored as JSON already
    return _encode_json(dict(zip(EXPORT_COLUMNS, values, strict=True))) + b"\n"


def encode_export(rows: Sequence[Any], fmt: str, *, header: bool = False) -> bytes:
    """A batch of :func:`export_batches` rows as CSV (the header row first when ``header``)
    or JSON Lines."""
    if fmt == "jsonl":
        return b"".join([_json_line(r) for r in rows])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(EXPORT_COLUMNS)
    writer.writerows(_csv_rows(rows))
    return out.getvalue().encode("utf-8")


async def export_chunks(
    engine: sa.Engine, flt: EntryFilter, *, fmt: str, upto: int
) -> AsyncIterator[bytes]:
    """An export's body: the CSV byte order mark and header, then one chunk per batch. Each batch is
    read in a worker thread while nothing else is held, so memory stays constant however
    many entries match, and a slow reader only slows the reads."""
    batches = export_batches(engine, flt, upto=upto)
    if fmt == "csv":
        # A byte order mark first: without it a spreadsheet opens UTF-8 as the local code
        # page, and every Chinese reason and name turns to mojibake.
        yield CSV_BOM + encode_export([], fmt, header=True)
    while True:
        rows = await asyncio.to_thread(next, batches, None)
        if rows is None:
            return
        yield encode_export(rows, fmt)
