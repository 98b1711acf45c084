"""The report's console pages, for security officers and administrators:

- ``GET /console/reports?quarter=2026Q4`` (or ``from=…&until=…``; ``form=public`` for the
  public form): the report as a print-ready 通报 (title, 期间, 发布单位, 摘要, tables, charts;
  ``@media print``), with the checkpoint it rests on;
- ``GET /console/reports/download?quarter=…&format=json|public-json|csv|xlsx``: the full
  JSON, or the public JSON and its tables as CSV (UTF-8 with BOM) or XLSX.

A bad period (``2026Q5``, a reversed or too long range) is a 400 page naming what is wrong;
no signed checkpoint yet, or a log that no longer matches it, a 409 page.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.response import Redirect

from gateway.accounts import Role, Session
from gateway.console.routes import _HEADERS, AnyRequest, _current_session, _now, _page, _text
from gateway.console.services import ConsoleServices
from gateway.core.policy import DISTRICT_TZ
from gateway.errors import Error, InvalidInput
from gateway.reporting.figures import Period
from gateway.reporting.render import COUNT_WORDS, charts, csv_bytes, tables, xlsx_bytes
from gateway.reporting.report import (
    DEFAULT_THRESHOLD,
    parse_quarter,
    parse_range,
    public_view,
    report_dict,
)

__all__ = ["ROUTES"]

_ROLES = (Role.AUDITOR, Role.ADMIN)
_FORMATS = {
    "json": ("application/json", "json"),
    "public-json": ("application/json", "json"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
}
_FIELD_WORDS = {
    "quarter": "季度请按“年份Q季度”填写，如 2026Q4（季度为 1 至 4）",
    "from": "开始日期请按 YYYY-MM-DD 填写",
    "until": "结束日期请按 YYYY-MM-DD 填写，不早于开始日期，且期间不超过 366 天",
    "form": "版本只能是 full（完整版）或 public（公开版）",
    "format": "下载格式只能是完整版、公开版、逗号分隔表格或电子表格之一",
}


def _current_quarter(now: float) -> str:
    today = dt.datetime.fromtimestamp(now, DISTRICT_TZ).date()
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


def _period(request: AnyRequest) -> tuple[Period, dict[str, str]]:
    params = request.query_params
    first, last = _text(params, "from"), _text(params, "until")
    if first or last:
        return parse_range(first, last), {"from": first, "until": last}
    quarter = _text(params, "quarter") or _current_quarter(_now())
    return parse_quarter(quarter), {"quarter": quarter}


async def _reader(request: AnyRequest, console: ConsoleServices) -> Session | Response[Any]:
    session = await _current_session(request, console)
    if session is None:
        return Redirect(path="/console/login", status_code=303)
    if session.role not in _ROLES:
        return _page(request, console, "error.html", status=403, session=session,
                     message="报告仅供安全审计员和管理员查看。", back="/console/login")  # fmt: skip
    return session


def _refused(
    request: AnyRequest, console: ConsoleServices, session: Session, exc: Error
) -> Response[Any]:
    if isinstance(exc, InvalidInput):
        message = _FIELD_WORDS.get(exc.field, f"{exc.field}: {exc.reason}")
        return _page(request, console, "error.html", status=400, session=session,
                     message=message, back="/console/reports")  # fmt: skip
    return _page(request, console, "error.html", status=exc.status, session=session,
                 message="暂时无法生成报告：审计日志尚无已签名的检查点，或存储的记录已与检查点"
                         "不一致。请稍后再试，或由安全审计员核验审计日志。",
                 back="/console/reports")  # fmt: skip


async def _document(
    request: AnyRequest, console: ConsoleServices
) -> tuple[dict[str, Any], dict[str, str]]:
    period, query = _period(request)
    form = _text(request.query_params, "form") or "full"
    if form not in ("full", "public"):
        raise InvalidInput("form", "must be full or public")
    now = dt.datetime.fromtimestamp(_now(), dt.UTC)
    made = await asyncio.to_thread(console.reports.report, period, now=now)
    doc = public_view(made, threshold=DEFAULT_THRESHOLD) if form == "public" else report_dict(made)
    return doc, {**query, "form": form}


@get("/console/reports", include_in_schema=False)
async def report_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The report as a 通报, for screen and print."""
    session = await _reader(request, console)
    if isinstance(session, Response):
        return session
    try:
        doc, query = await _document(request, console)
    except Error as exc:
        return _refused(request, console, session, exc)
    totals = doc["figures"]["totals"]
    period = doc["period"]
    last_day = dt.date.fromisoformat(period["end"]) - dt.timedelta(days=1)
    links = {
        fmt: "/console/reports/download?" + urlencode({**query, "format": fmt}) for fmt in _FORMATS
    }
    other = "public" if query["form"] == "full" else "full"
    return _page(
        request,
        console,
        "report.html",
        session=session,
        doc=doc,
        query=query,
        period_words=f"{period['start']} 至 {last_day.isoformat()}",
        totals=totals,
        words=COUNT_WORDS,
        tables=tables(doc),
        charts=charts(doc),
        links=links,
        other_form_url="/console/reports?" + urlencode({**query, "form": other}),
        other_form=other,
        signed_at=dt.datetime.fromisoformat(doc["checkpoint"]["signed_at"])
        .astimezone(DISTRICT_TZ)
        .strftime("%Y-%m-%d %H:%M:%S"),
    )


@get("/console/reports/download", include_in_schema=False)
async def report_download(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The report as a file: full JSON, public JSON, or the public tables as CSV / XLSX."""
    session = await _reader(request, console)
    if isinstance(session, Response):
        return session
    fmt = _text(request.query_params, "format") or "public-json"
    try:
        if fmt not in _FORMATS:
            raise InvalidInput("format", "must be json, public-json, csv or xlsx")
        period, _ = _period(request)
        now = dt.datetime.fromtimestamp(_now(), dt.UTC)
        made = await asyncio.to_thread(console.reports.report, period, now=now)
    except Error as exc:
        return _refused(request, console, session, exc)
    public = public_view(made, threshold=DEFAULT_THRESHOLD)
    body: bytes
    if fmt == "json":
        body = msgspec.json.format(msgspec.json.encode(report_dict(made)))
    elif fmt == "public-json":
        body = msgspec.json.format(msgspec.json.encode(public))
    elif fmt == "csv":
        body = csv_bytes(public)
    else:
        body = xlsx_bytes(public)
    media, ext = _FORMATS[fmt]
    suffix = "" if fmt == "json" else "-public"
    name = f"once-only-report-{period.label.replace('..', '_')}{suffix}.{ext}"
    headers = {**_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    return Response(content=body, media_type=media, headers=headers)


ROUTES = [report_page, report_download]
