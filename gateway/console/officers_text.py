"""The words the officers' and administrators' pages give to the log's codes: an event's
name, an entry's fields, a refusal's reason, an alert's kind, a role, a seal's type and a
revocation reason — Chinese by default, English on request.

Every :class:`~gateway.core.protocol.AuditEvent` has a name in both languages (a unit test
fails for a new event without one); a code without words (a reason no table knows yet) is
shown as "other reason" with the code beside it, never alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.audit.verify import ProblemCode
from gateway.console.admin_text import REASON_CODES
from gateway.console.text import VERDICTS
from gateway.core.protocol import AuditEvent

__all__ = [
    "ALERT_KINDS",
    "DAY_NAMES",
    "DEPARTMENT_ROLES",
    "ENTRY_FIELDS",
    "EVENT_NAMES",
    "REFUSAL_REASONS",
    "REVOCATION_REASONS",
    "SEAL_TYPES",
    "TOKEN_REASONS",
    "VERDICTS",
    "VERIFY_PROBLEMS",
    "reason_words",
    "signed_in_words",
    "verify_problem_words",
]

E = AuditEvent

EVENT_NAMES: Mapping[str, Mapping[str, str]] = {
    "zh": {
        E.LOOKUP_RELEASED: "查询：已提供数据",
        E.LOOKUP_NOT_FOUND: "查询：无此记录",
        E.LOOKUP_REFUSED: "查询：被拒绝",
        E.MANIFEST_LISTED: "一次性告知：已列出材料",
        E.MANIFEST_REFUSED: "一次性告知：被拒绝",
        E.CASE_CLOSED: "办件办结：已登记",
        E.CASE_REFUSED: "办件办结：被拒绝",
        E.CACHE_INVALIDATED: "数据资源缓存：已失效",
        E.CACHE_REFUSED: "数据资源缓存失效：被拒绝",
        E.UPLOAD_ACCEPTED: "数据上传：新版本已接收",
        E.UPLOAD_REFUSED: "数据上传：被拒绝",
        E.REJECTIONS_READ: "上传退回明细：已读取",
        E.REJECTIONS_REFUSED: "上传退回明细：被拒绝",
        E.LICENCE_RESERVED: "电子证照：已预留状态登记",
        E.LICENCE_ISSUED: "电子证照：已发布",
        E.LICENCE_ISSUE_REFUSED: "电子证照发布：被拒绝",
        E.LICENCE_STATUS_CHANGED: "电子证照：状态已变更",
        E.LICENCE_STATUS_REFUSED: "电子证照状态变更：被拒绝",
        E.VERIFICATION_PERFORMED: "证照核验：已完成",
        E.VERIFICATION_REFUSED: "证照核验：被拒绝",
        E.RECEIPT_PRINTED: "证照核验回执：已打印",
        E.SEAL_REGISTERED: "电子印章：已登记",
        E.SEAL_REFUSED: "电子印章操作：被拒绝",
        E.SEAL_STATUS_CHANGED: "电子印章：状态已变更",
        E.LEAF_READ: "审计叶子：已读取",
        E.LEAF_REFUSED: "审计叶子读取：被拒绝",
        E.REFUSALS_READ: "本部门被拒请求：已读取",
        E.REFUSALS_REFUSED: "本部门被拒请求读取：被拒绝",
        E.ENTRIES_EXPORTED: "审计记录：已导出",
        E.EMBARGO_ADDED: "查询记录屏蔽：已设置",
        E.EMBARGO_LIFTED: "查询记录屏蔽：已解除",
        E.HISTORY_READ: "被查询记录：已读取",
        E.HISTORY_REFUSED: "被查询记录读取：被拒绝",
        E.ANSWER_WITHHELD: "答复未送达：已更正",
        E.KEY_REVOKED: "部门密钥：已吊销",
        E.KEY_REFUSED: "部门密钥吊销：被拒绝",
        E.KEY_REGISTERED: "部门密钥：新密钥已登记",
        E.KEY_RETIRED: "部门密钥：已停用",
        E.KEY_CHANGE_REFUSED: "部门密钥变更：被拒绝",
        E.GATEWAY_KEY_PUBLISHED: "网关签名密钥：下一把已公布",
        E.GATEWAY_KEY_ACTIVATED: "网关签名密钥：已启用",
        E.GATEWAY_KEY_RETIRED: "网关签名密钥：已停用",
        E.POLICY_RELOADED: "共享策略：已重新加载",
        E.POLICY_REFUSED: "共享策略加载：被拒绝",
        E.CONSOLE_LOGIN: "工作台：登录成功",
        E.CONSOLE_LOGIN_FAILED: "工作台：登录失败",
        E.CONSOLE_LOGOUT: "工作台：已退出登录",
        E.CONSOLE_CSRF_REFUSED: "工作台：表单来源无法确认，已拒绝",
        E.ACCOUNT_ADDED: "工作台账户：已添加",
        E.ACCOUNT_DISABLED: "工作台账户：已停用",
        E.ACCOUNT_ENABLED: "工作台账户：已启用",
        E.ACCOUNT_RESET: "工作台账户：密码已重置",
        E.ACCOUNT_LOCKED: "工作台账户：已锁定",
        E.INTERNAL_ERROR: "请求：网关内部错误",
    },
    "en": {
        E.LOOKUP_RELEASED: "Lookup: data released",
        E.LOOKUP_NOT_FOUND: "Lookup: no such record",
        E.LOOKUP_REFUSED: "Lookup: refused",
        E.MANIFEST_LISTED: "One-time notice: materials listed",
        E.MANIFEST_REFUSED: "One-time notice: refused",
        E.CASE_CLOSED: "Case closure recorded",
        E.CASE_REFUSED: "Case closure refused",
        E.CACHE_INVALIDATED: "Resource cache invalidated",
        E.CACHE_REFUSED: "Cache invalidation refused",
        E.UPLOAD_ACCEPTED: "Upload: new version accepted",
        E.UPLOAD_REFUSED: "Upload: refused",
        E.REJECTIONS_READ: "Upload rejections read",
        E.REJECTIONS_REFUSED: "Upload rejections: refused",
        E.LICENCE_RESERVED: "E-licence: status entry reserved",
        E.LICENCE_ISSUED: "E-licence published",
        E.LICENCE_ISSUE_REFUSED: "E-licence issuance refused",
        E.LICENCE_STATUS_CHANGED: "E-licence status changed",
        E.LICENCE_STATUS_REFUSED: "E-licence status change refused",
        E.VERIFICATION_PERFORMED: "Licence verification done",
        E.VERIFICATION_REFUSED: "Licence verification refused",
        E.RECEIPT_PRINTED: "Licence verification receipt: printed",
        E.SEAL_REGISTERED: "E-seal registered",
        E.SEAL_REFUSED: "E-seal change refused",
        E.SEAL_STATUS_CHANGED: "E-seal status changed",
        E.LEAF_READ: "Audit leaf read",
        E.LEAF_REFUSED: "Audit leaf read refused",
        E.REFUSALS_READ: "Own refused requests: read",
        E.REFUSALS_REFUSED: "Own refused requests: read refused",
        E.ENTRIES_EXPORTED: "Audit entries exported",
        E.EMBARGO_ADDED: "Access-history embargo added",
        E.EMBARGO_LIFTED: "Access-history embargo lifted",
        E.HISTORY_READ: "Access history read",
        E.HISTORY_REFUSED: "Access history refused",
        E.ANSWER_WITHHELD: "Answer not delivered: corrected",
        E.KEY_REVOKED: "Department key revoked",
        E.KEY_REFUSED: "Key revocation refused",
        E.KEY_REGISTERED: "Department key registered",
        E.KEY_RETIRED: "Department key retired",
        E.KEY_CHANGE_REFUSED: "Department key change refused",
        E.GATEWAY_KEY_PUBLISHED: "Gateway next key published",
        E.GATEWAY_KEY_ACTIVATED: "Gateway key activated",
        E.GATEWAY_KEY_RETIRED: "Gateway key retired",
        E.POLICY_RELOADED: "Sharing policy reloaded",
        E.POLICY_REFUSED: "Sharing policy reload refused",
        E.CONSOLE_LOGIN: "Console: logged in",
        E.CONSOLE_LOGIN_FAILED: "Console: log-in failed",
        E.CONSOLE_LOGOUT: "Console: logged out",
        E.CONSOLE_CSRF_REFUSED: "Console: forged form refused",
        E.ACCOUNT_ADDED: "Console account added",
        E.ACCOUNT_DISABLED: "Console account disabled",
        E.ACCOUNT_ENABLED: "Console account enabled",
        E.ACCOUNT_RESET: "Console account password reset",
        E.ACCOUNT_LOCKED: "Console account locked",
        E.INTERNAL_ERROR: "Request: internal error",
    },
}

#: The columns of an entry (search, entry page, export) in words.
ENTRY_FIELDS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "index": "序号",
        "at": "时间（北京时间）",
        "event": "事件",
        "decision": "决定",
        "department": "部门",
        "operator": "经办人",
        "service_item": "事项编码",
        "case_number": "办件编号",
        "reason": "事由",
        "resource": "数据资源",
        "subject_hmac": "数据主体（密钥哈希，不含原文）",
        "fields": "涉及字段",
        "reason_code": "原因或结论",
        "grant_id": "依据授权",
        "policy_version": "策略版本",
        "request_hash": "请求令牌哈希",
        "response_hash": "答复哈希",
        "latency_ms": "耗时（毫秒）",
        "detail": "说明",
        "withholds": "更正的记录序号",
        "request_id": "请求编号",
    },
    "en": {
        "index": "No.",
        "at": "Time (Beijing)",
        "event": "Event",
        "decision": "Decision",
        "department": "Department",
        "operator": "Operator",
        "service_item": "Service item",
        "case_number": "Case number",
        "reason": "Reason given",
        "resource": "Resource",
        "subject_hmac": "Subject (keyed hash, never in clear)",
        "fields": "Fields",
        "reason_code": "Reason or verdict",
        "grant_id": "Under grant",
        "policy_version": "Policy version",
        "request_hash": "Request token hash",
        "response_hash": "Answer hash",
        "latency_ms": "Time taken (ms)",
        "detail": "Detail",
        "withholds": "Entry it corrects",
        "request_id": "Request id",
    },
}

#: Why a request token was refused (``token:<reason>``).
TOKEN_REASONS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "alg-not-allowed": "签名算法不允许",
        "alg-not-allowed-for-key": "该密钥不允许此签名算法",
        "bad-signature": "签名无法核验（可能伪造）",
        "exp-before-iat": "过期时间早于签发时间",
        "expired": "令牌已过期",
        "invalid": "令牌格式无效",
        "iss-not-key-owner": "签发部门与密钥所属部门不符",
        "issued-in-future": "签发时间在未来",
        "lifetime-too-long": "有效期过长",
        "not-yet-valid": "令牌尚未生效",
        "payload-malformed": "令牌内容格式错误",
        "token-too-large": "令牌过大",
        "unknown-kid": "未知的密钥标识",
        "wrong-aud": "接收方不是本网关",
        "wrong-typ": "令牌类型不符",
        "key-revoked": "密钥已吊销",
        "key-retired": "密钥已停用",
    },
    "en": {
        "alg-not-allowed": "algorithm not allowed",
        "alg-not-allowed-for-key": "algorithm not allowed for this key",
        "bad-signature": "signature does not verify (possibly forged)",
        "exp-before-iat": "expires before it was issued",
        "expired": "token expired",
        "invalid": "token malformed",
        "iss-not-key-owner": "issuer does not own the key",
        "issued-in-future": "issued in the future",
        "lifetime-too-long": "lifetime too long",
        "not-yet-valid": "token not yet valid",
        "payload-malformed": "token payload malformed",
        "token-too-large": "token too large",
        "unknown-kid": "unknown key id",
        "wrong-aud": "not addressed to this gateway",
        "wrong-typ": "wrong token type",
        "key-revoked": "key revoked",
        "key-retired": "key retired",
    },
}

#: Reasons of refusals other than the policy's and the tokens'.
_OTHER_REASONS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "replay": "请求令牌重复使用",
        "internal-error": "网关内部错误",
        "invalid-input": "请求格式错误",
        "unsupported-media-type": "内容类型不符",
        "payload-too-large": "请求过大",
        "record-not-found": "无此记录",
        "rate-limited": "请求过于频繁",
        "source-failed": "提供部门的数据源出错",
        "source-timeout": "提供部门的数据源超时",
        "store-unavailable": "存储暂时不可用",
        "configuration": "网关配置错误",
        "not-own-entry": "不是本部门的记录",
        "not-provider": "不是该资源的提供部门",
        "csrf-mismatch": "表单来源无法确认",
        "unknown-account": "账户不存在",
        "wrong-password": "密码错误",
        "locked": "账户已锁定",
        "disabled": "账户已停用",
        "too-many-failures": "连续登录失败次数过多",
        "answer-withheld": "答复未送达",
        "entry-unstorable": "记录无法存储",
        "invalid-policy-set": "策略文件无效",
    },
    "en": {
        "replay": "request token used again",
        "internal-error": "internal error",
        "invalid-input": "malformed request",
        "unsupported-media-type": "wrong content type",
        "payload-too-large": "request too large",
        "record-not-found": "no such record",
        "rate-limited": "too many requests",
        "source-failed": "the provider's source failed",
        "source-timeout": "the provider's source timed out",
        "store-unavailable": "a store was unavailable",
        "configuration": "gateway misconfigured",
        "not-own-entry": "not the department's own entry",
        "not-provider": "not the resource's provider",
        "csrf-mismatch": "form origin not confirmed",
        "unknown-account": "no such account",
        "wrong-password": "wrong password",
        "locked": "account locked",
        "disabled": "account disabled",
        "too-many-failures": "too many failed log-ins",
        "answer-withheld": "answer not delivered",
        "entry-unstorable": "entry could not be stored",
        "invalid-policy-set": "policy files invalid",
    },
}

#: Every refusal reason with words: the policy's, the tokens' (``token:…``) and the others.
REFUSAL_REASONS: Mapping[str, Mapping[str, str]] = {
    lang: {
        **REASON_CODES[lang],
        **_OTHER_REASONS[lang],
        **{f"token:{code}": words for code, words in TOKEN_REASONS[lang].items()},
    }
    for lang in ("zh", "en")
}

_TOKEN_PREFIX = {"zh": "请求令牌未通过：", "en": "request token refused: "}
_OTHER = {"zh": "其他原因", "en": "other reason"}


def reason_words(code: str | None, lang: str) -> tuple[str, str | None]:
    """A refusal reason in words, and the code to show beside it when it has none."""
    if not code:
        return "", None
    words = REFUSAL_REASONS[lang].get(code)
    if words is not None:
        return words, None
    if code.startswith("token:"):
        return _TOKEN_PREFIX[lang].rstrip("：: "), code
    return _OTHER[lang], code


ALERT_KINDS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "subject-rate": "查询主体数异常",
        "grant-quota": "超出每日查询上限",
        "outside-grant-hours": "授权办公时间外的查询",
        "outside-working-hours": "工作时间外读取数据",
        "closed-case": "已办结办件的查询",
        "token-failures": "请求令牌连续未通过",
        "key-expiring": "密钥即将到期",
        "seal-expiring": "电子印章即将到期",
        "login-failures": "工作台连续登录失败",
        "account-locked": "工作台账户被锁定",
    },
    "en": {
        "subject-rate": "Unusual number of subjects",
        "grant-quota": "Daily quota exceeded",
        "outside-grant-hours": "Outside the grant's office hours",
        "outside-working-hours": "Data read outside working hours",
        "closed-case": "Lookups under a closed case",
        "token-failures": "Repeated token failures",
        "key-expiring": "Key expiring",
        "seal-expiring": "E-seal expiring",
        "login-failures": "Repeated console log-in failures",
        "account-locked": "Console account locked",
    },
}

#: Roles of departments in the exchange, and of console accounts.
DEPARTMENT_ROLES: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "consumer": "使用部门",
        "provider": "提供部门",
        "issuer": "发证机关",
        "portal": "政务服务门户",
        "clerk": "窗口工作人员",
        "auditor": "安全审计员",
        "admin": "管理员",
    },
    "en": {
        "consumer": "Consumer",
        "provider": "Provider",
        "issuer": "Issuer",
        "portal": "Portal",
        "clerk": "Clerk",
        "auditor": "Security officer",
        "admin": "Administrator",
    },
}

#: Seal types as registered (free text: a type without words is shown as registered).
SEAL_TYPES: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "official": "公章",
        "licence": "证照专用章",
        "license": "证照专用章",
        "administrative-approval": "行政审批专用章",
        "real-estate-registration": "不动产登记专用章",
        "contract": "合同专用章",
        "finance": "财务专用章",
        "invoice": "发票专用章",
    },
    "en": {
        "official": "Official seal",
        "licence": "Licence seal",
        "license": "Licence seal",
        "administrative-approval": "Administrative approval seal",
        "real-estate-registration": "Real estate registration seal",
        "contract": "Contract seal",
        "finance": "Finance seal",
        "invoice": "Invoice seal",
    },
}

#: Why a seal is revoked, with what each does to the licences it sealed.
REVOCATION_REASONS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "superseded": "已由新印章替代（此前加盖的证照仍有效）",
        "cessation": "部门撤并、更名或撤销（此前加盖的证照仍有效）",
        "other": "其他原因（此前加盖的证照仍有效）",
        "key-compromise": "印章密钥泄露（其加盖的全部证照随之失效）",
    },
    "en": {
        "superseded": "Replaced by a new seal (licences sealed before stay valid)",
        "cessation": "Department merged, renamed or dissolved (licences sealed before stay valid)",
        "other": "Other (licences sealed before stay valid)",
        "key-compromise": "Seal key compromised (every licence it ever sealed becomes invalid)",
    },
}

#: Days of the week as the policy files and the alert settings write them.
DAY_NAMES: Mapping[str, Mapping[str, str]] = {
    "zh": {"mon": "周一", "tue": "周二", "wed": "周三", "thu": "周四", "fri": "周五",
           "sat": "周六", "sun": "周日"},
    "en": {"mon": "Mon", "tue": "Tue", "wed": "Wed", "thu": "Thu", "fri": "Fri",
           "sat": "Sat", "sun": "Sun"},
}  # fmt: skip


P = ProblemCode

#: What each problem the log's verification reports means, in Chinese, filled in from the
#: problem's numbers (English pages show the verifier's own sentence, as the command prints).
VERIFY_PROBLEMS: Mapping[str, str] = {
    P.ENTRIES_MISSING: "第 {first} 至 {last} 条记录缺失（可能被删除）。",
    P.ENTRY_NOT_IN_TREE: "第 {entry} 条记录不在默克尔树中（可能是事后插入的）。",
    P.ENTRY_DIFFERS: "第 {entry} 条记录与写入时的叶子不一致（记录已被改动）。",
    P.LOG_SHORTER_THAN_TREE: "日志被截短：默克尔树有 {leaves} 个叶子，但只存有 {entries} 条记录。",
    P.CHECKPOINT_SIGNATURE: "覆盖 {size} 条记录的检查点，其签名无法用网关公钥核验。",
    P.CHECKPOINT_CLAIMS: "覆盖 {size} 条记录的检查点，其签名内容与存储的检查点不一致。",
    P.LOG_SHORTER_THAN_CHECKPOINT: (
        "日志被截短：一个签名检查点覆盖 {size} 条记录，但只存有 {entries} 条。"
    ),
    P.CHECKPOINT_ROOT: (
        "覆盖 {size} 条记录的检查点与存储的记录不符：第 {size} 条及之前的记录中有被修改、"
        "删除或插入的。"
    ),
}

_ONE_MISSING = "第 {first} 条记录缺失（可能被删除）。"
_OTHER_PROBLEM = "校验发现其他问题（代码 {code}）。"


def verify_problem_words(problem: Mapping[str, Any], lang: str) -> str:
    """One problem of a verification (``code``, ``details``, ``message`` as the integrity
    service keeps it) as a sentence in ``lang``."""
    if lang != "zh":
        return str(problem["message"])
    code = str(problem["code"])
    details: Mapping[str, Any] = problem["details"]
    if code == P.ENTRIES_MISSING and details.get("first") == details.get("last"):
        return _ONE_MISSING.format_map(details)
    try:
        return VERIFY_PROBLEMS[code].format_map(details)
    except KeyError:  # a code without words yet, or its numbers missing
        return _OTHER_PROBLEM.format(code=code)


_SIGNED_IN = {"zh": "当前用户：{name}（{role}）", "en": "Signed in as {name} ({role})"}
_SIGNED_IN_CLERK = {
    "zh": "当前用户：{name}（{department} {role}）",
    "en": "Signed in as {name} ({role}, {department})",
}


def signed_in_words(*, display_name: str, role: str, department: str | None, lang: str) -> str:
    """The header's "signed in as": the account's display name and its role in words (a
    clerk's with the department's name)."""
    words = DEPARTMENT_ROLES[lang].get(role, role)
    if department:
        return _SIGNED_IN_CLERK[lang].format(name=display_name, role=words, department=department)
    return _SIGNED_IN[lang].format(name=display_name, role=words)
