"""A department's own refusals: why the gateway refused its recent requests.

Every token failure is answered with one opaque 401 (probing must not tell which check
failed); its precise reason goes to the audit log. A department's integrators still need that
reason to fix their signing code, so the department may ask for its own refusals with a
signed request ``POST /v1/refusals``::

    header: {"alg": …, "typ": "yiwang-refusals+jwt", "kid": …}
    claims: iss, aud, iat, exp, jti,
            "operator": "dev-ops-1",
            "since": 1795000000,        # optional: epoch seconds, at most 7 days back [24 h]
            "limit": 50,                # optional: 1..100 [50]
            "before": 1234              # optional: the ``next`` of the previous page

The answer (typ ``yiwang-refusals-result+jwt``, signed by the gateway for the department)
lists, newest first, the refused requests **attributable to the department**: those whose
token named (by ``kid``) a key registered to it — the key's owner, never an unverified
``iss`` claim, so that nobody can read or plant refusals under another department's name. A
token whose ``kid`` names no key is nobody's and is not listed. Each refusal carries its audit
index, time, event, reason code, the reason in words and the SHA-256 of the token that was
refused (``request_sha256``: the sender hashes the token it sent to find it). The read is
itself audited (``audit:refusals:read``), and so is a refused read (``audit:refusals:refused``).

The answer says what the log says and nothing else of the request: no subject (the log holds
only its keyed HMAC), no record data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit.entry import Outcome
from gateway.cache import Admission
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.wire import Name, convert
from gateway.errors import InvalidInput, StoreUnavailable
from gateway.exchange import Admit, Done, Exchange, Received, SignedAnswer, SignedExchanges
from gateway.storage.schema import audit_entries

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "REFUSALS",
    "REFUSAL_EVENTS",
    "RefusalService",
    "RefusalsClaims",
    "explain",
]

log = logging.getLogger(__name__)

#: How far back a department may look, and how far it looks when it does not say.
MAX_WINDOW = dt.timedelta(days=7)
DEFAULT_WINDOW = dt.timedelta(hours=24)
#: The most refusals one answer lists.
MAX_LIMIT = 100
DEFAULT_LIMIT = 50

#: The refused events of the requests a department signs (one per signed exchange, and the
#: unexpected failure of any request). The console's, the registry's and the policy reload's
#: refusals are the operators', not the department systems'.
REFUSAL_EVENTS: tuple[AuditEvent, ...] = (
    AuditEvent.LOOKUP_REFUSED,
    AuditEvent.MANIFEST_REFUSED,
    AuditEvent.CASE_REFUSED,
    AuditEvent.CACHE_REFUSED,
    AuditEvent.UPLOAD_REFUSED,
    AuditEvent.REJECTIONS_REFUSED,
    AuditEvent.LICENCE_ISSUE_REFUSED,
    AuditEvent.LICENCE_STATUS_REFUSED,
    AuditEvent.VERIFICATION_REFUSED,
    AuditEvent.SEAL_REFUSED,
    AuditEvent.LEAF_REFUSED,
    AuditEvent.HISTORY_REFUSED,
    AuditEvent.REFUSALS_REFUSED,
    AuditEvent.KEY_CHANGE_REFUSED,
    AuditEvent.INTERNAL_ERROR,
)

#: The reason codes in words (Chinese: the integrators' officials read them). A code not here
#: is explained by the entry's detail.
_TOKEN_REASONS = {
    "bad-signature": "签名验证失败：令牌不是用该 kid 对应的已登记私钥签名的，或签名后内容被改动",
    "expired": "令牌已过期（exp 早于网关收到请求的时间，已计入 30 秒时钟容差）",
    "not-yet-valid": "令牌尚未生效（nbf 晚于网关收到请求的时间）",
    "issued-in-future": "令牌的签发时间 iat 晚于网关时间（请检查本机时钟）",
    "lifetime-too-long": "令牌有效期（exp − iat）超过网关允许的最长时间",
    "exp-before-iat": "令牌的 exp 早于 iat",
    "wrong-aud": "令牌的 aud 不是本网关的标识",
    "wrong-typ": "JWS 头部的 typ 与该接口要求的请求类型不符",
    "iss-not-key-owner": "令牌的 iss 不是 kid 所指密钥的登记部门",
    "alg-not-allowed": "JWS 头部的 alg 不在允许的算法之列（仅 ES256、EdDSA、SM2）",
    "alg-not-allowed-for-key": "JWS 头部的 alg 不是该密钥登记的算法",
    "key-revoked": "签名所用的密钥已被吊销",
    "key-retired": "签名所用的密钥已停用",
    "token-too-large": "令牌超过该接口允许的大小",
    "payload-malformed": "令牌的载荷不是合法的 JSON 对象",
    "header-malformed": "JWS 头部不是合法的 JSON 对象，或含有不允许的成员",
    "header-too-large": "JWS 头部过大",
    "malformed": "请求体不是紧凑序列化的 JWS（三段 base64url，以点分隔）",
}
_REASONS = {
    "replay": "该令牌的 jti 已经用过：每个请求须使用新的 jti",
    "rate-limited": "本部门在当前时间窗内的请求数已用完",
    "invalid-input": "请求声明格式有误（见 detail 中的字段与原因）",
    "no-grant": "没有允许本次请求的共享授权",
    "field-not-granted": "请求的字段超出授权范围",
    "purpose-not-granted": "授权不包含该办事事项",
    "grant-expired": "授权已过期",
    "approval-missing": "有条件共享的资源缺少审批",
    "not-shared": "该资源不予共享",
    "outside-hours": "不在授权规定的办公时间内",
    "quota-exhausted": "授权的每日查询对象数已用完",
    "case-closed": "该办件已办结，不能再查询",
    "not-found": "授权允许查询，但没有该对象的记录",
    "internal-error": "网关内部错误（已记录，未释放任何数据）",
}


def explain(reason_code: str | None) -> str | None:
    """The reason code of a refusal in words, or None if the gateway has none for it."""
    if reason_code is None:
        return None
    if reason_code.startswith("token:"):
        reason = reason_code.removeprefix("token:")
        if reason in _TOKEN_REASONS:
            return _TOKEN_REASONS[reason]
        if reason.startswith("missing-"):
            return f"令牌缺少必需的声明 {reason.removeprefix('missing-')}"
        if reason.startswith("claim-") and reason.endswith("-invalid"):
            claim = reason.removeprefix("claim-").removesuffix("-invalid")
            return f"令牌的声明 {claim} 类型或取值不合规定"
        if reason == "unknown-kid":  # never listed (nobody's), explained for completeness
            return "kid 未指向任何已登记的密钥"
        return None
    return _REASONS.get(reason_code)


class RefusalsClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The request's own claims (the registered ones are checked by the token verifier)."""

    operator: Name
    since: Annotated[int, msgspec.Meta(ge=946_684_800, le=4_102_444_800)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    before: Annotated[int, msgspec.Meta(ge=1)] | None = None


_REGISTERED = frozenset({"iss", "aud", "iat", "exp", "nbf", "jti"})


def _parse(_department: str, claims: dict[str, Any]) -> RefusalsClaims:
    own = {name: value for name, value in claims.items() if name not in _REGISTERED}
    return convert(own, RefusalsClaims)


#: The signed exchange of ``POST /v1/refusals``.
REFUSALS = Exchange(
    request=TokenType.REFUSALS,
    answer=TokenType.REFUSALS_RESULT,
    parse=_parse,
    refused=AuditEvent.REFUSALS_REFUSED,
    done=AuditEvent.REFUSALS_READ,
)


class RefusalService:
    """Answers a department's signed request for its own recent refusals."""

    def __init__(self, *, engine: sa.Engine, exchanges: SignedExchanges) -> None:
        self._engine = engine
        self._exchanges = exchanges

    async def refusals(self, token: bytes, *, now: float) -> SignedAnswer:
        """The sender's refusals in the window it asks for, newest first, as a signed answer."""

        def check(received: Received[RefusalsClaims]) -> Admit:
            claims = received.request
            earliest = now - MAX_WINDOW.total_seconds()
            since = now - DEFAULT_WINDOW.total_seconds() if claims.since is None else claims.since
            if since < earliest:
                raise InvalidInput("since", f"must be within {MAX_WINDOW.days} days of now")
            if since > now:
                raise InvalidInput("since", "must not be in the future")
            return Admit(plan=dt.datetime.fromtimestamp(since, dt.UTC))

        async def work(received: Received[RefusalsClaims], admit: Admit, _a: Admission) -> Done:
            claims = received.request
            since: dt.datetime = admit.plan
            try:
                rows = await asyncio.to_thread(
                    self._read,
                    department=received.token.department,
                    since=since,
                    before=claims.before,
                    limit=claims.limit,
                )
            except SQLAlchemyError as exc:
                log.error("audit store: %s", exc)
                raise StoreUnavailable("audit store") from None
            more = len(rows) > claims.limit
            refusals = [_shown(row) for row in rows[: claims.limit]]
            following = refusals[-1]["audit_index"] if more else None
            return Done(
                {
                    "department": received.token.department,
                    "since": int(since.timestamp()),
                    "refusals": refusals,
                    "next": following,
                },
                audit={
                    "response_hash": hashlib.sha256(
                        msgspec.json.encode(refusals, order="sorted")
                    ).hexdigest(),
                    "detail": f"{len(refusals)} refusals" + (" (more)" if more else ""),
                },
            )

        return await self._exchanges.run(REFUSALS, token, now=now, check=check, work=work)

    def _read(
        self, *, department: str, since: dt.datetime, before: int | None, limit: int
    ) -> list[Any]:
        e = audit_entries.c
        query = sa.select(
            e.idx,
            e.at,
            e.event,
            e.reason_code,
            e.detail,
            e.request_hash,
            e.operator,
            e.service_item,
            e.case_number,
            e.resource,
        ).where(
            e.department == department,
            e.decision == str(Outcome.REFUSED),
            e.event.in_([str(event) for event in REFUSAL_EVENTS]),
            e.at >= since,
        )
        if before is not None:
            query = query.where(e.idx < before)
        with self._engine.connect() as conn:
            return list(conn.execute(query.order_by(e.idx.desc()).limit(limit + 1)).all())


def _shown(row: Any) -> dict[str, Any]:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=dt.UTC)
    return {
        "audit_index": int(row.idx),
        "at": at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "event": row.event,
        "reason_code": row.reason_code,
        "reason": explain(row.reason_code),
        "detail": row.detail,
        "request_sha256": row.request_hash,
        "operator": row.operator,
        "service_item": row.service_item,
        "case": row.case_number,
        "resource": row.resource,
    }
