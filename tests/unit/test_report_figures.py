"""The report's pure parts: the figures from hand-made entries (expected counts written out
here), periods, suppression (property tests), and the comparison ``report verify`` makes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.policy import DISTRICT_TZ
from gateway.errors import InvalidInput
from gateway.reporting.figures import Entry, compute
from gateway.reporting.report import (
    CheckpointRef,
    build_report,
    differences,
    parse_quarter,
    parse_range,
    previous_period,
    public_view,
    report_dict,
    suppressed_cells,
)

Q4 = parse_quarter("2026Q4")
IN = dt.datetime(2026, 11, 3, 10, tzinfo=DISTRICT_TZ)
BEFORE = dt.datetime(2026, 9, 30, 23, 59, tzinfo=DISTRICT_TZ)  # 2026Q3's last minute
AFTER = dt.datetime(2027, 1, 1, 0, 0, tzinfo=DISTRICT_TZ)  # 2027Q1's first


def _e(index: int, event: str, **kw: Any) -> Entry:
    kw.setdefault("at", IN)
    kw.setdefault("decision", "allowed")
    return Entry(index=index, event=event, **kw)


def _entries() -> list[Entry]:
    m: dict[str, Any] = {"department": "tax", "service_item": "I1"}
    return [
        _e(1, "manifest:materials:listed", case_number="C1", subject_hmac="s1",
           detail='{"available": 2, "bring": 1, "not-granted": 1}', **m),
        _e(2, "lookup:record:released", case_number="C1", resource="r1", subject_hmac="s1", **m),
        _e(3, "lookup:record:released", case_number="C1", resource="r1", subject_hmac="s1", **m),
        _e(4, "lookup:record:released", case_number="C1", resource="r2", subject_hmac="s1", **m),
        # no manifest in C2: released, no material saved
        _e(5, "lookup:record:released", case_number="C2", resource="r1", subject_hmac="s2", **m),
        # released, then withheld by a correction entry: not counted at all
        _e(6, "lookup:record:released", case_number="C1", resource="r3", subject_hmac="s3", **m),
        _e(7, "audit:answer:withheld", decision="allowed", withholds=6),
        _e(8, "licence:verification:performed", case_number="C3", reason_code="valid",
           resource="licence:x", subject_hmac="s4", **m),
        _e(9, "licence:verification:performed", case_number="C1", reason_code="revoked",
           resource="licence:x", subject_hmac="s1", **m),
        # the manifest of C3 comes after its verification in the log: still counted
        _e(10, "manifest:materials:listed", case_number="C3", subject_hmac="s4",
           detail='{"available": 1, "bring": 0, "not-granted": 0}', **m),
        _e(11, "lookup:record:refused", decision="refused", reason_code="source-failed",
           resource="r1", case_number="C1", subject_hmac="s1", **m),
        _e(12, "lookup:record:refused", decision="refused", reason_code="source-timeout",
           resource="r2", department="hrss", service_item="I2"),
        _e(13, "lookup:record:refused", decision="refused", reason_code="token:expired"),
        _e(14, "lookup:record:not-found", resource="r2", subject_hmac="s5", department="hrss",
           service_item="I2", case_number="H1"),
        _e(15, "upload:version:accepted", resource="r2", at=IN - dt.timedelta(days=40)),
        _e(16, "upload:version:accepted", resource="r2", at=IN - dt.timedelta(days=3)),
        # outside the period: not counted (but an upload before it still dates the data)
        _e(17, "lookup:record:released", at=BEFORE, resource="r1", **m, case_number="C1"),
        _e(18, "lookup:record:released", at=AFTER, resource="r1", **m, case_number="C1"),
        # a manifest that failed is a refusal, and does not make its case a manifest's
        _e(19, "manifest:materials:refused", decision="refused", reason_code="purpose-not-granted",
           case_number="C2", **m),
    ]  # fmt: skip


def test_figures_from_hand_made_entries() -> None:
    figures = compute(_entries(), Q4, providers={"r1": "market", "r2": "hrss"}, as_of=IN)
    tax = {r.department: r.counts for r in figures.departments}["tax"]
    assert tax.lookups_released == 4  # 2, 3, 4, 5 (6 withheld; 17, 18 outside)
    assert tax.manifests == 2
    assert (tax.materials_available, tax.materials_to_bring, tax.materials_not_granted) == (3, 1, 1)
    assert tax.verdicts == {"revoked": 1, "valid": 1}
    assert tax.verifications == 2
    # saved: (C1, r1, s1) once, (C1, r2, s1), (C3, licence:x, s4); not C2, not the revoked one
    assert tax.materials_saved == 3
    assert tax.refusal_reasons == {"purpose-not-granted": 1, "source-failed": 1}
    assert tax.applicants == 3  # s1, s2, s4
    assert figures.totals.refusals == 4
    assert figures.totals.refusal_reasons["token:expired"] == 1
    assert figures.totals.applicants == 4  # s5 too
    providers = {p.resource: p for p in figures.providers}
    assert (providers["r1"].released, providers["r1"].failed) == (3, 1)  # 2, 3, 5
    assert (providers["r2"].released, providers["r2"].not_found) == (1, 1)
    assert (providers["r2"].timed_out, providers["r2"].uploads) == (1, 1)  # 15 is in Q3
    assert providers["r2"].upload_age_days == 3
    assert providers["r2"].provider == "hrss"
    assert [(t.item, t.materials_saved) for t in figures.top_items] == [("I1", 3)]


def test_entries_in_any_order_give_the_same_figures() -> None:
    entries = _entries()
    a = compute(entries, Q4, providers={}, as_of=IN)
    b = compute(list(reversed(entries)), Q4, providers={}, as_of=IN)
    assert a == b


@given(st.integers(2000, 2099), st.integers(1, 4))
def test_quarters_tile_the_years(year: int, quarter: int) -> None:
    period = parse_quarter(f"{year}Q{quarter}")
    assert 90 <= (period.end - period.start).days <= 92
    if (year, quarter) != (2000, 1):
        before = previous_period(period)
        assert before.end == period.start
        assert before.label == (f"{year - 1}Q4" if quarter == 1 else f"{year}Q{quarter - 1}")


@pytest.mark.parametrize(
    "text", ["2026Q5", "2026Q0", "2026q", "26Q4", "1999Q4", "2100Q1", "", "2026Q4 x", "２０２６Q4"]
)
def test_bad_quarters_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_quarter(text)
    assert err.value.field == "quarter"


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [("2026-12-01", "2026-11-30", "until"), ("2020-01-01", "2026-01-01", "until"),
     ("2026-02-30", "2026-03-01", "from"), ("yesterday", "2026-03-01", "from")],
)  # fmt: skip
def test_bad_ranges_are_refused(first: str, last: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_range(first, last)
    assert err.value.field == field


def _report(entries: list[Entry]) -> Any:
    return build_report(
        entries, Q4, providers={}, labels={}, office="o", now=IN,
        checkpoint=CheckpointRef(size=len(entries), root="00", signed_at=IN.isoformat(),
                                 token="t"),
    )  # fmt: skip


_events = st.sampled_from(
    [
        ("lookup:record:released", "allowed", None),
        ("licence:verification:performed", "allowed", "valid"),
        ("licence:verification:performed", "allowed", "revoked"),
        ("licence:verification:performed", "allowed", "expired"),
        ("lookup:record:refused", "refused", "purpose-not-granted"),
        ("lookup:record:refused", "refused", "not-shared"),
        ("manifest:materials:refused", "refused", "replay"),
    ]
)


@given(
    st.lists(
        st.tuples(_events, st.sampled_from(["a", "b", "c"]), st.sampled_from(["I1", "I2"])),
        max_size=60,
    ),
    st.integers(1, 10),
)
def test_suppression_leaves_no_cell_to_be_worked_out(
    made: list[tuple[tuple[str, str, str | None], str, str]], threshold: int
) -> None:
    entries = [
        _e(i, event, decision=decision, reason_code=reason, department=dept, service_item=item,
           subject_hmac=f"s{i % 7}", resource="r", case_number=f"C{i}")
        for i, ((event, decision, reason), dept, item) in enumerate(made, start=1)
    ]  # fmt: skip
    report = _report(entries)
    full = report_dict(report)
    public = public_view(report, threshold=threshold)
    hidden = suppressed_cells(full, threshold)
    mark = f"<{threshold}"

    def at(doc: Any, path: tuple[Any, ...]) -> Any:
        for part in path:
            doc = doc[part]
        return doc

    for path in hidden:
        assert at(full, path) > 0  # zeros are never hidden
        assert at(public, path) == mark
    rows = [public["figures"]["totals"]] + [
        r["counts"] for r in public["figures"]["departments"] + public["figures"]["items"]
    ]
    for row in rows:
        for name, value in row.items():
            if isinstance(value, int):
                assert value == 0 or value >= threshold, name
        for group, total in (("verdicts", "verifications"), ("refusal_reasons", "refusals")):
            cells = [*row[group].values(), row[total]]
            assert sum(1 for v in cells if v == mark) != 1
    for table in ("departments", "items"):
        for name in ("lookups_released", "verifications", "refusals"):
            column = [r["counts"][name] for r in public["figures"][table]]
            column.append(public["figures"]["totals"][name])
            assert sum(1 for v in column if v == mark) != 1, (table, name)


def test_differences_name_the_changed_figure() -> None:
    report = report_dict(_report(_entries()))
    edited = report_dict(_report(_entries()))
    edited["figures"]["departments"][0]["counts"]["refusals"] += 1
    edited["generated_at"] = "later"  # not a figure
    assert differences(edited, report) == [
        "figures.departments[hrss].counts.refusals: published 2, recomputed 1"
    ]
    assert differences(report, report) == []
