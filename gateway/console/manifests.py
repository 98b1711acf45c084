"""The clerk's manifest page under ``/console/manifest``: the one-time notice (一次性告知).

A clerk chooses a service item from the catalogue, names the applicant, the case and the
reason; the gateway decides every material the item requires with the same code the signed
JSON API uses (:meth:`~gateway.lookups.manifests.ManifestService.manifest_for_console`,
audited as ``manifest:…`` with the clerk as operator) and the page says, in words, what the
applicant need not bring (and which department's resource supplies it) and what is still
missing. The same page prints as the one-time notice (一次性告知单): a print stylesheet hides
the navigation and the form and shows the issuing department, the window, the clerk, the date,
the item, the case, the applicant's name and masked ID number, and a signature line for the
applicant and the clerk. The applicant's name is what the clerk types from the application:
the manifest answer itself says only which materials are available, never a holder's name. No
script (the CSP forbids it): printing is the browser's own print command.

Reuses the clerk slice's helpers in :mod:`gateway.console.routes` (sessions, CSRF, role
check, page rendering); its own texts are here, Chinese by default, English on request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency

from gateway.console.routes import (
    AnyRequest,
    _clerk,
    _clerk_form,
    _lang,
    _now,
    _page,
    _text,
    service_items,
)
from gateway.console.services import ConsoleServices
from gateway.core.masks import parse_mask
from gateway.core.policy import DISTRICT_TZ, PolicySet
from gateway.errors import (
    InvalidInput,
    PolicyDenied,
    RateLimited,
    Replayed,
    SourceFailed,
    StoreUnavailable,
)

__all__ = ["MANIFEST_TEXT", "ROUTES"]

_ID_MASK = parse_mask("id-number")
APPLICANT_TYPES = ("uscc", "resident-id")
APPLICANT_NAME_MAX = 100
WINDOW_MAX = 40

MANIFEST_TEXT: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "heading": "一次性告知",
        "intro": (
            "选择办理的事项并填写申请人，网关会列出申请人无需提交的材料"
            "（由网关从共享数据获取）和仍需提交的材料。"
        ),
        "service_item": "办理事项",
        "choose_item": "请选择事项",
        "applicant_type": "申请人类型",
        "type_uscc": "企业（统一社会信用代码）",
        "type_resident-id": "个人（居民身份证号码）",
        "applicant_id": "申请人证件号码",
        "case_number": "办件编号",
        "reason": "告知事由说明",
        "submit": "生成告知单",
        "notice_title": "一次性告知单",
        "date": "日期",
        "case": "办件编号",
        "applicant": "申请人",
        "supplied_heading": "无需提交的材料（由网关共享获取）",
        "supplied_none": "本事项没有可由网关获取的材料。",
        "supplied_from": "由{provider}的“{resource}”提供",
        "missing_heading": "仍需提交的材料",
        "missing_none": "无需再提交其他材料。",
        "material": "材料",
        "source": "来源或原因",
        "print_heading": "打印",
        "print_hint": (
            "请使用浏览器的打印功能（Ctrl+P，或菜单中的“打印”）打印本页；打印时只输出告知单。"
        ),
        "audit_note": "本次查询已记入审计日志，记录编号：",
        "reason_no-shared-source": "没有可共享的数据来源，需申请人提交",
        "reason_not-keyed-by-applicant": (
            "该材料不属于申请人本身（例如法定代表人的证明），需申请人提交"
        ),
        "reason_no-record": "{provider}没有该申请人的记录，需申请人提交",
        "reason_not-granted": "本部门未获授权为此事项使用{provider}的“{resource}”，需申请人提交",
        "error_input": "输入有误，请检查：",
        "error_reason": "格式不正确",
        "error_unknown_item": "该事项不在本区的事项目录中，请从列表中选择办理事项。",
        "error_applicant_name": "请填写申请人姓名或名称（不超过 100 个字）。",
        "applicant_name": "申请人姓名或名称",
        "window": "受理窗口",
        "window_hint": "窗口编号或名称，例如“3号窗口”；不填则打印空白处，由窗口手写。",
        "office": "告知部门",
        "clerk": "窗口工作人员",
        "applicant_id_label": "证件号码",
        "notice_intro": (
            "您申请办理的事项所需材料如下。本告知单所列“仍需提交的材料”之外，"
            "本部门不再要求您提交其他材料。"
        ),
        "sign_applicant": "申请人（签字）",
        "sign_clerk": "窗口工作人员（签字）",
        "sign_date": "日期",
        "error_case-closed": "该办件已办结，不能再为它生成告知单。",
        "error_denied": "该操作未获授权。",
        "error_rate": "请求过于频繁，请稍后再试。",
        "error_store": "网关暂时无法处理，请稍后再试。",
        "error_source": "共享数据来源暂时无法访问，请稍后再试。",
        "field_purpose.item": "办理事项",
        "field_purpose.case": "办件编号",
        "field_purpose.reason": "告知事由说明",
        "field_applicant.type": "申请人类型",
        "field_applicant.id": "申请人证件号码",
        "field_operator": "用户名",
        "nav_verify": "核验电子证照",
        "nav_manifest": "一次性告知",
    },
    "en": {
        "heading": "One-time notice",
        "intro": (
            "Choose the service item and name the applicant: the gateway lists what the "
            "applicant need not bring (the gateway reads it from shared data) and what is "
            "still missing."
        ),
        "service_item": "Service item",
        "choose_item": "Choose a service item",
        "applicant_type": "Applicant type",
        "type_uscc": "Company (unified social credit code)",
        "type_resident-id": "Person (resident ID number)",
        "applicant_id": "Applicant's ID number",
        "case_number": "Case number",
        "reason": "Reason",
        "submit": "Make the notice",
        "notice_title": "One-time notice",
        "date": "Date",
        "case": "Case number",
        "applicant": "Applicant",
        "supplied_heading": "Need not be brought (the gateway supplies it)",
        "supplied_none": "The gateway can supply none of this item's materials.",
        "supplied_from": "from “{resource}” of {provider}",
        "missing_heading": "Still to bring",
        "missing_none": "Nothing else is needed.",
        "material": "Material",
        "source": "Source or reason",
        "print_heading": "Print",
        "print_hint": (
            "Print this page with the browser's print command (Ctrl+P, or Print in its "
            "menu); only the notice is printed."
        ),
        "audit_note": "This look-up is in the audit log, entry ",
        "reason_no-shared-source": "No shared source: the applicant brings it",
        "reason_not-keyed-by-applicant": (
            "Not the applicant's own record (e.g. a legal representative's): "
            "the applicant brings it"
        ),
        "reason_no-record": "{provider} holds no record of this applicant: bring it",
        "reason_not-granted": (
            "This department may not use “{resource}” of {provider} for this item: bring it"
        ),
        "error_input": "Please correct this:",
        "error_reason": "is malformed",
        "error_unknown_item": "This service item is not in the district's catalogue: choose one.",
        "error_applicant_name": "Give the applicant's name (at most 100 characters).",
        "applicant_name": "Applicant's name",
        "window": "Window",
        "window_hint": "The window's number or name (e.g. Window 3); if empty, a blank to fill in.",
        "office": "Issued by",
        "clerk": "Clerk",
        "applicant_id_label": "ID number",
        "notice_intro": (
            "These are the materials the service item needs. Beyond what is listed as still to "
            "bring, this department asks you for nothing else."
        ),
        "sign_applicant": "Applicant (signature)",
        "sign_clerk": "Clerk (signature)",
        "sign_date": "Date",
        "error_case-closed": "The case was declared closed; no notice can be made for it.",
        "error_denied": "This is not permitted.",
        "error_rate": "Too many requests; try again shortly.",
        "error_store": "The gateway cannot do this now; try again shortly.",
        "error_source": "A shared data source cannot be reached now; try again shortly.",
        "field_purpose.item": "Service item",
        "field_purpose.case": "Case number",
        "field_purpose.reason": "Reason",
        "field_applicant.type": "Applicant type",
        "field_applicant.id": "Applicant's ID number",
        "field_operator": "Username",
        "nav_verify": "Verify an e-licence",
        "nav_manifest": "One-time notice",
    },
}

_EMPTY_FORM = {
    "window": "",
    "service_item": "",
    "applicant_name": "",
    "applicant_type": "uscc",
    "applicant_id": "",
    "case_number": "",
    "reason": "",
}


def _render(
    request: AnyRequest,
    console: ConsoleServices,
    session: Any,
    form: Mapping[str, str],
    *,
    notice: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    lang = _lang(request)
    return _page(
        request,
        console,
        "manifest.html",
        status=status,
        session=session,
        m=MANIFEST_TEXT[lang],
        items=service_items(console),
        applicant_types=APPLICANT_TYPES,
        form=form,
        notice=notice,
        error=error,
    )


def _notice(policy: PolicySet, claims: Mapping[str, Any], m: Mapping[str, str]) -> dict[str, Any]:
    """The answer's claims in words: what is supplied (and by whom), what is missing."""

    def names(material: Mapping[str, Any]) -> dict[str, str]:
        rid = material.get("resource")
        resource = policy.resources.get(rid) if rid else None
        provider = material.get("provider") or ""
        department = policy.departments.get(provider)
        return {
            "resource": resource.name if resource else str(rid or ""),
            "provider": department.name if department else provider,
        }

    supplied: list[dict[str, str]] = []
    missing: list[dict[str, str]] = []
    for material in claims["materials"]:
        words = names(material)
        if material["status"] == "available":
            supplied.append({"name": material["name"], "why": m["supplied_from"].format(**words)})
        else:
            key = (
                "reason_not-granted"
                if material["status"] == "not-granted"
                else ("reason_" + str(material.get("reason")))
            )
            why = m.get(key, str(material.get("reason", ""))).format(**words)
            missing.append({"name": material["name"], "why": why})
    applicant = claims["applicant"]
    return {
        "date": dt.datetime.fromtimestamp(_now(), DISTRICT_TZ).strftime("%Y-%m-%d"),
        "item": claims["item"],
        "case": claims["purpose"]["case"],
        "applicant_type": applicant["type"],
        "applicant_id": _ID_MASK.apply(applicant["id"]),
        "supplied": supplied,
        "missing": missing,
        "audit_index": claims["audit"]["index"],
    }


