"""The console's interface text: Chinese by default, English on request.

Every message a person reads is here, in words (never a bare code): verdicts, checks, errors.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CHECKS", "LANGUAGES", "OUTCOMES", "TEXT", "VERDICTS", "language"]

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
        "signed_in_as": "当前用户",
        "nav_verify": "核验证照",
        "nav_manifest": "一次性告知",
        "nav_audit": "审计日志",
        "nav_admin": "管理",
        "verify_heading": "核验电子证照",
        "verify_intro": "请选择一种方式：输入证照编号、粘贴二维码内容，或上传盖章的证照文件。",
        "licence_id": "证照编号",
        "qr": "二维码内容",
        "licence_file": "盖章的证照文件",
        "purpose": "用证事由",
        "service_item": "事项编码",
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
        "role_refused": "只有窗口工作人员（clerk）可以使用此页面。",
        "back": "返回",
        "not_found": "页面不存在。",
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
        "signed_in_as": "Signed in as",
        "nav_verify": "Verify a licence",
        "nav_manifest": "One-time notice",
        "nav_audit": "Audit log",
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
        "service_item": "Service item code",
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
