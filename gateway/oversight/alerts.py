"""Alert rules over audit entries: pure functions, no database (the query layer is
:mod:`gateway.oversight.service`).

:func:`evaluate` takes the entries of a time window (only the columns in :class:`AlertEntry`)
and returns an :class:`Alert` for each of:

- ``subject-rate`` — a department read more distinct subjects in one clock hour than
  ``rate_factor`` × its usual rate (the median of its hourly distinct subjects over the hours
  it was active in the baseline days before the window; :func:`hourly_medians`) and at least
  ``rate_floor`` of them (with no usual rate to compare, the floor alone decides);
- ``grant-quota`` — a department's lookups of a resource were refused because its grant's
  ``max_subjects_per_day`` was used up, or it read more distinct subjects under such a grant in
  one district day than the quota allows;
- ``outside-grant-hours`` — lookups refused as outside the grant's office hours;
- ``outside-working-hours`` — data read outside the district's working hours (UTC+8);
- ``closed-case`` — lookups for a case the department had declared closed;
- ``token-failures`` — at least ``token_failures`` refused tokens (``token:*``) of one
  department within ``token_window`` (a department of ``None``: tokens no key could be
  attributed to, e.g. an unknown key id); requests that ended in an unexpected exception
  (``internal-error``) count as failures too, so a probe that crashes is not invisible;
- ``login-failures`` — at least ``token_failures`` refused console log-ins under one username
  within ``token_window`` (the same thresholds as the token failures; a username no account
  has is grouped as ``None``): someone guessing a password;
- ``account-locked`` — a console account was locked after too many failed log-ins.

Besides the log, :func:`expiry_alerts` reads the keys and seals in use and raises
``key-expiring`` (a gateway key due for retirement, a department key past or near its
``expires_at``) and ``seal-expiring`` (an active e-seal near the end of its validity)
``expiry_ahead`` before the date, and for as long as it stays in use after it.

"Reads" are the entries of :data:`READ_EVENTS` that were allowed: released records, lookups
that found no record (the subject was still looked for), licence verifications.
"""

from __future__ import annotations

import datetime as dt
import enum
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import AuditEvent

__all__ = [
    "LOGIN_EVENTS",
    "READ_EVENTS",
    "Alert",
    "AlertEntry",
    "AlertKind",
    "AlertRules",
    "Expiring",
    "GrantQuota",
    "WorkingHours",
    "evaluate",
    "expiry_alerts",
    "hourly_medians",
]

#: Events that read a subject's data (when allowed).
READ_EVENTS = frozenset(
    {AuditEvent.LOOKUP_RELEASED, AuditEvent.LOOKUP_NOT_FOUND, AuditEvent.VERIFICATION_PERFORMED}
)
#: Console log-ins refused, and accounts locked by too many of them.
LOGIN_EVENTS = frozenset({AuditEvent.CONSOLE_LOGIN_FAILED, AuditEvent.ACCOUNT_LOCKED})
#: Refusal reason codes some rule looks at (``token:*`` besides).
WATCHED_REASONS = ("outside-hours", "case-closed", "quota-exhausted", "internal-error")
#: A request that ended in an unexpected exception: counted with the token failures, since a
#: probe that crashes the gateway is a probe all the same.
INTERNAL_ERROR = "internal-error"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOUR = dt.timedelta(hours=1)