@get("/console/manifest", include_in_schema=False)
async def manifest_form(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The clerk's manifest form."""
    clerk = await _clerk(request, console)
    if isinstance(clerk, Response):
        return clerk
    session, _ = clerk
    return _render(request, console, session, _EMPTY_FORM)


@post("/console/manifest", include_in_schema=False, status_code=200)
async def manifest(request: AnyRequest, console: NamedDependency[ConsoleServices]) -> Response[Any]:
    """Decide the materials (audited, the clerk as operator) and show the printable notice."""
    posted = await _clerk_form(request, console, "/console/manifest")
    if isinstance(posted, Response):
        return posted
    session, department, form = posted
    m = MANIFEST_TEXT[_lang(request)]
    values = {name: _text(form, name) for name in _EMPTY_FORM}
    if values["service_item"] not in console.policy.current.items:
        return _render(request, console, session, values, error=m["error_unknown_item"], status=400)
    if not 0 < len(values["applicant_name"]) <= APPLICANT_NAME_MAX:
        return _render(
            request, console, session, values, error=m["error_applicant_name"], status=400
        )
    try:
        claims = await console.manifests.manifest_for_console(
            department=department,
            operator=session.username,
            purpose_item=values["service_item"],
            purpose_case=values["case_number"],
            reason=values["reason"],
            applicant_type=values["applicant_type"],
            applicant_id=values["applicant_id"],
            now=_now(),
        )
    except InvalidInput as exc:
        field = m.get(f"field_{exc.field}", exc.field)
        error = f"{m['error_input']} {field}（{m['error_reason']}）"
        return _render(request, console, session, values, error=error, status=400)
    except PolicyDenied as exc:
        error = m.get(f"error_{exc.reason_code}", m["error_denied"])
        return _render(request, console, session, values, error=error, status=403)
    except (RateLimited, Replayed):
        return _render(request, console, session, values, error=m["error_rate"], status=429)
    except StoreUnavailable:
        return _render(request, console, session, values, error=m["error_store"], status=503)
    except SourceFailed:
        return _render(request, console, session, values, error=m["error_source"], status=502)
    policy = console.policy.current
    notice = _notice(policy, claims, m)
    office = policy.departments.get(department)
    notice.update(
        office=office.name if office else department,
        window=values["window"][:WINDOW_MAX],
        clerk=session.display_name,
        applicant_name=values["applicant_name"],
    )
    return _render(request, console, session, values, notice=notice)


ROUTES = [manifest_form, manifest]
