"""Every code the officers' and administrators' pages show has words in both languages: a
new audit event, alert kind, seal revocation reason or role without a name fails here."""

from __future__ import annotations

import re

import pytest

from gateway.accounts import Role as AccountRole
from gateway.audit.verify import ProblemCode
from gateway.console.officers import alert_why, local_time, outcome
from gateway.console.officers_text import (
    ALERT_KINDS,
    DEPARTMENT_ROLES,
    EVENT_NAMES,
    REVOCATION_REASONS,
    VERIFY_PROBLEMS,
    reason_words,
    signed_in_words,
    verify_problem_words,
)
from gateway.core.policy import ReasonCode
from gateway.core.policy import Role as DepartmentRole
from gateway.core.protocol import AuditEvent
from gateway.core.seals import RevocationReason
from gateway.oversight.alerts import AlertKind

LANGS = ("zh", "en")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.mark.parametrize("lang", LANGS)
def test_every_audit_event_has_a_name(lang: str) -> None:
    names = EVENT_NAMES[lang]
    assert {str(e) for e in AuditEvent} == set(names)
    assert all(names[e].strip() for e in AuditEvent)
    assert len(set(names.values())) == len(names)  # two events never read the same


def test_chinese_names_have_no_english_words() -> None:
    for table in (EVENT_NAMES, ALERT_KINDS, DEPARTMENT_ROLES, REVOCATION_REASONS):
        for code, words in table["zh"].items():
            assert not _LATIN_WORD.search(words), (code, words)


@pytest.mark.parametrize("lang", LANGS)
def test_every_alert_kind_role_and_revocation_reason_has_words(lang: str) -> None:
    assert {str(k) for k in AlertKind} == set(ALERT_KINDS[lang])
    roles = {str(r) for r in DepartmentRole} | {str(r) for r in AccountRole}
    assert roles == set(DEPARTMENT_ROLES[lang])
    assert {str(r) for r in RevocationReason} == set(REVOCATION_REASONS[lang])


@pytest.mark.parametrize("code", [str(c) for c in ReasonCode])
def test_every_policy_refusal_has_words(code: str) -> None:
    for lang in LANGS:
        words, shown = reason_words(code, lang)
        assert words
        assert shown is None


def test_an_unknown_reason_is_other_with_its_code_beside() -> None:
    assert reason_words("something-new", "zh") == ("其他原因", "something-new")
    assert reason_words("token:bad-signature", "zh") == ("签名无法核验（可能伪造）", None)
    assert reason_words("token:never-seen", "zh")[1] == "token:never-seen"


def test_outcomes_read_as_verdicts_and_refusals() -> None:
    verification = {"event": "licence:verification:performed", "decision": "allowed"}
    assert outcome({**verification, "reason_code": "forged"}, "zh")["words"] == "伪造或被篡改"
    assert outcome({**verification, "reason_code": "revoked"}, "zh")["ok"] is False
    assert outcome({**verification, "reason_code": "valid"}, "zh") == {
        "words": "有效", "ok": True, "code": None,
    }  # fmt: skip
    refused = {"event": "lookup:record:refused", "decision": "refused", "reason_code": "no-grant"}
    assert outcome(refused, "zh")["words"] == "拒绝：没有授权"
    assert outcome(refused, "en")["words"] == "Refused: no grant"
    assert outcome({"event": "lookup:record:released", "decision": "allowed"}, "zh")["words"] == (
        "允许"
    )


def test_times_are_beijing_time_to_the_second() -> None:
    assert local_time("2026-06-10T02:30:04.123456Z") == "2026-06-10 10:30:04"
    assert local_time("2026-06-10T02:30:04") == "2026-06-10 10:30:04"  # naive: stored UTC


def _alert(kind: str, **numbers: object) -> dict[str, object]:
    return {
        "kind": kind,
        "department": "tax",
        "window": {"from": "2026-06-10T02:30:00Z", "until": "2026-06-10T02:40:00Z"},
        "numbers": numbers,
        "why": "english",
    }


ALERTS = {
    "subject-rate": _alert("subject-rate", distinct_subjects=90, reads=95, usual_per_hour=10.0,
                           factor=3.0, floor=20),
    "grant-quota": _alert("grant-quota", resource="enterprise-registration", day="2026-06-10",
                          grant="g-1", max_subjects_per_day=5, distinct_subjects_read=7,
                          refused_over_quota=2),
    "outside-grant-hours": _alert("outside-grant-hours", day="2026-06-10", refused=3,
                                  distinct_subjects=3, resources={}),
    "outside-working-hours": _alert("outside-working-hours", day="2026-06-10", reads=4,
                                    distinct_subjects=4, resources={}, working_time="08:00-18:00",
                                    working_days=["mon", "tue"]),
    "closed-case": _alert("closed-case", case="YW-1", refused=2, distinct_subjects=1,
                          resources={}),
    "token-failures": _alert("token-failures", failures=5, most_within_window=5,
                             window_seconds=600, threshold=5,
                             reasons={"token:bad-signature": 5}),
    "login-failures": _alert("login-failures", username="clerk-wang", failures=5,
                             most_within_window=5, window_seconds=600, threshold=5,
                             reasons={"wrong-password": 5}),
    "account-locked": _alert("account-locked", username="clerk-wang"),
    "key-expiring": _alert("key-expiring", what="department-key", id="YW-1",
                           expires_at="2026-06-10T02:30:00Z", days_left=12.0,
                           alert_days_ahead=30),
    "seal-expiring": _alert("seal-expiring", what="seal", id="YW-2",
                            expires_at="2026-06-10T02:30:00Z", days_left=-1.0,
                            alert_days_ahead=30),
}  # fmt: skip