class AlertKind(enum.StrEnum):
    SUBJECT_RATE = "subject-rate"
    GRANT_QUOTA = "grant-quota"
    OUTSIDE_GRANT_HOURS = "outside-grant-hours"
    OUTSIDE_WORKING_HOURS = "outside-working-hours"
    CLOSED_CASE = "closed-case"
    TOKEN_FAILURES = "token-failures"  # noqa: S105 - an alert kind, not a secret
    LOGIN_FAILURES = "login-failures"
    ACCOUNT_LOCKED = "account-locked"
    KEY_EXPIRING = "key-expiring"
    SEAL_EXPIRING = "seal-expiring"


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """What the rules read of an audit entry. ``at`` must be timezone-aware."""

    at: dt.datetime
    event: str
    decision: str
    department: str | None
    subject_hmac: str | None = None
    reason_code: str | None = None
    grant_id: str | None = None
    resource: str | None = None
    case_number: str | None = None
    operator: str | None = None

    @property
    def is_read(self) -> bool:
        return self.decision == "allowed" and self.event in READ_EVENTS


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The district's working hours, local time: ``start <= t < end`` on ``days``."""

    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 0)
    days: frozenset[str] = frozenset(_DAYS[:5])

    @classmethod
    def parse(cls, hours: str, days: str) -> WorkingHours:
        """From ``"08:00-18:00"`` and ``"mon,tue,wed,thu,fri"``; ValueError if malformed."""
        start_text, sep, end_text = hours.partition("-")
        if not sep:
            raise ValueError(f"working hours {hours!r}: use HH:MM-HH:MM")
        start, end = (
            dt.time.fromisoformat(start_text.strip()),
            dt.time.fromisoformat(end_text.strip()),
        )
        if end <= start:
            raise ValueError(f"working hours {hours!r}: the end is not after the start")
        names = frozenset(d.strip().lower() for d in days.split(",") if d.strip())
        if not names or not names <= set(_DAYS):
            raise ValueError(f"working days {days!r}: use mon,tue,… (at least one)")
        return cls(start, end, names)

    def contains(self, at: dt.datetime) -> bool:
        local = at.astimezone(DISTRICT_TZ)
        return (
            _DAYS[local.weekday()] in self.days
            and self.start <= local.time().replace(tzinfo=None) < self.end
        )

    def __str__(self) -> str:
        days = ",".join(d for d in _DAYS if d in self.days)
        return f"{self.start:%H:%M}-{self.end:%H:%M} {days} (UTC+8)"


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds of the rules."""

    rate_factor: float = 3.0
    rate_floor: int = 20
    token_failures: int = 5
    token_window: dt.timedelta = dt.timedelta(minutes=10)
    working_hours: WorkingHours = field(default_factory=WorkingHours)
    expiry_ahead: dt.timedelta = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class GrantQuota:
    """A grant with a daily quota of distinct subjects."""

    grant_id: str
    consumer: str
    resource: str
    max_subjects_per_day: int


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an officer should look at: what, who, when, the numbers and why."""

    kind: AlertKind
    department: str | None
    start: dt.datetime
    end: dt.datetime
    numbers: Mapping[str, Any]
    why: str

    def as_json(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The alert as JSON; ``names`` gives department names."""
        return {
            "kind": str(self.kind),
            "department": self.department,
            "department_name": (names or {}).get(self.department or ""),
            "window": {"from": _text(self.start), "until": _text(self.end)},
            "numbers": dict(self.numbers),
            "why": self.why,
        }


def _text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _local(at: dt.datetime) -> str:
    return f"{at.astimezone(DISTRICT_TZ):%Y-%m-%d %H:%M:%S}"


def _who(department: str | None) -> str:
    return department if department is not None else "an unidentified sender"


def hourly_medians(counts: Iterable[tuple[str | None, Any, int]]) -> dict[str, float]:
    """Each department's usual hourly rate: the median of its distinct subjects per hour,
    over the hours in which it read anything. ``counts``: (department, hour, distinct)."""
    per: dict[str, list[int]] = defaultdict(list)
    for department, _hour, distinct in counts:
        if department is not None and distinct > 0:
            per[department].append(int(distinct))
    return {d: float(statistics.median(v)) for d, v in per.items()}


def _hour_of(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _day_of(at: dt.datetime) -> dt.date:
    return at.astimezone(DISTRICT_TZ).date()


@dataclass
class _Span:
    """Occurrences of one thing: how many, which subjects, first and last."""

    first: dt.datetime
    last: dt.datetime
    count: int = 0
    subjects: set[str] = field(default_factory=set)
    resources: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, e: AlertEntry) -> None:
        self.count += 1
        self.first = min(self.first, e.at)
        self.last = max(self.last, e.at)
        if e.subject_hmac is not None:
            self.subjects.add(e.subject_hmac)
        if e.resource is not None:
            self.resources[e.resource] += 1
        if e.reason_code is not None:
            self.reasons[e.reason_code] += 1


def _span(spans: dict[Any, _Span], key: Any, e: AlertEntry) -> None:
    if key not in spans:
        spans[key] = _Span(e.at, e.at)
    spans[key].add(e)


def evaluate(
    entries: Iterable[AlertEntry],
    *,
    rules: AlertRules,
    baseline: Mapping[str, float] | None = None,
    quotas: Sequence[GrantQuota] = (),
) -> list[Alert]:
    """Every alert the entries raise, ordered by time, then kind and department.

    One pass over ``entries`` (any order); memory grows with the departments, hours and
    distinct subjects involved, not with the number of entries.
    """
    usual = baseline or {}
    by_grant = {q.grant_id: q for q in quotas}
    by_pair = {(q.consumer, q.resource): q for q in reversed(quotas)}  # first grant wins
    hourly: dict[tuple[str, dt.datetime], _Span] = {}
    quota_reads: dict[tuple[str, str, dt.date], _Span] = {}
    quota_refusals: dict[tuple[str, str, dt.date], _Span] = {}
    grant_hours: dict[tuple[str | None, dt.date], _Span] = {}
    after_hours: dict[tuple[str, dt.date], _Span] = {}
    closed: dict[tuple[str | None, str | None], _Span] = {}
    token_times: dict[str | None, list[AlertEntry]] = defaultdict(list)
    login_times: dict[str | None, list[AlertEntry]] = defaultdict(list)
    locks: list[AlertEntry] = []

    for e in entries:
        code = e.reason_code or ""
        if e.event == AuditEvent.CONSOLE_LOGIN_FAILED:
            login_times[e.operator].append(e)
        elif e.event == AuditEvent.ACCOUNT_LOCKED:
            locks.append(e)
        elif e.is_read and e.department is not None:
            _span(hourly, (e.department, _hour_of(e.at)), e)
            if not rules.working_hours.contains(e.at):
                _span(after_hours, (e.department, _day_of(e.at)), e)
            quota = by_grant.get(e.grant_id or "")
            if quota is not None:
                _span(quota_reads, (e.department, quota.resource, _day_of(e.at)), e)
        elif e.decision == "refused":
            if code.startswith("token:") or code == INTERNAL_ERROR:
                token_times[e.department].append(e)
            elif code == "outside-hours":
                _span(grant_hours, (e.department, _day_of(e.at)), e)
            elif code == "case-closed":
                _span(closed, (e.department, e.case_number), e)
            elif code == "quota-exhausted" and e.department is not None:
                _span(quota_refusals, (e.department, e.resource or "", _day_of(e.at)), e)

    alerts = [
        *_rate_alerts(hourly, usual, rules),
        *_quota_alerts(quota_reads, quota_refusals, by_pair),
        *_hours_alerts(grant_hours, after_hours, rules),
        *_closed_case_alerts(closed),
        *_token_alerts(token_times, rules),
        *_login_alerts(login_times, rules),
        *_lock_alerts(locks),
    ]
    alerts.sort(key=lambda a: (a.start, str(a.kind), a.department or ""))
    return alerts


def _rate_alerts(
    hourly: Mapping[tuple[str, dt.datetime], _Span],
    usual: Mapping[str, float],
    rules: AlertRules,
) -> Iterator[Alert]:
    for (department, hour), span in hourly.items():
        distinct = len(span.subjects)
        if distinct < rules.rate_floor:
            continue
        median = usual.get(department)
        if median is not None and distinct <= rules.rate_factor * median:
            continue
        if median is None:
            why = (
                f"{department} read {distinct} distinct subjects in one hour (from "
                f"{_local(hour)}, district time) and has no usual rate to compare with; the "
                f"floor is {rules.rate_floor}"
            )
        else:
            why = (
                f"{department} read {distinct} distinct subjects in one hour (from "
                f"{_local(hour)}, district time), {distinct / median:.1f}× its usual "
                f"{median:g} per active hour (alert above {rules.rate_factor:g}×)"
            )
        yield Alert(
            AlertKind.SUBJECT_RATE,
            department,
            hour,
            hour + _HOUR,
            {
                "distinct_subjects": distinct,
                "reads": span.count,
                "usual_per_hour": median,
                "factor": rules.rate_factor,
                "floor": rules.rate_floor,
            },
            why,
        )


def _quota_alerts(
    reads: Mapping[tuple[str, str, dt.date], _Span],
    refusals: Mapping[tuple[str, str, dt.date], _Span],
    by_pair: Mapping[tuple[str, str], GrantQuota],
) -> Iterator[Alert]:
    for key in sorted(set(reads) | set(refusals)):
        department, resource, day = key
        quota = by_pair.get((department, resource))
        read, refused = reads.get(key), refusals.get(key)
        distinct = len(read.subjects) if read else 0
        limit = quota.max_subjects_per_day if quota else None
        over = limit is not None and distinct > limit
        if refused is None and not over:
            continue
        spans = [s for s in (read, refused) if s is not None]
        parts = []
        if refused is not None:
            parts.append(
                f"{refused.count} lookups of {resource} refused because the daily quota was "
                f"used up ({len(refused.subjects)} more distinct subjects asked for)"
            )
        if over:
            parts.append(f"{distinct} distinct subjects read, over the quota")
        yield Alert(
            AlertKind.GRANT_QUOTA,
            department,
            min(s.first for s in spans),
            max(s.last for s in spans),
            {
                "resource": resource,
                "day": day.isoformat(),
                "grant": quota.grant_id if quota else None,
                "max_subjects_per_day": limit,
                "distinct_subjects_read": distinct,
                "refused_over_quota": refused.count if refused else 0,
            },
            f"{department} on {day} (district date): "
            + "; ".join(parts)
            + (f"; grant {quota.grant_id} allows {limit} a day" if quota else ""),
        )


def _hours_alerts(
    grant_hours: Mapping[tuple[str | None, dt.date], _Span],
    after_hours: Mapping[tuple[str, dt.date], _Span],
    rules: AlertRules,
) -> Iterator[Alert]:
    for (department, day), span in grant_hours.items():
        yield Alert(
            AlertKind.OUTSIDE_GRANT_HOURS,
            department,
            span.first,
            span.last,
            {
                "day": day.isoformat(),
                "refused": span.count,
                "distinct_subjects": len(span.subjects),
                "resources": dict(span.resources),
            },
            f"{_who(department)} tried {span.count} lookups outside its grant's office hours "
            f"on {day} (district date), {_local(span.first)} to {_local(span.last)}",
        )
    hours = rules.working_hours
    for (department, day), span in after_hours.items():
        yield Alert(
            AlertKind.OUTSIDE_WORKING_HOURS,
            department,
            span.first,
            span.last,
            {
                "day": day.isoformat(),
                "reads": span.count,
                "distinct_subjects": len(span.subjects),
                "resources": dict(span.resources),
                "working_hours": str(rules.working_hours),
                "working_time": f"{hours.start:%H:%M}-{hours.end:%H:%M}",
                "working_days": [d for d in _DAYS if d in hours.days],
            },
            f"{department} read data {span.count} times outside the district's working hours "
            f"({rules.working_hours}) on {day}, {_local(span.first)} to {_local(span.last)}",
        )


def _closed_case_alerts(
    closed: Mapping[tuple[str | None, str | None], _Span],
) -> Iterator[Alert]:
    for (department, case), span in closed.items():
        yield Alert(
            AlertKind.CLOSED_CASE,
            department,
            span.first,
            span.last,
            {
                "case": case,
                "refused": span.count,
                "distinct_subjects": len(span.subjects),
                "resources": dict(span.resources),
            },
            f"{_who(department)} asked {span.count} times for data under case {case}, which it "
            "had declared closed",
        )


def _bursts(
    entries: list[AlertEntry], need: int, window: dt.timedelta
) -> Iterator[list[AlertEntry]]:
    """The maximal runs of ``entries`` in which every one lies within ``window`` of
    ``need - 1`` others (a sliding window), oldest first."""
    entries.sort(key=lambda e: e.at)
    times = [e.at for e in entries]
    bursts: list[list[int]] = []  # [first, last] positions
    lo = 0
    for hi, at in enumerate(times):
        while at - times[lo] > window:
            lo += 1
        if hi - lo + 1 >= need:
            if bursts and lo <= bursts[-1][1]:
                bursts[-1][1] = hi
            else:
                bursts.append([lo, hi])
    for first, last in bursts:
        yield entries[first : last + 1]


@dataclass(frozen=True, slots=True)
class _FailureBurst:
    """A burst of refusals (tokens or log-ins) under one key, with what its alert says."""

    key: str | None
    entries: list[AlertEntry]
    details: dict[str, Any]  # failures, peak, window, threshold, reasons
    words: str  # "between … and … (district time), up to … within … minutes: reason ×n, …"


def _failure_bursts(
    failures: Mapping[str | None, list[AlertEntry]], rules: AlertRules
) -> Iterator[_FailureBurst]:
    """The bursts of refusals under each key, by the token-failure thresholds (log-ins share
    them: both are someone trying credentials)."""
    need, window = rules.token_failures, rules.token_window
    for key, entries in failures.items():
        for burst in _bursts(entries, need, window):
            times = [e.at for e in burst]
            peak = _peak(times, window)
            reasons = Counter(e.reason_code or "" for e in burst)
            yield _FailureBurst(
                key,
                burst,
                {
                    "failures": len(burst),
                    "most_within_window": peak,
                    "window_seconds": int(window.total_seconds()),
                    "threshold": need,
                    "reasons": dict(reasons),
                },
                f"between {_local(times[0])} and {_local(times[-1])} (district time), up to "
                f"{peak} within {int(window.total_seconds() // 60)} minutes: "
                + ", ".join(f"{r} ×{n}" for r, n in reasons.most_common()),
            )


def _token_alerts(
    failures: Mapping[str | None, list[AlertEntry]], rules: AlertRules
) -> Iterator[Alert]:
    """One alert per burst of refused tokens of one department."""
    for b in _failure_bursts(failures, rules):
        yield Alert(
            AlertKind.TOKEN_FAILURES,
            b.key,
            b.entries[0].at,
            b.entries[-1].at,
            b.details,
            f"{len(b.entries)} request tokens of {_who(b.key)} refused {b.words}",
        )


def _login_alerts(
    failures: Mapping[str | None, list[AlertEntry]], rules: AlertRules
) -> Iterator[Alert]:
    """One alert per burst of refused console log-ins under one username."""
    for b in _failure_bursts(failures, rules):
        who = f"account {b.key}" if b.key is not None else "usernames no account has"
        yield Alert(
            AlertKind.LOGIN_FAILURES,
            b.entries[-1].department,
            b.entries[0].at,
            b.entries[-1].at,
            {"username": b.key, **b.details},
            f"{len(b.entries)} console log-ins refused for {who} {b.words}",
        )


def _lock_alerts(locks: Sequence[AlertEntry]) -> Iterator[Alert]:
    """One alert per console account locked by failed log-ins."""
    for e in locks:
        yield Alert(
            AlertKind.ACCOUNT_LOCKED,
            e.department,
            e.at,
            e.at,
            {"username": e.operator},
            f"console account {e.operator} was locked at {_local(e.at)} (district time) "
            "after too many failed log-ins",
        )


@dataclass(frozen=True, slots=True)
class Expiring:
    """A key or seal in use with a date it stops being usable (or is planned to)."""

    what: str  # "gateway-key", "department-key" or "seal"
    id: str  # the key's kid, the seal's id
    department: str | None  # the owner (None for the gateway's own key)
    expires_at: dt.datetime  # timezone-aware


_EXPIRING_WORDS = {
    "gateway-key": "the gateway's signing key {id} is due for retirement",
    "department-key": "key {id} of {department} expires",
    "seal": "e-seal {id} of {department} expires",
}


def expiry_alerts(
    items: Iterable[Expiring], *, now: dt.datetime, ahead: dt.timedelta
) -> list[Alert]:
    """An alert for each item that expires within ``ahead`` of ``now`` (or already has and
    is still in use), soonest first."""
    alerts = []
    for item in items:
        left = item.expires_at - now
        if left > ahead:
            continue
        days = left.total_seconds() / 86400
        words = _EXPIRING_WORDS[item.what].format(id=item.id, department=item.department)
        when = (
            f"on {_local(item.expires_at)} (district time), in {days:.0f} days"
            if days >= 0
            else f"since {_local(item.expires_at)} (district time), and is still in use"
        )
        then = (
            "run `gateway keys rotate`"
            if item.what == "gateway-key"
            else "register its successor and retire it"
        )
        alerts.append(
            Alert(
                AlertKind.SEAL_EXPIRING if item.what == "seal" else AlertKind.KEY_EXPIRING,
                item.department,
                now,
                item.expires_at,
                {
                    "what": item.what,
                    "id": item.id,
                    "expires_at": _text(item.expires_at),
                    "days_left": round(days, 1),
                    "alert_days_ahead": ahead.days,
                },
                f"{words} {when}: {then}",
            )
        )
    alerts.sort(key=lambda a: (a.end, a.department or "", a.numbers["id"]))
    return alerts


def _peak(times: Sequence[dt.datetime], window: dt.timedelta) -> int:
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
