"""The report document: its period, the checkpoint it rests on, its figures and those of the
period before; the public form with small counts suppressed; and the comparison
``gateway report verify`` makes (all pure: no I/O here).

**Suppression** (the public form): every count ``0 < n < threshold`` is shown as
``"<threshold"`` (:data:`DEFAULT_THRESHOLD` = 5: ``"<5"``). Zeros stay visible. Then
*complementary* suppression, so that no hidden cell can be worked out by subtraction: in every
group of cells that add up to a published total — a row's verdicts and its verification total,
its refusal reasons and its refusal total, each column of the department and item tables with
the totals row — a group with exactly one hidden cell has its smallest other non-zero cell
hidden too, and this is repeated until no group has a single hidden cell. Distinct applicants
do not add up across rows (one person may be served by two departments): they are suppressed
where small, never complemented. The public form carries no subject, request id, case number or
operator — nor does the full one: both hold counts only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from gateway.core.policy import DISTRICT_TZ
from gateway.errors import InvalidInput
from gateway.reporting.figures import COUNT_FIELDS, Counts, Entry, Figures, Period, compute

__all__ = [
    "DEFAULT_OFFICE",
    "DEFAULT_THRESHOLD",
    "FORMAT",
    "MAX_DAYS",
    "CheckpointRef",
    "Report",
    "build_report",
    "differences",
    "parse_quarter",
    "parse_range",
    "previous_period",
    "public_view",
    "report_dict",
]

#: The document's format name (``format`` in every report).
FORMAT = "yiwang-once-only-report/1"
#: Counts below this are shown as "<5" in the public form.
DEFAULT_THRESHOLD = 5
#: The issuing office printed on the 通报 unless another is named.
DEFAULT_OFFICE = "区政务服务管理办公室"
#: The longest period a report covers (a year and a day: any calendar year fits).
MAX_DAYS = 366
_FIRST_YEAR, _LAST_YEAR = 2000, 2099

_QUARTER = re.compile(r"^([0-9]{4})[Qq]([1-4])$")


class CheckpointRef(msgspec.Struct, frozen=True, kw_only=True):
    """The signed checkpoint a report was computed at: entries ``1..size``, their root."""

    size: int
    root: str
    signed_at: str  # ISO 8601 (its ``iat``)
    token: str  # the signed checkpoint (JWS), verifiable with the gateway's JWKS


class Change(msgspec.Struct, kw_only=True):
    name: str
    now: int
    before: int
    delta: int
    percent: float | None  # None when ``before`` is 0


class Report(msgspec.Struct, kw_only=True):
    """A once-only report (the full form: every count as it is)."""

    format: str
    form: str  # "full" | "public"
    office: str
    period: Period
    previous_period: Period
    checkpoint: CheckpointRef
    as_of: str  # ISO 8601: the earlier of the period's end and the checkpoint's signing time
    generated_at: str
    figures: Figures
    previous: Counts
    change: list[Change]
    labels: dict[str, dict[str, str]]  # names of departments, items, resources (not figures)
    threshold: int | None = None  # the public form's


#: The headline figures compared with the period before.
CHANGE_FIELDS = (
    "lookups_released",
    "verifications",
    "manifests",
    "materials_saved",
    "refusals",
    "applicants",
)


def _year(text: str, what: str) -> int:
    year = int(text)
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        raise InvalidInput(what, f"the year must be {_FIRST_YEAR}..{_LAST_YEAR}")
    return year


def parse_quarter(text: str) -> Period:
    """``2026Q4`` → 2026-10-01 up to 2027-01-01 (Beijing time). InvalidInput otherwise."""
    match = _QUARTER.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput("quarter", "must be YYYYQn with n 1..4, e.g. 2026Q4")
    year, quarter = _year(match[1], "quarter"), int(match[2])
    start = dt.date(year, 3 * quarter - 2, 1)
    end = dt.date(year + 1, 1, 1) if quarter == 4 else dt.date(year, 3 * quarter + 1, 1)
    return Period(label=f"{year}Q{quarter}", start=start, end=end)


def _date(text: str, what: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(what, "must be a date YYYY-MM-DD") from None
    _year(str(day.year), what)
    return day


def parse_range(first: str, last: str) -> Period:
    """The days ``first`` to ``last`` inclusive (YYYY-MM-DD, Beijing time)."""
    start, last_day = _date(first, "from"), _date(last, "until")
    if last_day < start:
        raise InvalidInput("until", "must not be before 'from'")
    if (last_day - start).days + 1 > MAX_DAYS:
        raise InvalidInput("until", f"a report covers at most {MAX_DAYS} days")
    return Period(label=f"{start}..{last_day}", start=start, end=last_day + dt.timedelta(days=1))


def previous_period(period: Period) -> Period:
    """The quarter before a quarter; for any other range, as many days just before it."""
    match = _QUARTER.match(period.label)
    if match is not None:
        year, quarter = int(match[1]), int(match[2])
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
        if year >= _FIRST_YEAR:
            return parse_quarter(f"{year}Q{quarter}")
    days = period.end - period.start
    start = period.start - days
    return Period(label=f"{start}..{period.start - dt.timedelta(days=1)}", start=start,
                  end=period.start)  # fmt: skip


def _change(now: Counts, before: Counts) -> list[Change]:
    out = []
    for name in CHANGE_FIELDS:
        a, b = getattr(now, name), getattr(before, name)
        out.append(
            Change(
                name=name,
                now=a,
                before=b,
                delta=a - b,
                percent=None if b == 0 else round(100.0 * (a - b) / b, 1),
            )
        )
    return out


def build_report(
    entries: Iterable[Entry],
    period: Period,
    *,
    checkpoint: CheckpointRef,
    providers: Mapping[str, str],
    labels: Mapping[str, Mapping[str, str]],
    office: str,
    now: dt.datetime,
) -> Report:
    """The full report of ``period`` from the entries ``1..checkpoint.size``."""
    rows = list(entries)
    signed_at = dt.datetime.fromisoformat(checkpoint.signed_at)
    as_of = min(period.end_at, signed_at)
    before = previous_period(period)
    figures = compute(rows, period, providers=providers, as_of=as_of)
    previous = compute(rows, before, providers=providers, as_of=min(before.end_at, signed_at))
    return Report(
        format=FORMAT,
        form="full",
        office=office,
        period=period,
        previous_period=before,
        checkpoint=checkpoint,
        as_of=as_of.astimezone(DISTRICT_TZ).isoformat(),
        generated_at=now.astimezone(DISTRICT_TZ).isoformat(timespec="seconds"),
        figures=figures,
        previous=previous.totals,
        change=_change(figures.totals, previous.totals),
        labels={k: dict(v) for k, v in labels.items()},
    )


def report_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready builtins."""
    out: dict[str, Any] = msgspec.to_builtins(report)
    return out


