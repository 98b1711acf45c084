"""The figures of a once-only report, computed from audit entries alone (no I/O here).

Every figure is a count over the entries of one period (``start <= at < end``, Beijing time):

- **lookups released / not found** — ``lookup:record:released`` and ``lookup:record:not-found``
  entries, less those a correction entry (``audit:answer:withheld``) says were never handed
  over;
- **verifications by verdict** — ``licence:verification:performed`` entries, by their
  ``reason_code`` (the verdict);
- **manifests and their materials** — ``manifest:materials:listed`` entries, and the counts of
  ``available`` / ``bring`` / ``not-granted`` materials their ``detail`` records;
- **refusals by reason** — refused ``lookup``, ``manifest`` and ``verification`` entries, by
  ``reason_code``;
- **distinct applicants** — distinct keyed subjects (``subject_hmac``) of the allowed lookups,
  verifications and manifests: counted, never shown;
- **materials saved** (materials the applicant did not have to bring) — a released lookup or a
  ``valid`` verification *served a manifest item* when the log holds a listed manifest of the
  same department, service item and case number (at any index up to the checkpoint, before the
  period's end). Each such material counts once per case: the same resource about the same
  keyed subject looked up twice in one case saved the applicant one material, not two;
- **per provider** (by resource) — lookups released, not found, failed (``source-failed``,
  502) and timed out (``source-timeout``, 504); accepted uploads in the period, the last
  accepted upload before ``as_of`` and its age in days then.

The computation is a pure function of the entries, the period, the resource → provider map
and ``as_of``: :func:`compute` given the same inputs gives the same :class:`Figures`, which is
what ``gateway report verify`` relies on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import AuditEvent

__all__ = [
    "COUNT_FIELDS",
    "Counts",
    "DepartmentRow",
    "Entry",
    "Figures",
    "ItemRow",
    "Period",
    "ProviderRow",
    "TopItem",
    "compute",
]

#: How many service items the "top items" list names.
TOP_ITEMS = 5

_REFUSALS = frozenset(
    {AuditEvent.LOOKUP_REFUSED, AuditEvent.MANIFEST_REFUSED, AuditEvent.VERIFICATION_REFUSED}
)
_FAILED, _TIMED_OUT = "source-failed", "source-timeout"


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """What the report reads of one audit entry."""

    index: int
    at: dt.datetime  # aware
    event: str
    decision: str
    department: str | None = None
    service_item: str | None = None
    case_number: str | None = None
    resource: str | None = None
    subject_hmac: str | None = None
    reason_code: str | None = None
    detail: str | None = None
    withholds: int | None = None


class Period(msgspec.Struct, frozen=True, kw_only=True):
    """A reporting period: local (Beijing) dates, ``end`` exclusive."""

    label: str  # "2026Q4", or "2026-10-01..2026-12-31"
    start: dt.date
    end: dt.date  # the first day after the period

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), DISTRICT_TZ)

    @property
    def end_at(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time(), DISTRICT_TZ)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    def holds(self, at: dt.datetime) -> bool:
        return self.start_at <= at < self.end_at


class Counts(msgspec.Struct, kw_only=True):
    """The counts of one department, one service item, or all of them."""

    lookups_released: int = 0
    lookups_not_found: int = 0
    verifications: int = 0
    verdicts: dict[str, int] = msgspec.field(default_factory=dict)
    manifests: int = 0
    materials_available: int = 0
    materials_to_bring: int = 0
    materials_not_granted: int = 0
    refusals: int = 0
    refusal_reasons: dict[str, int] = msgspec.field(default_factory=dict)
    materials_saved: int = 0
    applicants: int = 0


#: The scalar counts of :class:`Counts`, in table order.
COUNT_FIELDS = (
    "lookups_released",
    "lookups_not_found",
    "verifications",
    "manifests",
    "materials_available",
    "materials_to_bring",
    "materials_not_granted",
    "refusals",
    "materials_saved",
    "applicants",
)


class DepartmentRow(msgspec.Struct, kw_only=True):
    department: str
    counts: Counts


class ItemRow(msgspec.Struct, kw_only=True):
    item: str
    counts: Counts


class TopItem(msgspec.Struct, kw_only=True):
    item: str
    materials_saved: int


class ProviderRow(msgspec.Struct, kw_only=True):
    """How one provider's resource was used in the period, and how fresh its uploads are."""

    provider: str
    resource: str
    released: int = 0
    not_found: int = 0
    failed: int = 0  # 502
    timed_out: int = 0  # 504
    uploads: int = 0
    last_upload: str | None = None  # ISO 8601, UTC
    upload_age_days: int | None = None  # at ``as_of``


