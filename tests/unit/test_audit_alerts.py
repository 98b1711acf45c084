"""The alert rules on hand-made entries: one test (or more) per kind, the edges of each
threshold, and what must not raise an alert."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.oversight.alerts import (
    Alert,
    AlertEntry,
    AlertKind,
    AlertRules,
    GrantQuota,
    WorkingHours,
    evaluate,
    hourly_medians,
)

UTC8 = dt.timezone(dt.timedelta(hours=8))
#: Wednesday 2026-06-10, 10:00 district time: inside working hours.
WEDNESDAY_10 = dt.datetime(2026, 6, 10, 10, 0, tzinfo=UTC8)
RULES = AlertRules()


def read(
    at: dt.datetime,
    department: str = "tax",
    subject: str = "s0",
    *,
    grant: str | None = "g-tax-enterprise",
    resource: str = "enterprise-registration",
    event: str = "lookup:record:released",
) -> AlertEntry:
    return AlertEntry(
        at=at,
        event=event,
        decision="allowed",
        department=department,
        subject_hmac=subject,
        grant_id=grant,
        resource=resource,
    )


def refusal(
    at: dt.datetime,
    code: str,
    department: str | None = "tax",
    *,
    subject: str = "s0",
    case: str | None = "C-1",
    resource: str = "enterprise-registration",
) -> AlertEntry:
    return AlertEntry(
        at=at,
        event="lookup:record:refused",
        decision="refused",
        department=department,
        subject_hmac=subject,
        reason_code=code,
        resource=resource,
        case_number=case,
    )


def reads_in_hour(department: str, distinct: int, start: dt.datetime) -> list[AlertEntry]:
    """``distinct`` subjects read once each (and the first one twice) within one hour."""
    entries = [
        read(start + dt.timedelta(seconds=10 * n), department, f"{department}-s{n}")
        for n in range(distinct)
    ]
    return [*entries, read(start + dt.timedelta(minutes=59), department, f"{department}-s0")]


def kinds(alerts: list[Alert]) -> list[str]:
    return [str(a.kind) for a in alerts]


# --- subject rate ---------------------------------------------------------------------------------


def test_a_department_reading_far_more_subjects_than_usual_is_an_alert() -> None:
    entries = [
        *reads_in_hour("tax", 31, WEDNESDAY_10),  # 31 > 3 × 10 and ≥ 20
        *reads_in_hour("hrss", 30, WEDNESDAY_10),  # 30 = 3 × 10: not more
        *reads_in_hour("market", 19, WEDNESDAY_10),  # below the floor, usual rate or not
    ]
    baseline = {"tax": 10.0, "hrss": 10.0, "market": 1.0}
    [alert] = evaluate(entries, rules=RULES, baseline=baseline)
    assert alert.kind is AlertKind.SUBJECT_RATE
    assert alert.department == "tax"
    assert alert.start == dt.datetime(2026, 6, 10, 2, 0, tzinfo=dt.UTC)
    assert alert.end - alert.start == dt.timedelta(hours=1)
    assert alert.numbers == {
        "distinct_subjects": 31,
        "reads": 32,
        "usual_per_hour": 10.0,
        "factor": 3.0,
        "floor": 20,
    }
    assert "3.1× its usual 10 per active hour" in alert.why


def test_with_no_usual_rate_the_floor_decides() -> None:
    assert evaluate(reads_in_hour("tax", 19, WEDNESDAY_10), rules=RULES) == []
    [alert] = evaluate(reads_in_hour("tax", 20, WEDNESDAY_10), rules=RULES)
    assert alert.numbers["usual_per_hour"] is None
    assert "no usual rate" in alert.why


def test_subjects_are_counted_per_clock_hour_and_only_when_read() -> None:
    # 15 + 15 distinct subjects, but across two clock hours: neither hour reaches the floor.
    split = [
        *reads_in_hour("tax", 15, WEDNESDAY_10 - dt.timedelta(hours=1)),
        *[read(WEDNESDAY_10 + dt.timedelta(seconds=n), "tax", f"later-{n}") for n in range(15)],
    ]
    assert evaluate(split, rules=RULES) == []
    # Refused lookups do not read anything; lookups that found no record and licence
    # verifications do (the subject was looked for).
    refused = [refusal(WEDNESDAY_10, "no-grant", subject=f"r{n}") for n in range(40)]
    assert evaluate(refused, rules=RULES) == []
    mixed = [
        read(WEDNESDAY_10, subject=f"n{n}", event="lookup:record:not-found") for n in range(10)
    ] + [
        read(WEDNESDAY_10, subject=f"v{n}", event="licence:verification:performed")
        for n in range(10)
    ]
    assert kinds(evaluate(mixed, rules=RULES)) == ["subject-rate"]


def test_usual_rate_is_the_median_of_active_hours() -> None:
    counts = [
        ("tax", "2026-06-01T01", 4),
        ("tax", "2026-06-01T02", 10),
        ("tax", "2026-06-02T03", 6),
        ("hrss", "2026-06-01T01", 3),
        ("hrss", "2026-06-01T02", 5),
        (None, "2026-06-01T01", 99),  # unattributed reads have no usual rate
        ("market", "2026-06-01T01", 0),
    ]
    assert hourly_medians(counts) == {"tax": 6.0, "hrss": 4.0}


# --- grant quota ----------------------------------------------------------------------------------


QUOTA = GrantQuota("g-civil-identity", "civil-affairs", "resident-identity", 3)


def test_refusals_over_the_daily_quota_are_an_alert() -> None:
    entries = [
        *(
            read(
                WEDNESDAY_10 + dt.timedelta(minutes=n),
                "civil-affairs",
                f"p{n}",
                grant="g-civil-identity",
                resource="resident-identity",
            )
            for n in range(3)
        ),
        *(
            refusal(
                WEDNESDAY_10 + dt.timedelta(minutes=10 + n),
                "quota-exhausted",
                "civil-affairs",
                subject=f"q{n}",
                resource="resident-identity",
            )
            for n in range(2)
        ),
    ]
    [alert] = evaluate(entries, rules=RULES, quotas=[QUOTA])
    assert alert.kind is AlertKind.GRANT_QUOTA
    assert alert.department == "civil-affairs"
    assert alert.numbers == {
        "resource": "resident-identity",
        "day": "2026-06-10",
        "grant": "g-civil-identity",
        "max_subjects_per_day": 3,
        "distinct_subjects_read": 3,
        "refused_over_quota": 2,
    }
    assert alert.start == WEDNESDAY_10
    assert alert.end == WEDNESDAY_10 + dt.timedelta(minutes=11)


def test_more_distinct_subjects_than_the_quota_allows_is_an_alert() -> None:
    # The quota is counted per district day: 23:30 and 00:30 UTC+8 are different days.
    late = dt.datetime(2026, 6, 10, 23, 30, tzinfo=UTC8)

    def by_civil(at: dt.datetime, subject: str) -> AlertEntry:
        return read(
            at, "civil-affairs", subject, grant="g-civil-identity", resource="resident-identity"
        )

    two_days = [by_civil(late, f"a{n}") for n in range(3)] + [
        by_civil(late + dt.timedelta(hours=1), f"b{n}") for n in range(3)
    ]
    # (late at night: outside working hours too, another kind)
    assert "grant-quota" not in kinds(evaluate(two_days, rules=RULES, quotas=[QUOTA]))
    over = [*two_days, by_civil(late + dt.timedelta(minutes=5), "a3")]
    [alert] = [a for a in evaluate(over, rules=RULES, quotas=[QUOTA]) if a.kind == "grant-quota"]
    assert alert.numbers["distinct_subjects_read"] == 4
    assert alert.numbers["refused_over_quota"] == 0
    assert alert.numbers["day"] == "2026-06-10"


# --- hours ----------------------------------------------------------------------------------------


def test_lookups_refused_outside_the_grants_office_hours_are_an_alert() -> None:
    evening = dt.datetime(2026, 6, 10, 19, 0, tzinfo=UTC8)
    entries = [
        refusal(
            evening, "outside-hours", "service-centre", subject="p1", resource="social-insurance"
        ),
        refusal(
            evening + dt.timedelta(minutes=3),
            "outside-hours",
            "service-centre",
            subject="p2",
            resource="social-insurance",
        ),
    ]
    [alert] = evaluate(entries, rules=RULES)
    assert alert.kind is AlertKind.OUTSIDE_GRANT_HOURS
    assert alert.numbers == {
        "day": "2026-06-10",
        "refused": 2,
        "distinct_subjects": 2,
        "resources": {"social-insurance": 2},
    }
    assert "2026-06-10 19:00:00 to 2026-06-10 19:03:00" in alert.why


@pytest.mark.parametrize(
    ("local", "alert"),
    [
        (dt.datetime(2026, 6, 10, 8, 0), False),  # start is inclusive
        (dt.datetime(2026, 6, 10, 17, 59, 59), False),
        (dt.datetime(2026, 6, 10, 18, 0), True),  # end is exclusive
        (dt.datetime(2026, 6, 10, 7, 59, 59), True),
        (dt.datetime(2026, 6, 13, 11, 0), True),  # Saturday
        (dt.datetime(2026, 6, 10, 2, 0), True),  # 02:00 district = 18:00 UTC the day before
    ],
)
def test_reads_outside_the_districts_working_hours_are_an_alert(
    local: dt.datetime, alert: bool
) -> None:
    found = evaluate([read(local.replace(tzinfo=UTC8))], rules=RULES)
    assert kinds(found) == (["outside-working-hours"] if alert else [])
    if alert:
        assert found[0].numbers["day"] == local.date().isoformat()  # the district's date


def test_working_hours_are_configurable() -> None:
    hours = WorkingHours.parse("07:30-20:00", "mon,tue,wed,thu,fri,sat")
    rules = AlertRules(working_hours=hours)
    saturday = dt.datetime(2026, 6, 13, 19, 0, tzinfo=UTC8)
    assert evaluate([read(saturday)], rules=rules) == []
    assert str(hours) == "07:30-20:00 mon,tue,wed,thu,fri,sat (UTC+8)"
    for bad in (
        ("18:00-08:00", "mon"),
        ("8-18", "mon"),
        ("08:00-18:00", "monday"),
        ("08:00-18:00", ""),
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - any of several messages
            WorkingHours.parse(*bad)


# --- closed cases ---------------------------------------------------------------------------------


def test_lookups_for_a_closed_case_are_an_alert_per_case() -> None:
    entries = [
        refusal(WEDNESDAY_10, "case-closed", "market", case="BJ-1"),
        refusal(
            WEDNESDAY_10 + dt.timedelta(minutes=1),
            "case-closed",
            "market",
            case="BJ-1",
            subject="s1",
        ),
        refusal(WEDNESDAY_10 + dt.timedelta(minutes=2), "case-closed", "market", case="BJ-2"),
        refusal(WEDNESDAY_10, "no-grant", "market", case="BJ-3"),  # another refusal: no alert
    ]
    found = evaluate(entries, rules=RULES)
    assert kinds(found) == ["closed-case", "closed-case"]
    by_case = {a.numbers["case"]: a for a in found}
    assert by_case["BJ-1"].numbers == {
        "case": "BJ-1",
        "refused": 2,
        "distinct_subjects": 2,
        "resources": {"enterprise-registration": 2},
    }
    assert by_case["BJ-2"].numbers["refused"] == 1
    assert "had declared closed" in by_case["BJ-1"].why


# --- token failures -------------------------------------------------------------------------------


def failures(department: str | None, start: dt.datetime, *gaps_seconds: int) -> list[AlertEntry]:
    out, at = [], start
    for gap in (0, *gaps_seconds):
        at += dt.timedelta(seconds=gap)
        out.append(refusal(at, "token:bad-signature", department))
    return out


def test_five_token_failures_within_ten_minutes_are_an_alert() -> None:
    burst = failures("police", WEDNESDAY_10, 120, 120, 120, 240)  # the 5th at exactly 10 min
    [alert] = evaluate(burst, rules=RULES)
    assert alert.kind is AlertKind.TOKEN_FAILURES
    assert alert.department == "police"
    assert alert.numbers == {
        "failures": 5,
        "most_within_window": 5,
        "window_seconds": 600,
        "threshold": 5,
        "reasons": {"token:bad-signature": 5},
    }
    assert (alert.start, alert.end) == (WEDNESDAY_10, WEDNESDAY_10 + dt.timedelta(minutes=10))


def test_token_failures_spread_out_or_too_few_are_not() -> None:
    assert evaluate(failures("police", WEDNESDAY_10, 60, 60, 60), rules=RULES) == []
    assert evaluate(failures("police", WEDNESDAY_10, 150, 150, 150, 151), rules=RULES) == []
    # Five, but of two departments.
    mixed = failures("police", WEDNESDAY_10, 10, 10) + failures("tax", WEDNESDAY_10, 10)
    assert evaluate(mixed, rules=RULES) == []


def test_each_burst_of_token_failures_is_one_alert() -> None:
    first = failures("police", WEDNESDAY_10, *([30] * 7))  # 8 in 3.5 minutes
    second = failures("police", WEDNESDAY_10 + dt.timedelta(hours=2), 1, 1, 1, 1)
    unknown = failures(None, WEDNESDAY_10, 1, 1, 1, 1, 1)  # no key owner: unattributed
    found = evaluate([*second, *unknown, *first], rules=RULES)  # any order
    tokens = [a for a in found if a.kind == AlertKind.TOKEN_FAILURES]
    assert [(a.department, a.numbers["failures"]) for a in tokens] == [
        (None, 6),
        ("police", 8),
        ("police", 5),
    ]
    assert "an unidentified sender" in tokens[0].why
    assert tokens[0].as_json({"police": "区公安分局"})["department_name"] is None
    assert tokens[1].as_json({"police": "区公安分局"})["department_name"] == "区公安分局"


def test_thresholds_are_rules() -> None:
    strict = AlertRules(
        token_failures=3, token_window=dt.timedelta(minutes=1), rate_floor=5, rate_factor=2.0
    )
    assert kinds(evaluate(failures("tax", WEDNESDAY_10, 20, 20), rules=strict)) == [
        "token-failures"
    ]
    assert kinds(evaluate(reads_in_hour("tax", 5, WEDNESDAY_10), rules=strict)) == ["subject-rate"]
    assert evaluate(reads_in_hour("tax", 5, WEDNESDAY_10), rules=strict, baseline={"tax": 3}) == []


def test_alerts_come_in_time_order_as_json() -> None:
    entries = [
        *failures("tax", WEDNESDAY_10 + dt.timedelta(minutes=30), 1, 1, 1, 1),
        refusal(WEDNESDAY_10, "case-closed", "market", case="BJ-9"),
    ]
    found = evaluate(entries, rules=RULES)
    assert kinds(found) == ["closed-case", "token-failures"]
    as_json = found[1].as_json({"tax": "区税务局"})
    assert as_json["kind"] == "token-failures"
    assert as_json["department_name"] == "区税务局"
    assert as_json["window"] == {"from": "2026-06-10T02:30:00Z", "until": "2026-06-10T02:30:04Z"}
    assert as_json["why"].startswith("5 request tokens of tax refused")


def login_failures(
    username: str | None, start: dt.datetime, *gaps: int, code: str = "wrong-password"
) -> list[AlertEntry]:
    """Refused console log-ins under one username, ``gaps`` seconds apart."""
    at, out = start, []
    for gap in (0, *gaps):
        at += dt.timedelta(seconds=gap)
        out.append(
            AlertEntry(
                at=at,
                event="console:login:failed",
                decision="refused",
                department=None,
                reason_code=code if username is not None else "unknown-account",
                operator=username,
            )
        )
    return out


def test_five_failed_console_log_ins_of_one_username_are_an_alert() -> None:
    burst = login_failures("clerk-wang", WEDNESDAY_10, 60, 60, 60, 60)
    [alert] = evaluate(burst, rules=RULES)
    assert alert.kind is AlertKind.LOGIN_FAILURES
    assert alert.numbers == {
        "username": "clerk-wang",
        "failures": 5,
        "most_within_window": 5,
        "window_seconds": 600,
        "threshold": 5,
        "reasons": {"wrong-password": 5},
    }
    assert (alert.start, alert.end) == (WEDNESDAY_10, WEDNESDAY_10 + dt.timedelta(minutes=4))
    assert "clerk-wang" in alert.why


def test_failed_log_ins_too_few_spread_out_or_of_several_usernames_are_not() -> None:
    assert evaluate(login_failures("clerk-wang", WEDNESDAY_10, 1, 1, 1), rules=RULES) == []
    spread = login_failures("clerk-wang", WEDNESDAY_10, 200, 200, 200, 200)
    assert evaluate(spread, rules=RULES) == []
    mixed = login_failures("a-one", WEDNESDAY_10, 1, 1) + login_failures("a-two", WEDNESDAY_10, 1)
    assert evaluate(mixed, rules=RULES) == []
    # Unknown usernames count together: someone trying names.
    guessing = login_failures(None, WEDNESDAY_10, 1, 1, 1, 1)
    assert [a.numbers["reasons"] for a in evaluate(guessing, rules=RULES)] == [
        {"unknown-account": 5}
    ]
    # The thresholds are the token failures' ones.
    strict = AlertRules(token_failures=3, token_window=dt.timedelta(minutes=1))
    assert kinds(evaluate(login_failures("a-one", WEDNESDAY_10, 20, 20), rules=strict)) == [
        "login-failures"
    ]


def test_a_locked_console_account_is_an_alert() -> None:
    locked = AlertEntry(
        at=WEDNESDAY_10,
        event="console:account:locked",
        decision="refused",
        department="service-centre",
        reason_code="too-many-failures",
        operator="clerk-wang",
    )
    [alert] = evaluate([locked], rules=RULES)
    assert alert.kind is AlertKind.ACCOUNT_LOCKED
    assert (alert.department, alert.numbers) == ("service-centre", {"username": "clerk-wang"})
    assert "clerk-wang" in alert.why
    assert "2026-06-10 10:00:00" in alert.why