# --- suppression ---------------------------------------------------------------------------

Path = tuple[str | int, ...]


def _counts_cells(base: Path, counts: Mapping[str, Any]) -> tuple[list[Path], list[list[Path]]]:
    """The count cells of one Counts object, and its additive groups."""
    cells = [(*base, name) for name in COUNT_FIELDS]
    verdicts = [(*base, "verdicts", k) for k in counts["verdicts"]]
    reasons = [(*base, "refusal_reasons", k) for k in counts["refusal_reasons"]]
    groups = [[*verdicts, (*base, "verifications")], [*reasons, (*base, "refusals")]]
    return cells + verdicts + reasons, groups


def _cells_and_groups(doc: Mapping[str, Any]) -> tuple[list[Path], list[list[Path]]]:
    figures = doc["figures"]
    cells: list[Path] = []
    groups: list[list[Path]] = []
    c, g = _counts_cells(("figures", "totals"), figures["totals"])
    cells += c
    groups += g
    for table in ("departments", "items"):
        for i, row in enumerate(figures[table]):
            c, g = _counts_cells(("figures", table, i, "counts"), row["counts"])
            cells += c
            groups += g
        for name in COUNT_FIELDS:
            if name == "applicants":
                continue  # distinct counts do not add up across rows
            groups.append(
                [("figures", table, i, "counts", name) for i in range(len(figures[table]))]
                + [("figures", "totals", name)]
            )
    for i, _row in enumerate(figures["providers"]):
        row_cells = [
            ("figures", "providers", i, k)
            for k in ("released", "not_found", "failed", "timed_out", "uploads")
        ]
        cells += row_cells
    for i, _item in enumerate(figures["top_items"]):
        cells.append(("figures", "top_items", i, "materials_saved"))
    for name in COUNT_FIELDS:
        cells.append(("previous", name))
    for i, _change_row in enumerate(doc["change"]):
        cells += [("change", i, "now"), ("change", i, "before")]
    return cells, groups


