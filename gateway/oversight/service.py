"""The security officers' service: search and export the log, embargoes, alerts — and, for
the portal department, the citizens' access history (:mod:`gateway.oversight.history`).

Officers authenticate with the ``auditor`` role's bearer token (``keys/operators/auditor.token``,
made by ``gateway init``), never with a department's key. What this module adds to the log:
an export is recorded (``audit:entries:exported``) before its first byte leaves, and so are
embargoes added and lifted. A subject given to a search, an export or an embargo is keyed
with the audit secret on the way in; only its HMAC is queried, stored or recorded.

The alert rules are pure (:mod:`gateway.oversight.alerts`); :func:`compute_alerts` is the query
layer that feeds them a time window of entries and each department's usual hourly rate, for
``GET /v1/audit/alerts`` and ``gateway audit alerts`` alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.entry import AuditEntry, Outcome
from gateway.core.policy import DISTRICT_TZ, PolicySet
from gateway.core.protocol import AuditEvent
from gateway.core.sources import SourceAdapter
from gateway.core.wire import Name, Text, WireError, convert, decode_json
from gateway.errors import ConfigurationError, InvalidInput, RecordNotFound, StoreUnavailable
from gateway.exchange import SignedExchanges
from gateway.oversight import embargoes
from gateway.oversight.alerts import (
    LOGIN_EVENTS,
    READ_EVENTS,
    WATCHED_REASONS,
    AlertEntry,
    AlertRules,
    Expiring,
    GrantQuota,
    WorkingHours,
    evaluate,
    expiry_alerts,
    hourly_medians,
)
from gateway.oversight.history import AccessHistoryService
from gateway.oversight.refusals import RefusalService
from gateway.oversight.search import (
    EXPORT_MEDIA_TYPES,
    MAX_PAGE,
    EntryFilter,
    decode_cursor,
    entry_json,
    export_chunks,
    export_size,
    parse_filter,
    parse_subject_text,
    parse_time,
    read_page,
)
from gateway.settings import AlertSettings
from gateway.storage.schema import audit_entries, department_keys, gateway_keys, seals

__all__ = [
    "EVENT_EXPORTED",
    "Export",
    "OfficerService",
    "alert_rules",
    "compute_alerts",
]

log = logging.getLogger(__name__)

EVENT_EXPORTED = AuditEvent.ENTRIES_EXPORTED
#: The longest window one alerts request may cover.
MAX_ALERT_WINDOW = dt.timedelta(days=31)
DEFAULT_ALERT_WINDOW = dt.timedelta(hours=24)


_T = TypeVar("_T")


async def _in_thread(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """Run a blocking database read or write in a worker thread; a database that fails or
    times out is a 503 (``StoreUnavailable``), never a stack trace."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except SQLAlchemyError as exc:
        log.error("audit store: %s", exc)
        raise StoreUnavailable("audit store") from None


def _text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _today() -> dt.date:
    return dt.datetime.now(DISTRICT_TZ).date()


# --- alerts: the query layer --------------------------------------------------------------------


def alert_rules(alerts: AlertSettings) -> AlertRules:
    """The alert thresholds configured by ``GATEWAY_ALERT_*``; ConfigurationError if bad."""
    try:
        hours = WorkingHours.parse(alerts.working_hours, alerts.working_days)
    except ValueError as exc:
        raise ConfigurationError([f"GATEWAY_ALERT_WORKING_HOURS/DAYS: {exc}"]) from None
    return AlertRules(
        rate_factor=alerts.rate_factor,
        rate_floor=alerts.rate_floor,
        token_failures=alerts.token_failures,
        token_window=dt.timedelta(seconds=alerts.token_window_seconds),
        working_hours=hours,
        expiry_ahead=dt.timedelta(days=alerts.expiry_days),
    )


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _alert_entries(
    engine: sa.Engine, since: dt.datetime, until: dt.datetime
) -> Iterator[AlertEntry]:
    """The entries of the window that some rule reads, streamed (server-side cursor)."""
    e = audit_entries.c
    query = sa.select(
        e.at,
        e.event,
        e.decision,
        e.department,
        e.subject_hmac,
        e.reason_code,
        e.grant_id,
        e.resource,
        e.case_number,
        e.operator,
    ).where(
        e.at >= since.astimezone(dt.UTC),
        e.at < until.astimezone(dt.UTC),
        sa.or_(
            sa.and_(e.event.in_(sorted(READ_EVENTS)), e.decision == "allowed"),
            e.event.in_(sorted(LOGIN_EVENTS)),
            e.reason_code.in_(WATCHED_REASONS),
            e.reason_code.like("token:%"),
        ),
    )
    with engine.connect() as conn:
        for r in conn.execution_options(yield_per=5000).execute(query):
            yield AlertEntry(
                at=_aware(r.at),
                event=r.event,
                decision=r.decision,
                department=r.department,
                subject_hmac=r.subject_hmac,
                reason_code=r.reason_code,
                grant_id=r.grant_id,
                resource=r.resource,
                case_number=r.case_number,
                operator=r.operator,
            )