class Figures(msgspec.Struct, kw_only=True):
    """Every figure of one period."""

    totals: Counts
    departments: list[DepartmentRow]
    items: list[ItemRow]
    top_items: list[TopItem]
    providers: list[ProviderRow]


@dataclass
class _Tally:
    released: int = 0
    not_found: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    manifests: int = 0
    available: int = 0
    bring: int = 0
    not_granted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    subjects: set[str] = field(default_factory=set)
    # (department, item, case) -> materials (resource, subject) served in that case
    candidates: set[tuple[tuple[str, str, str], tuple[str, str]]] = field(default_factory=set)

    def counts(self, manifest_cases: set[tuple[str, str, str]]) -> Counts:
        return Counts(
            lookups_released=self.released,
            lookups_not_found=self.not_found,
            verifications=sum(self.verdicts.values()),
            verdicts=dict(sorted(self.verdicts.items())),
            manifests=self.manifests,
            materials_available=self.available,
            materials_to_bring=self.bring,
            materials_not_granted=self.not_granted,
            refusals=sum(self.refusals.values()),
            refusal_reasons=dict(sorted(self.refusals.items())),
            materials_saved=sum(1 for case, _ in self.candidates if case in manifest_cases),
            applicants=len(self.subjects),
        )


@dataclass
class _Provider:
    released: int = 0
    not_found: int = 0
    failed: int = 0
    timed_out: int = 0
    uploads: int = 0
    last_upload: dt.datetime | None = None


def _manifest_counts(detail: str | None) -> tuple[int, int, int]:
    """The available / bring / not-granted counts a manifest entry's detail records."""
    try:
        counts = json.loads(detail or "")
    except ValueError:
        return 0, 0, 0
    if not isinstance(counts, dict):
        return 0, 0, 0

    def n(key: str) -> int:
        value = counts.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    return n("available"), n("bring"), n("not-granted")