def test_every_alert_kind_has_a_chinese_reason() -> None:
    assert set(ALERTS) == {str(k) for k in AlertKind}
    names = {"tax": "区税务局"}
    allowed = {"enterprise", "registration", "clerk", "wang", "YW"}
    for kind, alert in ALERTS.items():
        why = alert_why(alert, "zh", names)
        assert why != ALERT_KINDS["zh"][kind]  # not the fallback
        assert set(_LATIN_WORD.findall(why)) <= allowed, (kind, why)
        assert "2026-06-10" in why or kind == "grant-quota"
    assert alert_why(ALERTS["closed-case"], "en", names) == "english"


def test_the_chart_legend_names_departments_without_overlapping() -> None:
    import datetime as dt

    from gateway.console.officers import lookups_chart

    now = dt.datetime(2026, 6, 10, 2, 30, tzinfo=dt.UTC)
    hour = "2026-06-10T02"
    ids = ["hrss", "service-centre", "market", "tax", "realestate", "police", "civil-affairs"]
    names = {d: f"区{d}很长很长的部门名称" for d in ids[:-1]}  # the last has no name
    chart = lookups_chart([(d, hour, 1) for d in ids], now, "t", names)
    assert [item["text"] for item in chart.legend] == [names.get(d, d) for d in sorted(ids)]
    for a, b in zip(chart.legend, chart.legend[1:], strict=False):
        if a["y"] == b["y"]:
            text_width = sum(12 if ord(ch) > 0x2E80 else 7 for ch in a["text"])  # at 12 px
            assert b["x"] > a["x"] + 16 + text_width  # no overlap on a row
    assert all(item["y"] + 12 <= chart.height for item in chart.legend)
    assert len({item["y"] for item in chart.legend}) > 1  # long names wrap to a second row


#: Each problem code with the numbers ``verify_log`` reports with it.
_PROBLEM_DETAILS: dict[ProblemCode, dict[str, int | str]] = {
    ProblemCode.ENTRIES_MISSING: {"first": 4, "last": 9},
    ProblemCode.ENTRY_NOT_IN_TREE: {"entry": 12},
    ProblemCode.ENTRY_DIFFERS: {"entry": 17},
    ProblemCode.LOG_SHORTER_THAN_TREE: {"leaves": 40, "entries": 38},
    ProblemCode.CHECKPOINT_SIGNATURE: {"size": 30, "reason": "Signature verification failed"},
    ProblemCode.CHECKPOINT_CLAIMS: {"size": 30},
    ProblemCode.LOG_SHORTER_THAN_CHECKPOINT: {"size": 30, "entries": 20},
    ProblemCode.CHECKPOINT_ROOT: {"size": 30},
}


def test_every_verification_problem_has_a_chinese_sentence() -> None:
    assert set(_PROBLEM_DETAILS) == set(ProblemCode) == set(VERIFY_PROBLEMS)
    for code, details in _PROBLEM_DETAILS.items():
        problem = {"code": str(code), "details": details, "message": "the English sentence"}
        words = verify_problem_words(problem, "zh")
        assert not _LATIN_WORD.search(words), (code, words)
        assert all(str(n) in words for n in details.values() if isinstance(n, int)), words
        assert verify_problem_words(problem, "en") == "the English sentence"


def test_one_missing_entry_and_an_unknown_problem_read_well() -> None:
    one = {"code": "entries-missing", "details": {"first": 5, "last": 5}, "message": ""}
    assert verify_problem_words(one, "zh") == "第 5 条记录缺失（可能被删除）。"
    new = {"code": "something-new", "details": {}, "message": "something new"}
    assert verify_problem_words(new, "zh") == "校验发现其他问题（代码 something-new）。"


def test_the_header_names_the_account_in_words() -> None:
    assert signed_in_words(display_name="李明", role="auditor", department=None, lang="zh") == (
        "当前用户：李明（安全审计员）"
    )
    clerk = signed_in_words(
        display_name="李娜", role="clerk", department="区政务服务中心", lang="en"
    )
    assert clerk == "Signed in as 李娜 (Clerk, 区政务服务中心)"