def _hour_bucket(dialect: str) -> sa.ColumnElement[str]:
    e = audit_entries.c
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", e.at), 'YYYY-MM-DD"T"HH24')
    return sa.func.strftime("%Y-%m-%dT%H", e.at)  # SQLite: the stored UTC wall time


def _hourly_counts(
    engine: sa.Engine, since: dt.datetime, until: dt.datetime
) -> list[tuple[str | None, Any, int]]:
    """Distinct subjects read per department and clock hour, counted by the database."""
    e = audit_entries.c
    bucket = _hour_bucket(engine.dialect.name).label("hour")
    query = (
        sa.select(e.department, bucket, sa.func.count(sa.distinct(e.subject_hmac)))
        .where(
            e.at >= since.astimezone(dt.UTC),
            e.at < until.astimezone(dt.UTC),
            e.event.in_(sorted(READ_EVENTS)),
            e.decision == "allowed",
            e.department.is_not(None),
            e.subject_hmac.is_not(None),
        )
        .group_by(e.department, bucket)
    )
    with engine.connect() as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]


def _expiring(engine: sa.Engine) -> list[Expiring]:
    """The keys and seals in use that have an expiry (or a planned retirement)."""
    g, k, s = gateway_keys.c, department_keys.c, seals.c
    with engine.connect() as conn:
        gateway = conn.execute(
            sa.select(g.kid, g.retire_by).where(
                g.status.in_(("active", "next")), g.retire_by.is_not(None)
            )
        ).all()
        departments = conn.execute(
            sa.select(k.kid, k.department_id, k.expires_at).where(
                k.status == "active", k.expires_at.is_not(None)
            )
        ).all()
        sealed = conn.execute(
            sa.select(s.seal_id, s.owner, s.valid_until).where(s.status == "active")
        ).all()
    return [
        *(Expiring("gateway-key", kid, None, _aware(at)) for kid, at in gateway),
        *(Expiring("department-key", kid, dep, _aware(at)) for kid, dep, at in departments),
        # Valid through its last day (district date): unusable from the next midnight.
        *(
            Expiring(
                "seal",
                seal_id,
                owner,
                dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), DISTRICT_TZ),
            )
            for seal_id, owner, until in sealed
        ),
    ]


def _quotas(policy: PolicySet) -> list[GrantQuota]:
    return [
        GrantQuota(g.id, g.consumer, g.resource, g.max_subjects_per_day)
        for g in policy.grants.values()
        if g.max_subjects_per_day is not None
    ]


def compute_alerts(
    engine: sa.Engine,
    policy: PolicySet,
    rules: AlertRules,
    *,
    since: dt.datetime,
    until: dt.datetime,
    baseline_days: int = 7,
) -> dict[str, Any]:
    """The alerts of the window ``[since, until)`` as JSON (blocking; run it in a thread).

    The usual hourly rate of each department is taken from the ``baseline_days`` before
    ``since``; quotas come from the grants of ``policy``.
    """
    baseline_from = since - dt.timedelta(days=baseline_days)
    usual = hourly_medians(_hourly_counts(engine, baseline_from, since))
    alerts = evaluate(
        _alert_entries(engine, since, until), rules=rules, baseline=usual, quotas=_quotas(policy)
    )
    # What expires is judged at the window's end: the officer's "now".
    alerts += expiry_alerts(_expiring(engine), now=until, ahead=rules.expiry_ahead)
    names = {d.id: d.name for d in policy.departments.values()}
    return {
        "window": {"from": _text(since), "until": _text(until)},
        "baseline": {"from": _text(baseline_from), "until": _text(since), "days": baseline_days},
        "rules": {
            "rate_factor": rules.rate_factor,
            "rate_floor": rules.rate_floor,
            "token_failures": rules.token_failures,
            "token_window_seconds": int(rules.token_window.total_seconds()),
            "working_hours": str(rules.working_hours),
            "expiry_days_ahead": rules.expiry_ahead.days,
        },
        "alerts": [a.as_json(names) for a in alerts],
    }