def _get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: Path, value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def suppressed_cells(doc: Mapping[str, Any], threshold: int) -> set[Path]:
    """The cells the public form hides: primary (small) and complementary ones."""
    cells, groups = _cells_and_groups(doc)
    hidden = {p for p in cells if 0 < _get(doc, p) < threshold}
    changed = True
    while changed:
        changed = False
        for group in groups:
            if sum(1 for p in group if p in hidden) != 1:
                continue
            others = [p for p in group if p not in hidden and _get(doc, p) > 0]
            if not others:
                continue
            # The smallest other cell; a row's cell before the group's total.
            pick = min(others, key=lambda p: (p == group[-1], _get(doc, p), repr(p)))
            hidden.add(pick)
            changed = True
    return hidden


def public_view(report: Report, *, threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The public form: small counts (and their complements) shown as ``"<threshold"``; the
    change with the period before is given only where both its counts are shown."""
    if threshold < 1:
        raise InvalidInput("threshold", "must be at least 1")
    doc = report_dict(report)
    hidden = suppressed_cells(doc, threshold)
    mark = f"<{threshold}"
    for path in hidden:
        _set(doc, path, mark)
    for row in doc["change"]:
        if isinstance(row["now"], str) or isinstance(row["before"], str):
            row["delta"] = mark if row["delta"] != 0 else 0
            row["percent"] = None
    for row in doc["figures"]["top_items"]:
        if isinstance(row["materials_saved"], str):
            row["materials_saved"] = mark
    doc["form"] = "public"
    doc["threshold"] = threshold
    return doc


# --- comparison ----------------------------------------------------------------------------

#: What a published report may hold that is not a figure: not compared.
NOT_COMPARED = frozenset({"generated_at", "labels", "office"})


def _row_key(row: Any) -> str | None:
    if isinstance(row, Mapping):
        for key in ("department", "item", "resource", "name"):
            value = row.get(key)
            if isinstance(value, str):
                return value
    return None


def differences(published: Any, recomputed: Any, path: str = "") -> list[str]:
    """Where ``published`` differs from ``recomputed``, one line per difference (the path of
    the value, e.g. ``figures.departments[tax].counts.lookups_released: published 12,
    recomputed 11``)."""
    out: list[str] = []
    if isinstance(published, Mapping) and isinstance(recomputed, Mapping):
        for key in sorted({*published, *recomputed}):
            if not path and key in NOT_COMPARED:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in published:
                out.append(f"{where}: missing from the published report")
            elif key not in recomputed:
                out.append(f"{where}: not in the recomputed report")
            else:
                out += differences(published[key], recomputed[key], where)
        return out
    if isinstance(published, list) and isinstance(recomputed, list):
        keys_a = [_row_key(r) for r in published]
        keys_b = [_row_key(r) for r in recomputed]
        if None not in keys_a and None not in keys_b and keys_a != keys_b:
            extra = sorted(set(map(str, keys_a)) - set(map(str, keys_b)))
            missing = sorted(set(map(str, keys_b)) - set(map(str, keys_a)))
            if extra or missing:
                out.append(
                    f"{path}: rows differ (published only: {', '.join(extra) or '-'}; "
                    f"recomputed only: {', '.join(missing) or '-'})"
                )
                return out
        if len(published) != len(recomputed):
            return [f"{path}: {len(published)} rows published, {len(recomputed)} recomputed"]
        for i, (a, b) in enumerate(zip(published, recomputed, strict=True)):
            label = keys_b[i] if keys_b[i] is not None else str(i)
            out += differences(a, b, f"{path}[{label}]")
        return out
    if published != recomputed or type(published) is not type(recomputed):
        numbers = isinstance(published, (int, float)) and isinstance(recomputed, (int, float))
        if numbers and published == recomputed and not isinstance(published, bool):
            return out
        out.append(f"{path}: published {published!r}, recomputed {recomputed!r}")
    return out
