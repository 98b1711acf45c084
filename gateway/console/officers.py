"""The security officers' console pages under ``/console/audit`` (role ``auditor`` only).

- ``GET /console/audit``: search the log (the officers' search service, cursor paging), the
  integrity status (latest signed checkpoint, last "verify now" run), the alerts of the last
  24 hours, and two charts drawn on the server as inline SVG (no script);
- ``GET /console/audit/entries/{index}``: one entry, its leaf bytes, and its inclusion proof
  in the latest signed checkpoint, verified here with :func:`gateway.core.merkle.verify_inclusion`;
- ``POST /console/audit/verify``: run :func:`gateway.audit.verify.verify_log` in a thread; the
  last result is kept **in this process's memory** (lost on restart, per worker process);
- ``POST /console/audit/export``: stream CSV or JSON Lines with the officers' export (which
  audits the export first), same filters as the search.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Stream

from gateway.accounts import Role, Session
from gateway.console.officers_text import (
    ALERT_KINDS,
    DAY_NAMES,
    ENTRY_FIELDS,
    EVENT_NAMES,
    VERDICTS,
    reason_words,
    verify_problem_words,
)
from gateway.console.routes import (
    _HEADERS,
    AnyRequest,
    _csrf_refused,
    _current_session,
    _lang,
    _now,
    _page,
    _text,
)
from gateway.console.services import ConsoleServices
from gateway.console.text import TEXT
from gateway.core.policy import DISTRICT_TZ
from gateway.core.protocol import AuditEvent
from gateway.errors import Error, InvalidInput

__all__ = ["OFFICER_TEXT", "ROUTES"]

PAGE_SIZE = 50
FILTERS = ("from", "until", "department", "operator", "resource", "item", "case", "decision",
           "event", "subject")  # fmt: skip
#: The events the form's select offers, in the order of the protocol.
EVENTS = tuple(str(e) for e in AuditEvent)

OFFICER_TEXT: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "audit_heading": "审计日志",
        "role_refused": "只有安全审计员（auditor）可以使用此页面。",
        "search_heading": "检索审计记录",
        "from": "开始时间（北京时间）",
        "until": "结束时间（北京时间）",
        "department": "部门",
        "operator": "经办人",
        "resource": "数据资源",
        "item": "事项编码",
        "case": "办件编号",
        "decision": "决定",
        "any": "不限",
        "allowed": "允许",
        "refused": "拒绝",
        "subject": "数据主体（类型:号码，如 uscc:91…）",
        "search_button": "检索",
        "results": "检索结果",
        "no_results": "没有符合条件的记录。",
        "index": "序号",
        "at": "时间（北京时间）",
        "outcome": "结果",
        "all_events": "全部事件",
        "refused_because": "拒绝",
        "verdict": "核验结论",
        "code": "代码",
        "event": "事件",
        "open": "查看",
        "next_page": "下一页",
        "first_page": "回到第一页",
        "cursor": "翻页位置",
        "bad_filter": "检索条件有误",
        "export_heading": "导出",
        "export_csv": "导出 CSV",
        "export_jsonl": "导出 JSON Lines",
        "export_note": "按当前检索条件导出全部记录；导出本身会记入审计日志。",
        "integrity_heading": "完整性状态",
        "checkpoint": "最新签名检查点",
        "size": "条目数",
        "root": "根哈希",
        "checkpoint_at": "签署时间",
        "no_checkpoint": "尚无签名检查点。",
        "verify_now": "立即校验",
        "last_verify": "上次校验",
        "never_verified": "本进程启动以来尚未校验。",
        "verify_note": "校验结果保存在本网关进程的内存中，重启后清空。",
        "verify_ok": "通过：每条记录与写入时的叶子一致，每个检查点都相符。",
        "verify_bad": "发现问题",
        "first_bad": "第一条不一致的记录",
        "entries": "记录数",
        "checkpoints": "检查点数",
        "alerts_heading": "告警（最近 24 小时）",
        "no_alerts": "最近 24 小时没有告警。",
        "kind": "类型",
        "window": "时段",
        "why": "原因",
        "alerts_failed": "告警暂时无法计算",
        "charts_heading": "图表（最近 24 小时）",
        "chart_lookups": "各部门每小时查询次数",
        "chart_refusals": "每小时拒绝次数",
        "chart_hour_note": "横轴为北京时间的小时。",
        "no_data": "无数据",
        "entry_heading": "审计记录",
        "field": "字段",
        "value": "值",
        "leaf": "叶子字节（按 RFC 9162 哈希）",
        "leaf_hash": "叶子哈希",
        "proof_heading": "包含性证明",
        "proof_verified": "已验证",
        "proof_verified_text": "该记录包含在最新签名检查点中（由网关签名核验）。",
        "proof_failed": "验证未通过",
        "proof_pending": (
            "该记录尚未进入签名检查点：网关每 {seconds} 秒检查一次，"
            "约 {seconds} 秒内签署的下一个检查点将包含它，请稍后刷新。"
        ),
        "proof_pending_none": (
            "尚无签名检查点：网关每 {seconds} 秒检查一次，第一个检查点将在约 {seconds} 秒内签署，"
            "请稍后刷新。"
        ),
        "proof_hashes": "证明路径",
        "no_entry": "没有这条审计记录。",
        "back_to_search": "返回检索",
        "signature_bad": "检查点的签名无法用网关公钥核验。",
        "root_mismatch": "证明算出的根哈希与签名检查点的根哈希不一致。",
    },
    "en": {
        "audit_heading": "Audit log",
        "role_refused": "Only security officers (auditors) may use this page.",
        "search_heading": "Search the audit log",
        "from": "From (Beijing time)",
        "until": "Until (Beijing time)",
        "department": "Department",
        "operator": "Operator",
        "resource": "Resource",
        "item": "Service item",
        "case": "Case number",
        "decision": "Decision",
        "any": "Any",
        "allowed": "Allowed",
        "refused": "Refused",
        "subject": "Subject (type:id, e.g. uscc:91…)",
        "search_button": "Search",
        "results": "Results",
        "no_results": "No entry matches.",
        "index": "No.",
        "at": "Time (Beijing)",
        "outcome": "Outcome",
        "all_events": "All events",
        "refused_because": "Refused",
        "verdict": "Verdict",
        "code": "code",
        "event": "Event",
        "open": "Open",
        "next_page": "Next page",
        "first_page": "Back to the first page",
        "cursor": "Page position",
        "bad_filter": "Please correct the search",
        "export_heading": "Export",
        "export_csv": "Export CSV",
        "export_jsonl": "Export JSON Lines",
        "export_note": "Exports every entry matching the search; the export itself is audited.",
        "integrity_heading": "Integrity",
        "checkpoint": "Latest signed checkpoint",
        "size": "Entries",
        "root": "Root hash",
        "checkpoint_at": "Signed at",
        "no_checkpoint": "No signed checkpoint yet.",
        "verify_now": "Verify now",
        "last_verify": "Last verification",
        "never_verified": "Not verified since this process started.",
        "verify_note": "The result is kept in this gateway process's memory until it restarts.",
        "verify_ok": "OK: every entry is the leaf written with it; every checkpoint matches.",
        "verify_bad": "Problems found",
        "first_bad": "First entry that differs",
        "entries": "Entries",
        "checkpoints": "Checkpoints",
        "alerts_heading": "Alerts (last 24 hours)",
        "no_alerts": "No alerts in the last 24 hours.",
        "kind": "Kind",
        "window": "Window",
        "why": "Why",
        "alerts_failed": "The alerts cannot be computed now",
        "charts_heading": "Charts (last 24 hours)",
        "chart_lookups": "Lookups per department per hour",
        "chart_refusals": "Refusals per hour",
        "chart_hour_note": "Hours are Beijing time.",
        "no_data": "No data",
        "entry_heading": "Audit entry",
        "field": "Field",
        "value": "Value",
        "leaf": "Leaf bytes (hashed per RFC 9162)",
        "leaf_hash": "Leaf hash",
        "proof_heading": "Inclusion proof",
        "proof_verified": "Verified",
        "proof_verified_text": (
            "This entry is in the latest checkpoint (its signature checked with the gateway's key)."
        ),
        "proof_failed": "Not verified",
        "proof_pending": (
            "This entry is not in a signed checkpoint yet: the gateway looks every {seconds} s "
            "and the next checkpoint (within about {seconds} s) covers it; reload soon."
        ),
        "proof_pending_none": (
            "No signed checkpoint yet: the gateway looks every {seconds} s and signs the first "
            "within about {seconds} s; reload soon."
        ),
        "proof_hashes": "Proof path",
        "no_entry": "There is no such audit entry.",
        "back_to_search": "Back to the search",
        "signature_bad": "The checkpoint's signature does not check with the gateway's key.",
        "root_mismatch": "The root computed from the proof differs from the checkpoint's root.",
    },
}

#: The last "verify now" result, in this process's memory.


def _o(request: AnyRequest) -> Mapping[str, str]:
    return OFFICER_TEXT[_lang(request)]


async def _auditor(request: AnyRequest, console: ConsoleServices) -> Session | Response[Any]:
    session = await _current_session(request, console)
    if session is None:
        return Redirect(path="/console/login", status_code=303)
    if session.role is not Role.AUDITOR:
        return _page(request, console, "error.html", status=403, session=session,
            message=_o(request)["role_refused"], back="/console/login",
        )  # fmt: skip
    return session


# --- filters ------------------------------------------------------------------------------------


def _time_param(value: str) -> str:
    """A ``datetime-local`` value (no offset) is Beijing time; RFC 3339 passes through."""
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value  # the search service says what is wrong
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=DISTRICT_TZ)
    return parsed.isoformat()


def _filters(source: Mapping[str, Any]) -> dict[str, str]:
    values = {name: _text(source, name) for name in FILTERS}
    if values["decision"] not in ("", "allowed", "refused"):
        values["decision"] = ""
    return values


def _service_params(values: Mapping[str, str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {k: (v or None) for k, v in values.items()}
    for name in ("from", "until"):
        params[name] = _time_param(values[name]) or None
    return params


#: Why a filter is refused, in Chinese, by the field the search names (English pages show
#: the search's own reason). ``until`` is also refused when it is not after ``from``.
_FILTER_PROBLEMS = {
    "from": "请填写有效的时间，如 2026-06-10 08:00（北京时间）",
    "until": "请填写有效的时间，如 2026-06-10 18:00（北京时间），且须晚于开始时间",
    "subject": "请按“类型:号码”填写，如 uscc:91…（统一社会信用代码）",
    "decision": "请选择“允许”或“拒绝”",
    "event": "通配符 * 只能放在末尾（表示前缀）",
    "cursor": "翻页位置无效，请回到第一页",
}
_FILTER_TEXT = "只能填写 1 至 64 个字母、数字或 _ . : - 字符"


def _error_words(exc: InvalidInput, o: Mapping[str, str], lang: str) -> str:
    field = o.get(exc.field, exc.field)
    if lang != "zh":
        return f"{o['bad_filter']}: {field} — {exc.reason}"
    return f"{o['bad_filter']}：{field}——{_FILTER_PROBLEMS.get(exc.field, _FILTER_TEXT)}。"


# --- entries and alerts in words ----------------------------------------------------------------


def local_time(text: str | None) -> str:
    """An RFC 3339 instant as Beijing time to the second (what the filters take)."""
    if not text:
        return ""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return f"{at.astimezone(DISTRICT_TZ):%Y-%m-%d %H:%M:%S}"


def _event_words(event: str, lang: str) -> str:
    return EVENT_NAMES[lang].get(event, ENTRY_FIELDS[lang]["event"])


def outcome(entry: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """An entry's outcome as people read it: a verification's verdict, a refusal's reason,
    else allowed. ``ok`` says whether it went as asked (for the page's colour)."""
    o = OFFICER_TEXT[lang]
    code = str(entry.get("reason_code") or "")
    if entry.get("event") == AuditEvent.VERIFICATION_PERFORMED and code in VERDICTS[lang]:
        return {"words": VERDICTS[lang][code], "ok": code == "valid", "code": None}
    if entry.get("decision") == "refused":
        words, shown = reason_words(code, lang)
        return {
            "words": f"{o['refused_because']}：{words}" if lang == "zh" and words
            else f"{o['refused_because']}: {words}" if words else o["refused"],
            "ok": False,
            "code": shown,
        }  # fmt: skip
    return {"words": o["allowed"], "ok": True, "code": None}


def entry_row(entry: Mapping[str, Any], lang: str, names: Mapping[str, str]) -> dict[str, Any]:
    """One row of the search results."""
    department = entry.get("department")
    return {
        **entry,
        "at_local": local_time(entry.get("at")),
        "event_words": _event_words(str(entry.get("event")), lang),
        "outcome": outcome(entry, lang),
        "department_name": names.get(department or "", department or ""),
    }


def entry_fields(entry: Mapping[str, Any], lang: str) -> list[dict[str, Any]]:
    """The entry page's rows: each field's name in words, its value as people read it (a
    list as a list, a time in Beijing time, an event, decision or reason in words with its
    code beside it)."""
    words = ENTRY_FIELDS[lang]
    o = OFFICER_TEXT[lang]
    rows = []
    for name, value in entry.items():
        if name == "proof":
            continue
        row: dict[str, Any] = {
            "name": name,
            "label": words.get(name, name),
            "empty": value is None,
            "text": None,  # words
            "code": None,  # the code beside the words
            "items": None,  # a list, shown as a list
            "value": None,  # a value shown as it is (an id, a hash, a number)
        }
        if value is None:
            pass
        elif name == "at":
            row["text"] = local_time(str(value))
        elif name == "event":
            row.update(text=_event_words(str(value), lang), code=str(value))
        elif name == "decision":
            row["text"] = o.get(str(value), str(value))
        elif name == "reason_code":
            shown = outcome(entry, lang)
            row.update(text=shown["words"], code=str(value))
        elif isinstance(value, list):
            row["items"] = [str(v) for v in value]
        else:
            row["value"] = str(value)
        rows.append(row)
    return rows


def _when_words(alert: Mapping[str, Any], lang: str) -> str:
    start, end = local_time(alert["window"]["from"]), local_time(alert["window"]["until"])
    return start if start == end else f"{start} – {end}"


def alert_why(alert: Mapping[str, Any], lang: str, names: Mapping[str, str]) -> str:
    """An alert's reason in the page's language, from its numbers (English: the rule's own
    sentence)."""
    if lang != "zh":
        return str(alert["why"])
    n: Mapping[str, Any] = alert["numbers"]
    department = alert.get("department")
    who = names.get(department or "", department) if department else "无法识别的发送方"
    kind = alert["kind"]
    when = _when_words(alert, lang)
    if kind == "subject-rate":
        usual = n.get("usual_per_hour")
        base = f"{who}在一小时内（{when}）查询了 {n['distinct_subjects']} 个不同的数据主体"
        if usual is None:
            return f"{base}，无以往速率可比；告警下限为 {n['floor']} 个。"
        return f"{base}，是其通常每小时 {usual:g} 个的 {n['distinct_subjects'] / usual:.1f} 倍（超过 {n['factor']:g} 倍即告警）。"  # noqa: E501
    if kind == "grant-quota":
        parts = []
        if n.get("refused_over_quota"):
            parts.append(f"{n['refused_over_quota']} 次查询因当日上限已满被拒绝")
        limit = n.get("max_subjects_per_day")
        if limit is not None and n.get("distinct_subjects_read", 0) > limit:
            parts.append(f"已读取 {n['distinct_subjects_read']} 个不同主体，超过上限")
        tail = f"；授权每日上限为 {limit} 个主体" if limit is not None else ""
        return (
            f"{who}于 {n['day']}（北京时间）查询数据资源 {n['resource']}："
            + "；".join(parts)
            + tail
            + "。"
        )
    if kind == "outside-grant-hours":
        return f"{who}于 {when} 在授权办公时间以外尝试查询 {n['refused']} 次，均被拒绝。"
    if kind == "outside-working-hours":
        days = "、".join(DAY_NAMES["zh"].get(d, d) for d in n.get("working_days", []))
        hours = n.get("working_time", "")
        return (
            f"{who}于 {when} 在工作时间（{days} {hours}，北京时间）以外读取数据 {n['reads']} 次。"
        )
    if kind == "closed-case":
        return f"{who}在已声明办结的办件 {n['case']} 下又查询了 {n['refused']} 次（{when}）。"
    if kind in ("token-failures", "login-failures"):
        minutes = int(n["window_seconds"]) // 60
        reasons = "，".join(
            f"{reason_words(code, lang)[0] or code} {count} 次"
            for code, count in sorted(n["reasons"].items(), key=lambda kv: -kv[1])
        )
        if kind == "token-failures":
            subject = f"{who}的 {n['failures']} 个请求令牌未通过校验"
        else:
            account = n.get("username")
            target = f"账户 {account}" if account else "不存在的用户名"
            subject = f"工作台登录{target}失败 {n['failures']} 次"
        return (
            f"{subject}（{when}，{minutes} 分钟内最多 {n['most_within_window']} 次）：{reasons}。"
        )
    if kind == "account-locked":
        return f"工作台账户 {n.get('username')} 因连续登录失败次数过多于 {when} 被锁定。"
    if kind in ("key-expiring", "seal-expiring"):
        return _expiry_words(n, who)
    return ALERT_KINDS[lang].get(kind, kind)


def _expiry_words(n: Mapping[str, Any], who: str) -> str:
    """A key's or seal's coming expiry, in Chinese."""
    thing = {
        "gateway-key": f"网关签名密钥 {n['id']}",
        "department-key": f"{who}的密钥 {n['id']}",
        "seal": f"{who}的电子印章 {n['id']}",
    }.get(str(n.get("what")), str(n.get("id")))
    at = local_time(str(n["expires_at"]))
    days = float(n.get("days_left", 0))
    when = (
        f"将于 {at}（北京时间）到期，还有 {days:.0f} 天"
        if days >= 0
        else f"已于 {at}（北京时间）到期，仍在使用"
    )
    then = (
        "请轮换网关签名密钥"
        if n.get("what") == "gateway-key"
        else "请登记接替的密钥或印章并停用旧的"
    )
    return f"{thing}{when}：{then}。"


def alert_row(alert: Mapping[str, Any], lang: str, names: Mapping[str, str]) -> dict[str, Any]:
    """One row of the alerts table."""
    department = alert.get("department")
    return {
        "kind": ALERT_KINDS[lang].get(alert["kind"], alert["kind"]),
        "code": alert["kind"],
        "department": names.get(department or "", department or ""),
        "window": _when_words(alert, lang),
        "why": alert_why(alert, lang, names),
    }


# --- charts -------------------------------------------------------------------------------------


_COLOURS = ("#0b4f8a", "#c0392b", "#1e8449", "#b9770e", "#6c3483", "#117a65", "#5d6d7e")


@dataclass(frozen=True)
class Chart:
    """An inline SVG chart, drawn from numbers only (everything else is escaped text)."""

    title: str
    width: int
    height: int
    bars: Sequence[dict[str, Any]]
    points: str
    dots: Sequence[dict[str, Any]]
    labels: Sequence[dict[str, Any]]
    legend: Sequence[dict[str, Any]]
    maximum: int


def _hours(now: dt.datetime) -> list[dt.datetime]:
    top = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return [top - dt.timedelta(hours=23 - i) for i in range(24)]


_W, _H, _LEFT, _BOTTOM, _TOP = 720, 240, 40, 30, 10


def _x(i: int) -> float:
    return _LEFT + i * (_W - _LEFT - 10) / 24


def _axis_labels(hours: Sequence[dt.datetime]) -> list[dict[str, Any]]:
    return [
        {"x": round(_x(i) + 2, 1), "y": _H - 10, "text": f"{h.astimezone(DISTRICT_TZ):%H}"}
        for i, h in enumerate(hours)
        if i % 3 == 0
    ]


_LEGEND_TOP, _LEGEND_ROW = _H + 5, 18


def _legend(items: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Legend items laid out in rows across the chart's width, each as wide as its text
    (a CJK character takes about the font size, 12, a Latin one about half)."""
    out: list[dict[str, Any]] = []
    x, y = _LEFT, _LEGEND_TOP
    for fill, text in items:
        width = 16 + sum(12 if ord(ch) > 0x2E80 else 7 for ch in text) + 18
        if x > _LEFT and x + width > _W:
            x, y = _LEFT, y + _LEGEND_ROW
        out.append({"x": x, "y": y, "fill": fill, "text": text})
        x += width
    return out


def lookups_chart(
    counts: Sequence[tuple[str, str, int]],
    now: dt.datetime,
    title: str,
    names: Mapping[str, str] | None = None,
) -> Chart:
    """Stacked bars: lookups per department per hour (``names``: department names for the
    legend and the bars' titles; an id without one is shown as it is)."""
    named = names or {}
    hours = _hours(now)
    keys = {f"{h:%Y-%m-%dT%H}": i for i, h in enumerate(hours)}
    departments = sorted({d for d, _, _ in counts})
    colour = {d: _COLOURS[i % len(_COLOURS)] for i, d in enumerate(departments)}
    per_hour = [0] * 24
    cells: list[tuple[int, str, int]] = []
    for department, hour, n in sorted(counts):
        if hour in keys:
            cells.append((keys[hour], department, n))
            per_hour[keys[hour]] += n
    maximum = max(per_hour, default=0) or 1
    scale = (_H - _BOTTOM - _TOP) / maximum
    stacked = [0] * 24
    bars = []
    width = (_W - _LEFT - 10) / 24 - 4
    for i, department, n in cells:
        height = n * scale
        y = _H - _BOTTOM - stacked[i] * scale - height
        stacked[i] += n
        local = hours[i].astimezone(DISTRICT_TZ)
        bars.append(
            {
                "x": round(_x(i) + 2, 1), "y": round(y, 1), "w": round(width, 1),
                "h": round(height, 1), "fill": colour[department],
                "title": f"{named.get(department, department)} {local:%m-%d %H}:00 — {n}",
            }
        )  # fmt: skip
    legend = _legend([(colour[d], named.get(d, d)) for d in departments])
    rows = 1 + max((item["y"] - _LEGEND_TOP for item in legend), default=0) // _LEGEND_ROW
    height = _H + 10 + rows * _LEGEND_ROW
    return Chart(title, _W, height, bars, "", [], _axis_labels(hours), legend, maximum)


def refusals_chart(counts: Sequence[tuple[str, int]], now: dt.datetime, title: str) -> Chart:
    """A line: refusals per hour."""
    hours = _hours(now)
    keys = {f"{h:%Y-%m-%dT%H}": i for i, h in enumerate(hours)}
    per_hour = [0] * 24
    for hour, n in counts:
        if hour in keys:
            per_hour[keys[hour]] += n
    maximum = max(per_hour) or 1
    scale = (_H - _BOTTOM - _TOP) / maximum
    step = (_W - _LEFT - 10) / 24
    dots = [
        {
            "x": round(_x(i) + step / 2, 1),
            "y": round(_H - _BOTTOM - n * scale, 1),
            "title": f"{hours[i].astimezone(DISTRICT_TZ):%m-%d %H}:00 — {n}",
        }
        for i, n in enumerate(per_hour)
    ]
    points = " ".join(f"{d['x']},{d['y']}" for d in dots)
    return Chart(title, _W, _H, [], points, dots, _axis_labels(hours), [], maximum)


# --- pages --------------------------------------------------------------------------------------


def _department_names(console: ConsoleServices) -> dict[str, str]:
    return {d.id: d.name for d in console.policy.current.departments.values()}


def _checkpoint_view(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint's claims with its signing time in Beijing time."""
    if claims is None:
        return None
    return {**claims, "at": local_time(str(claims.get("at", "")))}


@get("/console/audit", include_in_schema=False)
async def audit_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Search, integrity, alerts and charts."""
    auditor = await _auditor(request, console)
    if isinstance(auditor, Response):
        return auditor
    o = _o(request)
    lang = _lang(request)
    names = _department_names(console)
    values = _filters(request.query_params)
    cursor = _text(request.query_params, "cursor")
    error = None
    results: dict[str, Any] = {"entries": [], "next": None, "tree_size": 0}
    try:
        results = await console.officers.search(
            {**_service_params(values), "cursor": cursor or None}, limit=PAGE_SIZE, order="desc"
        )
    except InvalidInput as exc:
        error = _error_words(exc, o, lang)
    query = {k: v for k, v in values.items() if v}
    next_url = (
        "/console/audit?" + urlencode({**query, "cursor": results["next"]})
        if results["next"]
        else None
    )
    first_url = "/console/audit?" + urlencode(query) if cursor else None

    checkpoint, checkpoint_error = await asyncio.to_thread(console.integrity.checkpoint_claims)
    now = dt.datetime.fromtimestamp(_now(), dt.UTC)
    alerts: list[dict[str, Any]] = []
    alerts_error = None
    try:
        found = (await console.officers.alerts(since=None, until=None, now=_now()))["alerts"]
        alerts = [alert_row(a, lang, names) for a in found]
    except Error as exc:
        alerts_error = f"{o['alerts_failed']}: {exc}"
    lookups, refusals = await console.integrity.hourly_counts(now - dt.timedelta(hours=24))
    return _page(
        request,
        console,
        "officers_audit.html",
        session=auditor,
        o=o,
        form=values,
        error=error,
        results=results,
        rows=[entry_row(e, lang, names) for e in results["entries"]],
        events=[(e, EVENT_NAMES[lang][e]) for e in EVENTS],
        next_url=next_url,
        first_url=first_url,
        checkpoint=_checkpoint_view(checkpoint),
        checkpoint_error=None if checkpoint_error is None else o[checkpoint_error],
        last_verify=console.integrity.last_verification,
        last_verify_problems=[
            verify_problem_words(problem, lang)
            for problem in (console.integrity.last_verification or {}).get("problems", [])
        ],
        last_verify_at=local_time((console.integrity.last_verification or {}).get("at")),
        alerts=alerts,
        alerts_error=alerts_error,
        charts=[
            lookups_chart(lookups, now, o["chart_lookups"], names),
            refusals_chart(refusals, now, o["chart_refusals"]),
        ],
    )


@get("/console/audit/entries/{index:int}", include_in_schema=False)
async def audit_entry(
    request: AnyRequest, console: NamedDependency[ConsoleServices], index: FromPath[int]
) -> Response[Any]:
    """One entry with its inclusion proof checked on the server."""
    auditor = await _auditor(request, console)
    if isinstance(auditor, Response):
        return auditor
    o = _o(request)
    found = await console.integrity.entry_with_proof(index)
    if found is None:
        return _page(
            request, console, "error.html", status=404, session=auditor,
            message=o["no_entry"], back="/console/audit",
        )  # fmt: skip
    proof = found["proof"]
    seconds = f"{found['checkpoint_interval']:g}"
    pending = o["proof_pending" if proof["checkpoint"] else "proof_pending_none"]
    return _page(
        request,
        console,
        "officers_entry.html",
        session=auditor,
        o=o,
        index=index,
        found=found,
        fields=entry_fields(found["entry"], _lang(request)),
        checkpoint=_checkpoint_view(proof["checkpoint"]),
        pending=pending.format(seconds=seconds),
        problem=o[proof["problem"]] if proof.get("problem") else None,
    )


@post("/console/audit/verify", include_in_schema=False, status_code=200)
async def audit_verify(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Recompute the tree now (in a thread) and keep the result in memory."""
    auditor = await _auditor(request, console)
    if isinstance(auditor, Response):
        return auditor
    form = await request.form()
    if not console.accounts.csrf_ok(auditor, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, auditor, "/console/audit")
    await console.integrity.verify(by=auditor.username, now=_now())
    return Redirect(path="/console/audit#integrity", status_code=303)


@post("/console/audit/export", include_in_schema=False, status_code=200)
async def audit_export(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The officers' export (audited before its first byte) under the console session."""
    auditor = await _auditor(request, console)
    if isinstance(auditor, Response):
        return auditor
    form = await request.form()
    if not console.accounts.csrf_ok(auditor, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, auditor, "/console/audit")
    fmt = _text(form, "format")
    try:
        export = await console.officers.export(_service_params(_filters(form)), fmt=fmt, now=_now())
    except InvalidInput as exc:
        return _page(request, console, "error.html", status=400, session=auditor,
            message=_error_words(exc, _o(request), _lang(request)), back="/console/audit",
        )  # fmt: skip
    headers = {
        **_HEADERS,
        "Content-Disposition": f'attachment; filename="{export.filename}"',
        "X-Audit-Index": str(export.audit_index),
    }
    return Stream(export.chunks, media_type=export.media_type, headers=headers)


ROUTES = [audit_page, audit_entry, audit_verify, audit_export]

# The base layout's texts stay the shared ones; this module only adds its own.
assert set(OFFICER_TEXT) == set(TEXT)