def alert_window(
    since: str | None, until: str | None, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The window named by RFC 3339 ``from``/``until`` (default: the 24 hours before now)."""
    end = parse_time(until, "until") if until else now
    start = parse_time(since, "from") if since else end - DEFAULT_ALERT_WINDOW
    if end <= start:
        raise InvalidInput("until", "must be after from")
    if end - start > MAX_ALERT_WINDOW:
        raise InvalidInput("from", f"the window may span at most {MAX_ALERT_WINDOW.days} days")
    return start, end


# --- the service --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    """An export on its way out."""

    media_type: str
    filename: str
    audit_index: int
    upto: int  # the last entry it may contain (the log's size when it started)
    chunks: AsyncIterator[bytes]


_Name = Name
_Reason = Text


class _EmbargoRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=3, max_length=100, pattern=r"^[\x21-\x7e]+$")]
    until: dt.date
    reason: _Reason
    operator: _Name
    department: _Name | None = None


class OfficerService:
    """What the auditor role does, the portal's access history and a department's own
    refusals. One per process."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        exchanges: SignedExchanges,
        adapters: Callable[[PolicySet], Mapping[str, SourceAdapter]],
        alerts: AlertSettings,
        source_deadline: float = 10.0,
    ) -> None:
        self._engine = engine
        self._exchanges = exchanges
        self._policy = exchanges.policy
        self._rules = alert_rules(alerts)  # bad thresholds fail the start
        self._baseline_days = alerts.baseline_days
        self.history = AccessHistoryService(
            exchanges=exchanges, adapters=adapters, source_deadline=source_deadline
        )
        self.refusals = RefusalService(engine=engine, exchanges=exchanges)

    # --- search and export ----------------------------------------------------------------

    def _filter(self, params: Mapping[str, str | None]) -> EntryFilter:
        return parse_filter(params, key_subject=self._exchanges.hash_subject.tags)

    async def search(
        self, params: Mapping[str, str | None], *, limit: int = 100, order: str = "asc"
    ) -> dict[str, Any]:
        """One page of entries matching the filters in ``params`` (plus ``cursor``)."""
        flt = self._filter(params)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"must be 1..{MAX_PAGE}")
        if order not in ("asc", "desc"):
            raise InvalidInput("order", "must be asc or desc")
        after = None
        cursor = params.get("cursor")
        if cursor:
            cursor_order, after = decode_cursor(cursor)
            if cursor_order != order:
                raise InvalidInput("cursor", f"was given for order={cursor_order}")
        page = await _in_thread(
            read_page,
            self._engine,
            flt,
            order="asc" if order == "asc" else "desc",
            after=after,
            limit=limit,
        )
        return {
            "entries": [entry_json(r, page.tree_size) for r in page.rows],
            "next": page.next,
            "tree_size": page.tree_size,
        }

    async def export(self, params: Mapping[str, str | None], *, fmt: str, now: float) -> Export:
        """Every entry matching the filters, as CSV or JSON Lines, streamed; recorded first."""
        if fmt not in EXPORT_MEDIA_TYPES:
            raise InvalidInput("format", "must be csv or jsonl")
        flt = self._filter(params)
        upto = await _in_thread(export_size, self._engine)
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        index = await self._exchanges.audit.append(
            AuditEntry(
                at=at,
                event=EVENT_EXPORTED,
                decision=Outcome.ALLOWED,
                subject_hmac=flt.subject_hmac,
                policy_version=self._policy.current.version,
                detail=f"{fmt}, entries up to {upto}: {flt.described()}"[:2000],
            )
        )
        return Export(
            media_type=EXPORT_MEDIA_TYPES[fmt],
            filename=f"audit-entries-{at:%Y%m%dT%H%M%SZ}.{fmt}",
            audit_index=index,
            upto=upto,
            chunks=export_chunks(self._engine, flt, fmt=fmt, upto=upto),
        )

    # --- embargoes ------------------------------------------------------------------------

    async def add_embargo(self, body: bytes, *, now: float) -> dict[str, Any]:
        """Embargo a subject's entries from the access history until a date; audited."""
        try:
            raw = decode_json(body)
        except WireError:
            raise InvalidInput("body", "must be a JSON object") from None
        request = convert(raw, _EmbargoRequest)
        kind, ident = parse_subject_text(request.subject)
        today = _today()
        if request.until < today:
            raise InvalidInput("until", f"is before today ({today}, district date)")
        policy = self._policy.current
        if request.department is not None and request.department not in policy.departments:
            raise InvalidInput("department", "is not a registered department")
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        embargo_id = embargoes.new_id()
        subject_hmac = self._exchanges.hash_subject(kind, ident)
        scope = (
            f"{request.department}'s reads" if request.department else "every department's reads"
        )
        index = await self._exchanges.audit.append(
            AuditEntry(
                at=at,
                event=embargoes.EVENT_ADDED,
                decision=Outcome.ALLOWED,
                operator=request.operator,
                reason=request.reason,
                subject_hmac=subject_hmac,
                policy_version=policy.version,
                detail=f"{embargo_id}: {scope} hidden from the access history until "
                f"{request.until} (district date, inclusive)",
            )
        )
        embargo = embargoes.Embargo(
            id=embargo_id,
            subject_hmac=subject_hmac,
            department=request.department,
            until=request.until,
            reason=request.reason,
            operator=request.operator,
            created_at=at,
            audit_index=index,
        )
        await _in_thread(embargoes.add, self._engine, embargo)
        return embargo.as_json(today)

    async def list_embargoes(self, *, in_force: bool | None) -> dict[str, Any]:
        today = _today()
        found = await _in_thread(
            embargoes.list_embargoes, self._engine, today=today, in_force=in_force
        )
        return {"embargoes": [e.as_json(today) for e in found]}

    async def lift_embargo(
        self, embargo_id: str, *, operator: str | None, reason: str | None, now: float
    ) -> dict[str, Any]:
        """Lift an embargo before its date; audited."""
        if not operator or len(operator) > 64:
            raise InvalidInput("operator", "is required (1-64 characters)")
        if not reason or len(reason) > 256:
            raise InvalidInput("reason", "is required (1-256 characters)")
        found = await _in_thread(embargoes.get, self._engine, embargo_id)
        if found is None:
            raise RecordNotFound(f"no embargo {embargo_id}")
        today = _today()
        if found.lifted_at is not None:
            return found.as_json(today)  # lifting twice changes nothing
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        index = await self._exchanges.audit.append(
            AuditEntry(
                at=at,
                event=embargoes.EVENT_LIFTED,
                decision=Outcome.ALLOWED,
                operator=operator,
                reason=reason,
                subject_hmac=found.subject_hmac,
                policy_version=self._policy.current.version,
                detail=f"{embargo_id} lifted (was until {found.until})",
            )
        )
        await _in_thread(
            embargoes.lift,
            self._engine,
            embargo_id,
            at=at,
            by=operator,
            reason=reason,
            audit_index=index,
        )
        lifted = await _in_thread(embargoes.get, self._engine, embargo_id)
        assert lifted is not None
        return lifted.as_json(today)

    # --- alerts ---------------------------------------------------------------------------

    async def alerts(self, *, since: str | None, until: str | None, now: float) -> dict[str, Any]:
        """The alerts of a window (default: the last 24 hours)."""
        start, end = alert_window(since, until, now=dt.datetime.fromtimestamp(now, dt.UTC))
        return await _in_thread(
            compute_alerts,
            self._engine,
            self._policy.current,
            self._rules,
            since=start,
            until=end,
            baseline_days=self._baseline_days,
        )
