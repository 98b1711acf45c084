"""The console's interface text: Chinese by default, English on request.

Every message a person reads is here, in words (never a bare code): verdicts, checks, errors.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from gateway.core.policy import DISTRICT_TZ

__all__ = [
    "CHECKS",
    "LANGUAGES",
    "OUTCOMES",
    "SEAL_TYPES",
    "SEAL_TYPE_OTHER",
    "STATUSES",
    "TEXT",
    "VERDICTS",
    "check_detail",
    "district_time",
    "language",
]

LANGUAGES = ("zh", "en")

TEXT: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "html_lang": "zh-CN",
        "title": "一网通办数据共享网关 · 工作台",
        "skip": "跳到主要内容",
        "other_language": "English",
        "other_language_code": "en",
        "login_heading": "登录",
        "username": "用户名",
        "password": "密码",
        "login_button": "登录",
        "login_refused": "用户名或密码错误，或该账户暂时无法登录。",
        "logout_button": "退出登录",
        "nav_verify": "核验证照",
        "nav_manifest": "一次性告知",
        "nav_audit": "审计日志",
        "nav_reports": "季度通报",
        "nav_admin": "管理",
        "verify_heading": "核验电子证照",
        "verify_intro": "请选择一种方式：输入证照编号、粘贴二维码内容，或上传盖章的证照文件。",
        "licence_id": "证照编号",
        "qr": "二维码内容",
        "licence_file": "盖章的证照文件",
        "purpose": "用证事由",
        "service_item": "办理事项",
        "case_number": "办件编号",
        "reason": "用证事由说明",
        "verify_button": "核验",
        "result_heading": "核验结果",
        "verdict": "结论",
        "checks": "各项检查",
        "check": "检查项",
        "outcome": "结果",
        "detail": "说明",
        "licence": "证照",
        "receipt": "签名回执",
        "receipt_download": "下载签名回执",
        "receipt_note": "回执由网关签名，可用网关公布的公钥（JWKS）核验。审计记录编号：",
        "give_one": "请只选择一种方式：证照编号、二维码内容或证照文件，三者选一。",
        "bad_input": "输入有误",
        "bad_file": "证照文件无法读取（须为文本格式的盖章文件，不超过 64 KB）。",
        "forbidden_heading": "无法完成操作",
        "csrf_refused": "表单已失效或来源无法确认，操作未执行。请返回页面后重新提交。",
        "role_refused": "只有窗口工作人员可以使用此页面。",
        "back": "返回",
        "not_found": "页面不存在。",
        "service_item_choose": "请选择办理事项",
        "unknown_item": "事项编码不在本区的事项目录中，请从列表中选择办理事项。",
        "missing_purpose": "请填写用证事由：办理事项、办件编号和用证事由说明都不能为空。",
        "field_operator": "用户名",
        "field_purpose.item": "办理事项",
        "field_purpose.case": "办件编号",
        "field_purpose.reason": "用证事由说明",
        "field_licence_id": "证照编号",
        "field_qr": "二维码内容",
        "field_licence": "证照文件",
        "field_other": "所填内容",
        "input_reason": "格式不正确或含有不允许的字符",
        "checked_at": "核验时间",
        "beijing_time": "（北京时间）",
        "clerk": "经办人",
        "facts_heading": "证照信息（请与申请人出示的证照核对）",
        "holder": "持证主体",
        "holder_kind": "主体类型",
        "holder_uscc": "企业（统一社会信用代码）",
        "holder_resident-id": "个人（居民身份证号码）",
        "holder_id": "证件号码",
        "type_name": "证照类型",
        "issuer": "发证机关",
        "issue_date": "发证日期",
        "valid_from": "有效期起",
        "valid_until": "有效期至",
        "no_end": "长期有效",
        "status": "证照状态",
        "seal": "所用印章",
        "type_fields": "证照上的其他内容",
        "yes": "是",
        "no": "否",
        "receipt_raw": "签名回执原文（供系统核验，一般无需查看）",
        "print_receipt": "打印回执",
        "print_heading": "电子证照核验回执",
        "print_hint": "请使用浏览器的打印功能（Ctrl+P）打印本页，归入办件档案。",
        "print_qr": "回执二维码",
        "print_qr_note_full": "二维码内容为网关签名的完整回执，可扫码后用网关公钥核验。",
        "print_qr_note_digest": (
            "回执较长，二维码内容为审计记录编号和本回执的 SHA-256 摘要，"
            "可与下载保存的签名回执文件核对。"
        ),
        "audit_index": "审计记录编号",
        "receipt_unreadable": "该回执不是网关为本部门签发的核验回执，无法打印。",
        "office": "经办部门",
        "not_found_heading": "页面不存在",
        "server_error_heading": "系统出现错误",
        "server_error": "系统处理时出现错误，操作未完成。该错误已记入审计日志。",
        "server_error_index": "错误记录编号：",
        "unavailable": "网关暂时无法记录审计日志，操作未执行，请稍后再试。",
        "forbidden": "无权执行此操作，操作未执行。",
        "bad_request_heading": "请求无法处理",
        "bad_request": "提交的内容格式不正确或含有不允许的字符，操作未执行。",
        "to_console": "返回工作台",
    },
    "en": {
        "html_lang": "en",
        "title": "Yiwang Gateway · Console",
        "skip": "Skip to main content",
        "other_language": "中文",
        "other_language_code": "zh",
        "login_heading": "Log in",
        "username": "Username",
        "password": "Password",
        "login_button": "Log in",
        "login_refused": "Wrong username or password, or the account cannot log in now.",
        "logout_button": "Log out",
        "nav_verify": "Verify a licence",
        "nav_manifest": "One-time notice",
        "nav_audit": "Audit log",
        "nav_reports": "Quarterly report",
        "nav_admin": "Administration",
        "verify_heading": "Verify an e-licence",
        "verify_intro": (
            "Choose one way: type the licence identifier, paste the QR code's content, "
            "or upload the sealed licence file."
        ),
        "licence_id": "Licence identifier",
        "qr": "QR code content",
        "licence_file": "Sealed licence file",
        "purpose": "Purpose",
        "service_item": "Service item",
        "case_number": "Case number",
        "reason": "Reason",
        "verify_button": "Verify",
        "result_heading": "Result",
        "verdict": "Verdict",
        "checks": "Checks",
        "check": "Check",
        "outcome": "Outcome",
        "detail": "Detail",
        "licence": "Licence",
        "receipt": "Signed receipt",
        "receipt_download": "Download the signed receipt",
        "receipt_note": (
            "The gateway signed this receipt; check it with the gateway's JWKS. Audit entry: "
        ),
        "give_one": "Give exactly one of: licence identifier, QR code content, licence file.",
        "bad_input": "Please correct this",
        "bad_file": "The licence file cannot be read (a sealed text file, at most 64 KB).",
        "forbidden_heading": "This cannot be done",
        "csrf_refused": (
            "The form has expired or its origin cannot be confirmed; nothing was done. "
            "Go back to the page and submit it again."
        ),
        "role_refused": "Only service-hall clerks may use this page.",
        "back": "Back",
        "not_found": "There is no such page.",
        "service_item_choose": "Choose a service item",
        "unknown_item": (
            "This service item is not in the district's catalogue: choose one from the list."
        ),
        "missing_purpose": "Give the purpose: the service item, the case number and the reason.",
        "field_operator": "Username",
        "field_purpose.item": "Service item",
        "field_purpose.case": "Case number",
        "field_purpose.reason": "Reason",
        "field_licence_id": "Licence identifier",
        "field_qr": "QR code content",
        "field_licence": "Licence file",
        "field_other": "A value",
        "input_reason": "is malformed or contains characters that are not allowed",
        "checked_at": "Checked at",
        "beijing_time": " (Beijing time)",
        "clerk": "Clerk",
        "facts_heading": "The licence (compare it with the one the applicant shows)",
        "holder": "Holder",
        "holder_kind": "Holder type",
        "holder_uscc": "Company (unified social credit code)",
        "holder_resident-id": "Person (resident ID number)",
        "holder_id": "ID number",
        "type_name": "Licence type",
        "issuer": "Issuer",
        "issue_date": "Issued on",
        "valid_from": "Valid from",
        "valid_until": "Valid until",
        "no_end": "No end date",
        "status": "Licence status",
        "seal": "Seal",
        "type_fields": "Other entries on the licence",
        "yes": "Yes",
        "no": "No",
        "receipt_raw": "The signed receipt as issued (for systems; rarely needed)",
        "print_receipt": "Print the receipt",
        "print_heading": "E-licence verification receipt",
        "print_hint": (
            "Print this page with the browser's print command (Ctrl+P) for the case file."
        ),
        "print_qr": "Receipt QR code",
        "print_qr_note_full": (
            "The QR code holds the whole signed receipt; check it with the gateway's public key."
        ),
        "print_qr_note_digest": (
            "The receipt is long: the QR code holds the audit entry number and the receipt's "
            "SHA-256, to match against the downloaded signed receipt file."
        ),
        "audit_index": "Audit entry",
        "receipt_unreadable": (
            "This is not a receipt the gateway issued to your department; it cannot be printed."
        ),
        "office": "Department",
        "not_found_heading": "No such page",
        "server_error_heading": "Something went wrong",
        "server_error": (
            "The gateway failed while doing this; "
            "nothing was completed. The failure is in the audit log."
        ),
        "server_error_index": "Entry number: ",
        "unavailable": (
            "The gateway cannot write its audit log now; nothing was done. Try again shortly."
        ),
        "forbidden": "This is not permitted; nothing was done.",
        "bad_request_heading": "This request cannot be handled",
        "bad_request": (
            "What was sent is malformed or contains characters t"
            "hat are not allowed; nothing was done."
        ),
        "to_console": "Back to the console",
    },
}

VERDICTS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "valid": "有效",
        "suspended": "已暂停（中止）",
        "revoked": "已吊销",
        "withdrawn": "已撤销",
        "cancelled": "已注销",
        "expired": "已过期",
        "not-yet-valid": "尚未生效",
        "not-found": "未找到该证照",
        "forged": "伪造或被篡改",
        "seal-invalid": "印章无效",
        "malformed": "格式错误，无法识别",
    },
    "en": {
        "valid": "Valid",
        "suspended": "Suspended",
        "revoked": "Revoked",
        "withdrawn": "Withdrawn",
        "cancelled": "Cancelled",
        "expired": "Expired",
        "not-yet-valid": "Not yet valid",
        "not-found": "No such licence",
        "forged": "Forged or altered",
        "seal-invalid": "Seal not valid",
        "malformed": "Malformed, cannot be read",
    },
}

CHECKS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "identifier-format": "证照编号格式",
        "qr-format": "二维码格式",
        "qr-digest": "二维码与证照内容一致",
        "record": "发证机关已发布",
        "structure": "文件结构",
        "seal-known": "印章已登记",
        "signature": "印章签名",
        "content": "证照内容",
        "identifier": "证照编号一致",
        "holder-id": "持证主体证件号码",
        "seal-owner": "印章属于发证机关",
        "seal-validity": "用印时印章有效",
        "status-entry": "状态登记",
        "record-matches": "与发布的证照一致",
        "status": "证照状态",
        "validity": "有效期",
        "suspension": "未被暂停",
    },
    "en": {
        "identifier-format": "Identifier format",
        "qr-format": "QR code format",
        "qr-digest": "QR code matches the licence",
        "record": "Published by the issuer",
        "structure": "File structure",
        "seal-known": "Seal registered",
        "signature": "Seal signature",
        "content": "Licence content",
        "identifier": "Identifier matches",
        "holder-id": "Holder's ID number",
        "seal-owner": "Seal belongs to the issuer",
        "seal-validity": "Seal valid when used",
        "status-entry": "Status entry",
        "record-matches": "Matches the published licence",
        "status": "Licence status",
        "validity": "Validity period",
        "suspension": "Not suspended",
    },
}

OUTCOMES: Mapping[str, Mapping[str, str]] = {
    "zh": {"passed": "通过", "failed": "未通过", "skipped": "未检查（前一项未通过）"},
    "en": {
        "passed": "Passed",
        "failed": "Failed",
        "skipped": "Not checked (an earlier one failed)",
    },
}


def language(query: str | None, cookie: str | None) -> str:
    """The page language: ``?lang=`` first, then the remembered choice, else Chinese."""
    for choice in (query, cookie):
        if choice in LANGUAGES:
            return str(choice)
    return "zh"


#: A licence's stored status (the ``status`` check's detail), in words.
STATUSES: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "valid": "有效",
        "suspended": "暂停（中止）",
        "revoked": "已吊销",
        "withdrawn": "已撤销",
        "cancelled": "已注销",
    },
    "en": {
        "valid": "Valid",
        "suspended": "Suspended",
        "revoked": "Revoked",
        "withdrawn": "Withdrawn",
        "cancelled": "Cancelled",
    },
}

#: The kinds of e-seal a department registers (``Seal.type``).
SEAL_TYPES: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "administrative-approval": "行政审批专用章",
        "licence": "证照专用章",
        "official": "公章",
    },
    "en": {
        "administrative-approval": "Administrative approval seal",
        "licence": "Licence seal",
        "official": "Official seal",
    },
}
SEAL_TYPE_OTHER = {"zh": "其他印章", "en": "Other seal"}


def _d(zh: str, en: str) -> Mapping[str, str]:
    return {"zh": zh, "en": en}


#: What the licensing service says in a check's detail (:mod:`gateway.core.licences`,
#: :mod:`gateway.core.identifiers`, :mod:`gateway.core.seals`), matched whole, then said in
#: words. Named groups are filled in: ``seal`` becomes the seal's registered name, ``day`` a
#: date, ``at`` a Beijing time. A detail none of these match is never shown raw in Chinese
#: (:func:`check_detail` says that the reason is in the signed receipt).
_DETAILS: tuple[tuple[re.Pattern[str], Mapping[str, str]], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (
            r"no licence with this identifier",
            _d("发证机关未发布该编号的证照", "no licence with this identifier"),
        ),
        (
            r"the issuer never published it",
            _d("发证机关从未发布该证照", "the issuer never published it"),
        ),
        (
            r"no registered seal has this key",
            _d("没有已登记的印章使用此密钥", "no registered seal has this key"),
        ),
        (
            r"signature does not verify with seal (?P<seal>\S+)",
            _d("用{seal}核验签名未通过", "the signature does not verify with {seal}"),
        ),
        (
            r"seal (?P<seal>\S+) has no registered key",
            _d("{seal}没有登记的公钥", "{seal} has no registered key"),
        ),
        (
            r"the seal is another department's",
            _d("该印章属于其他部门", "the seal is another department's"),
        ),
        (
            r"seal (?P<seal>\S+) is valid (?P<start>\d{4}-\d{2}-\d{2})\.\."
            r"(?P<end>\d{4}-\d{2}-\d{2}), not on (?P<day>\d{4}-\d{2}-\d{2})",
            _d(
                "{seal}的有效期为 {start} 至 {end}，不包括发证日期 {day}",
                "{seal} is valid {start} to {end}, not on {day}",
            ),
        ),
        (
            r"seal (?P<seal>\S+) was revoked for key compromise at (?P<at>.+)",
            _d("{seal}已于 {at}因密钥泄露被吊销", "{seal} was revoked for key compromise at {at}"),
        ),
        (
            r"seal (?P<seal>\S+) was not active throughout (?P<day>\d{4}-\d{2}-\d{2})",
            _d("{seal}在 {day} 当天并非全天有效", "{seal} was not active throughout {day}"),
        ),
        (
            r"(?:the record differs from the sealed licence|differs from the published licence)",
            _d("与发证机关发布的证照内容不一致", "differs from the licence the issuer published"),
        ),
        (
            r"the QR code is not of this licence's content",
            _d("二维码与该证照的内容不符", "the QR code is not of this licence's content"),
        ),
        (
            r"valid until (?P<day>\d{4}-\d{2}-\d{2})",
            _d("有效期至 {day}，已过期", "valid until {day}"),
        ),
        (
            r"valid from (?P<day>\d{4}-\d{2}-\d{2})",
            _d("自 {day} 起生效，尚未生效", "valid from {day}"),
        ),
        (r"suspended", _d("证照已被暂停", "suspended")),
        (r"no status list entry for it", _d("没有该证照的状态登记", "no status list entry for it")),
        (r"unknown status value", _d("状态登记的值无法识别", "unknown status value")),
        (
            r"header members other than alg, kid, typ",
            _d("文件头含有不允许的内容", "header members other than alg, kid, typ"),
        ),
        (r"is not a compact JWS", _d("不是盖章的证照文件", "is not a compact JWS")),
        (r"typ must be \S+", _d("文件类型不是电子证照", "the file's type is not a licence")),
        (r"alg is not allowed", _d("签名算法不被允许", "alg is not allowed")),
        (r"kid is missing", _d("文件未注明所用印章", "kid is missing")),
        # identifiers (after the field's name: "licence-id: …", "content.holder_id: …")
        (r"check character is wrong", _d("校验位错误", "check character is wrong")),
        (r"must be 18 characters", _d("应为 18 位", "must be 18 characters")),
        (
            r"(?:uses a character outside the USCC alphabet"
            r"|the first 17 characters must use the USCC alphabet)",
            _d("含有统一社会信用代码不允许的字符", "uses a character outside the USCC alphabet"),
        ),
        (
            r"(?:the first 17 characters must be digits|must be 17 digits and a check character)",
            _d("前 17 位应为数字，最后一位为校验位", "must be 17 digits and a check character"),
        ),
        (
            r"birth date is not a real date",
            _d("出生日期不是有效日期", "birth date is not a real date"),
        ),
        (
            r"character .{1,6} is outside 0-9A-Z",
            _d("含有数字和大写字母以外的字符", "a character is outside 0-9A-Z"),
        ),
        (r"must start with \S+", _d("证照编号的开头不正确", "the identifier's root is wrong")),
        (
            r"must be root\.type\.issuer\.serial\.version\.check",
            _d("证照编号的分段结构不正确", "must be root.type.issuer.serial.version.check"),
        ),
        (
            r"type code must be a USCC followed by 3 digits",
            _d("证照类型代码不正确", "type code must be a USCC followed by 3 digits"),
        ),
        (
            r"serial must be ASCII letters or digits",
            _d("流水号只能由字母和数字组成", "serial must be ASCII letters or digits"),
        ),
        (r"version must be 3 digits", _d("版本号应为 3 位数字", "version must be 3 digits")),
        # QR payloads
        (r"must be YWL1:.*", _d("二维码内容不是电子证照二维码", "not a licence QR code")),
        (
            r"(?:must be 22 base64url characters|is not base64url|is not canonical base64url)",
            _d("二维码中的内容摘要不正确", "the QR code's digest is malformed"),
        ),
        # sealed content
        (r"is not strict JSON", _d("证照内容不是规范的数据格式", "is not strict JSON")),
        (r"is not canonical JSON.*", _d("证照内容不是规范的数据格式", "is not canonical JSON")),
        (
            r"differs from the identifier's issuer",
            _d("发证机关与证照编号不一致", "differs from the identifier's issuer"),
        ),
        (
            r"differs from the identifier's",
            _d("证照类型与证照编号不一致", "differs from the identifier's"),
        ),
        (r"is before valid_from", _d("有效期止早于有效期起", "is before valid_from")),
        (
            r"must be 64 lowercase hex digits",
            _d("文件摘要格式不正确", "must be 64 lowercase hex digits"),
        ),
    )
)
_FIELD_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+: (?P<rest>.*)$", re.DOTALL)
_UNEXPLAINED = _d("具体原因已记入签名回执", "")
#: Checks whose passed detail names a registered seal or a department.
_SEAL_CHECKS = frozenset({"seal-known"})
_DEPARTMENT_CHECKS = frozenset({"seal-owner"})


def district_time(when: dt.datetime) -> str:
    """A moment in the district's (Beijing) time, to the second."""
    return when.astimezone(DISTRICT_TZ).strftime("%Y-%m-%d %H:%M:%S")