@dataclass
class _Computation:
    period: Period
    as_of: dt.datetime
    withheld: set[int] = field(default_factory=set)
    manifest_cases: set[tuple[str, str, str]] = field(default_factory=set)
    tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    used: dict[str, _Provider] = field(default_factory=dict)

    def tally(self, kind: str, key: str) -> _Tally:
        found = self.tallies.get((kind, key))
        if found is None:
            found = self.tallies[(kind, key)] = _Tally()
        return found

    def provider(self, resource: str) -> _Provider:
        return self.used.setdefault(resource, _Provider())

    def scan(self, e: Entry) -> bool:
        """What any entry up to the checkpoint says (corrections, manifests, uploads);
        whether it falls in the period."""
        if e.withholds is not None and e.event == AuditEvent.ANSWER_WITHHELD:
            self.withheld.add(e.withholds)
        if (
            e.event == AuditEvent.MANIFEST_LISTED
            and e.decision == "allowed"
            and e.at < self.period.end_at
            and e.department
            and e.service_item
            and e.case_number
        ):
            self.manifest_cases.add((e.department, e.service_item, e.case_number))
        if e.event == AuditEvent.UPLOAD_ACCEPTED and e.resource and e.at <= self.as_of:
            p = self.provider(e.resource)
            if p.last_upload is None or e.at > p.last_upload:
                p.last_upload = e.at
            if self.period.holds(e.at):
                p.uploads += 1
        return self.period.holds(e.at)

    def refused(self, e: Entry, groups: list[_Tally]) -> None:
        reason = e.reason_code or "unknown"
        for t in groups:
            t.refusals[reason] += 1
        if e.event == AuditEvent.LOOKUP_REFUSED and e.resource:
            if reason == _FAILED:
                self.provider(e.resource).failed += 1
            elif reason == _TIMED_OUT:
                self.provider(e.resource).timed_out += 1

    def count(self, e: Entry) -> None:
        """Count one entry of the period."""
        if e.index in self.withheld:
            return
        groups = [self.tally("total", "")]
        if e.department:
            groups.append(self.tally("department", e.department))
        if e.service_item:
            groups.append(self.tally("item", e.service_item))
        event, allowed = e.event, e.decision == "allowed"
        served = False  # a material supplied online, if a manifest listed the case
        if event in _REFUSALS and not allowed:
            self.refused(e, groups)
            return
        if not allowed:
            return
        if event == AuditEvent.LOOKUP_RELEASED:
            for t in groups:
                t.released += 1
            served = True
        elif event == AuditEvent.LOOKUP_NOT_FOUND:
            for t in groups:
                t.not_found += 1
        elif event == AuditEvent.VERIFICATION_PERFORMED:
            verdict = e.reason_code or "unknown"
            for t in groups:
                t.verdicts[verdict] += 1
            served = verdict == "valid"
        elif event == AuditEvent.MANIFEST_LISTED:
            available, bring, not_granted = _manifest_counts(e.detail)
            for t in groups:
                t.manifests += 1
                t.available += available
                t.bring += bring
                t.not_granted += not_granted
        else:
            return
        if e.subject_hmac:
            for t in groups:
                t.subjects.add(e.subject_hmac)
        if event == AuditEvent.LOOKUP_RELEASED and e.resource:
            self.provider(e.resource).released += 1
        elif event == AuditEvent.LOOKUP_NOT_FOUND and e.resource:
            self.provider(e.resource).not_found += 1
        if served and e.department and e.service_item and e.case_number:
            case = (e.department, e.service_item, e.case_number)
            material = (e.resource or "", e.subject_hmac or f"#{e.index}")
            for t in groups:
                t.candidates.add((case, material))

    def rows(self, kind: str) -> list[tuple[str, Counts]]:
        return sorted(
            (key, t.counts(self.manifest_cases))
            for (k, key), t in self.tallies.items()
            if k == kind
        )

    def provider_rows(self, providers: Mapping[str, str]) -> list[ProviderRow]:
        out = []
        for resource, p in sorted(
            self.used.items(), key=lambda kv: (providers.get(kv[0], ""), kv[0])
        ):
            age = None
            if p.last_upload is not None:
                age = max(0, (self.as_of - p.last_upload) // dt.timedelta(days=1))
            out.append(
                ProviderRow(
                    provider=providers.get(resource, ""),
                    resource=resource,
                    released=p.released,
                    not_found=p.not_found,
                    failed=p.failed,
                    timed_out=p.timed_out,
                    uploads=p.uploads,
                    last_upload=None
                    if p.last_upload is None
                    else p.last_upload.astimezone(dt.UTC).isoformat(),
                    upload_age_days=age,
                )
            )
        return out


def compute(
    entries: Iterable[Entry],
    period: Period,
    *,
    providers: Mapping[str, str],
    as_of: dt.datetime,
) -> Figures:
    """The figures of ``period`` from ``entries`` (all of them up to the checkpoint, in any
    order). ``providers`` maps a resource to its provider (a resource it does not name is
    shown under provider ``""``); ``as_of`` is when upload freshness is measured."""
    run = _Computation(period, as_of)
    in_period = [e for e in entries if run.scan(e)]
    for e in in_period:
        run.count(e)
    items = run.rows("item")
    top = sorted(
        ((c.materials_saved, code) for code, c in items if c.materials_saved > 0),
        key=lambda pair: (-pair[0], pair[1]),
    )[:TOP_ITEMS]
    return Figures(
        totals=run.tally("total", "").counts(run.manifest_cases),
        departments=[DepartmentRow(department=k, counts=c) for k, c in run.rows("department")],
        items=[ItemRow(item=k, counts=c) for k, c in items],
        top_items=[TopItem(item=code, materials_saved=n) for n, code in top],
        providers=run.provider_rows(providers),
    )