def check_detail(
    lang: str,
    name: str,
    detail: str,
    *,
    seals: Mapping[str, str],
    departments: Mapping[str, str],
) -> str:
    """A check's detail in the page's language. ``seals`` and ``departments`` map ids to
    their registered names, so a clerk reads 行政审批专用章, not ``market-approval-1``."""
    if not detail:
        return ""
    if name == "status" and detail in STATUSES[lang]:
        return STATUSES[lang][detail]
    if name in _SEAL_CHECKS and detail in seals:
        return seals[detail]
    if name in _DEPARTMENT_CHECKS and detail in departments:
        return departments[detail]
    for text in (detail, (m.group("rest") if (m := _FIELD_PREFIX.match(detail)) else None)):
        if text is None:
            continue
        for pattern, words in _DETAILS:
            found = pattern.fullmatch(text)
            if found is None:
                continue
            values = dict(found.groupdict())
            if "seal" in values:
                values["seal"] = seals.get(
                    values["seal"], "所用印章" if lang == "zh" else "the seal"
                )
            if "at" in values:
                values["at"] = _moment(values["at"], lang)
            return words[lang].format(**values)
    return _UNEXPLAINED[lang] or detail


def _moment(text: str, lang: str) -> str:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return "" if lang == "zh" else text
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return district_time(when) + ("（北京时间）" if lang == "zh" else " (Beijing time)")
