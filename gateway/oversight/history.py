"""Citizens' access history: who read a person's or a company's data, when, for what.

The portal department (the service centre) asks ``GET /v1/audit/subjects/{type:id}/accesses``
on a citizen's behalf with a signed token in the ``Request-Token`` header::

    header: {"alg": …, "typ": "yiwang-access-history+jwt", "kid": …}
    claims: iss, aud, iat, exp, jti,
            "operator": "portal-7",
            "purpose": {"item": "000198001000", "case": "WEB-2026-0001", "reason": "本人查询"},
            "subject": {"type": "resident-id", "id": "…"}     # must be the path's subject

It is served like any shared resource: the catalogue has an access-history resource per
subject type (adapter ``audit``, see :mod:`gateway.oversight.adapter`), and the policy set in force
decides with a grant naming the department, the resource and the service item; without one
the answer is 403 with the policy's reason. Every refusal is audited
(``audit:access-history:refused``), and so is the read itself
(``audit:access-history:read``) before the answer — a JWT signed by the gateway (typ
``yiwang-access-history-result+jwt``) — leaves. Reads under an embargo in force are not shown.

An access names the department (with its name), never the operator; only allowed reads of
the subject's data appear (released lookups and licence verifications), never refusals.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

import msgspec

from gateway.cache import Admission
from gateway.core.lookup import Purpose
from gateway.core.policy import Decision, PolicySet, ReasonCode, Resource
from gateway.core.protocol import AuditEvent, TokenType
from gateway.core.sources import SourceAdapter
from gateway.core.wire import Name, convert
from gateway.errors import InvalidInput, PolicyDenied, SourceFailed, SourceTimeout
from gateway.exchange import Admit, Done, Exchange, Received, SignedAnswer, SignedExchanges
from gateway.oversight.search import decode_cursor, encode_cursor, parse_subject_text

__all__ = [
    "HISTORY",
    "Access",
    "AccessHistoryService",
    "AccessHistorySource",
    "AccessPage",
    "HistoryClaims",
]

ADAPTER = "audit"


@dataclass(frozen=True, slots=True)
class Access:
    """One allowed read of the subject's data, as the audit log recorded it."""

    index: int
    event: str
    values: dict[str, Any]  # at, department, service_item, case_number, resource, fields


@dataclass(frozen=True, slots=True)
class AccessPage:
    """Accesses newest first; ``before`` continues with older ones (None: there are none)."""

    accesses: list[Access]
    before: int | None


@runtime_checkable
class AccessHistorySource(Protocol):
    """What an access-history resource's adapter offers besides ``fetch`` (see
    :mod:`gateway.oversight.adapter`): the accesses of a keyed subject, embargoes applied."""

    async def accesses(
        self, subject: str | Sequence[str], *, before: int | None = None, limit: int = 100
    ) -> AccessPage: ...

    async def fetch(self, subject: str) -> Any: ...

    async def close(self) -> None: ...


_Name = Name


class _Subject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: _Name
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class HistoryClaims(msgspec.Struct, frozen=True):
    operator: _Name
    purpose: Purpose
    subject: _Subject


def _parse(_department: str, claims: dict[str, Any]) -> HistoryClaims:
    return convert(claims, HistoryClaims)


def history_resource(policy: PolicySet, subject_type: str) -> Resource:
    """The catalogued access-history resource for subjects of ``subject_type``."""
    for resource in policy.resources.values():
        if resource.source.get("adapter") == ADAPTER and resource.subject == subject_type:
            return resource
    raise PolicyDenied(
        ReasonCode.NO_GRANT, f"no access history of {subject_type} subjects is catalogued"
    )


HISTORY = Exchange(
    request=TokenType.ACCESS_HISTORY,
    answer=TokenType.ACCESS_HISTORY_RESULT,
    parse=_parse,
    refused=AuditEvent.HISTORY_REFUSED,
    done=AuditEvent.HISTORY_READ,
)


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str
    ident: str
    before: int | None
    resource: Resource
    decision: Decision


class AccessHistoryService:
    """Answers the portal's signed access-history requests."""

    def __init__(
        self,
        *,
        exchanges: SignedExchanges,
        adapters: Callable[[PolicySet], Mapping[str, SourceAdapter]],
        source_deadline: float = 10.0,
    ) -> None:
        self._exchanges = exchanges
        self._adapters = adapters
        self._deadline = source_deadline

    async def accesses(
        self,
        subject: str,
        *,
        token: bytes,
        now: float,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SignedAnswer:
        """The subject's accesses, newest first, as a signed answer; refusals audited."""

        def check(received: Received[HistoryClaims]) -> Admit:
            claims, policy, draft = received.request, received.policy, received.audit
            draft.service_item = claims.purpose.item
            draft.case_number = claims.purpose.case
            draft.reason = claims.purpose.reason
            kind, ident = parse_subject_text(subject)
            draft.subject_hmac = self._exchanges.hash_subject(kind, ident)
            if (claims.subject.type, claims.subject.id) != (kind, ident):
                raise InvalidInput("subject", "does not match the subject in the path")
            before = None
            if cursor:
                order, before = decode_cursor(cursor)
                if order != "desc":
                    raise InvalidInput("cursor", "is not a cursor of an access history")
            if not 1 <= limit <= 500:
                raise InvalidInput("limit", "must be 1..500")
            item = policy.service_item(claims.purpose.item)
            resource = history_resource(policy, kind)
            draft.resource = resource.id
            decision = policy.decide(
                consumer=received.token.department,
                resource=resource,
                fields=None,
                item=item,
                now=draft.at,
            )
            draft.grant_id = decision.grant_id
            draft.fields = decision.fields
            return Admit(
                case=claims.purpose.case, plan=_Plan(kind, ident, before, resource, decision)
            )

        async def work(received: Received[HistoryClaims], admit: Admit, _a: Admission) -> Done:
            plan: _Plan = admit.plan
            policy = received.policy
            source = self._adapters(policy).get(plan.resource.id)
            if not isinstance(source, AccessHistorySource):
                raise SourceFailed(plan.resource.id, "no access-history adapter")
            # The subject's entries under every keying: those written before a change of
            # GATEWAY_AUDIT_SUBJECT_KEYING are its accesses too.
            tags = self._exchanges.hash_subject.tags(plan.kind, plan.ident)
            try:
                page = await asyncio.wait_for(
                    source.accesses(tags, before=plan.before, limit=limit),
                    self._deadline,
                )
            except TimeoutError:
                raise SourceTimeout(
                    plan.resource.id, f"no answer within {self._deadline:g} s"
                ) from None
            accesses = [
                self._shown(policy, a.index, a.event, plan.decision.release(a.values))
                for a in page.accesses
            ]
            next_cursor = None if page.before is None else encode_cursor("desc", page.before)
            return Done(
                {
                    "subject": {"type": plan.kind, "id": plan.ident},
                    "accesses": accesses,
                    "next": next_cursor,
                    "purpose": msgspec.structs.asdict(received.request.purpose),
                    "grant": plan.decision.grant_id,
                    "policy_version": policy.version,
                },
                audit={
                    "response_hash": hashlib.sha256(
                        msgspec.json.encode(accesses, order="sorted")
                    ).hexdigest(),
                    "detail": f"{len(accesses)} accesses" + (" (more)" if next_cursor else ""),
                },
            )

        return await self._exchanges.run(HISTORY, token, now=now, check=check, work=work)

    @staticmethod
    def _shown(
        policy: PolicySet, index: int, event: str, released: dict[str, Any]
    ) -> dict[str, Any]:
        """An access as the portal shows it: the granted fields, with names for the codes."""
        out: dict[str, Any] = {
            "index": index,
            "kind": "verification" if event.startswith("licence:") else "lookup",
            **released,
        }
        department = released.get("department")
        if department is not None:
            dep = policy.departments.get(department)
            out["department_name"] = dep.name if dep else None
        code = released.get("service_item")
        if code is not None:
            item = policy.items.get(code)
            out["service_item_name"] = item.name if item else None
        rid = released.get("resource")
        if rid is not None:
            out["resource_name"] = _resource_name(policy, rid)
        fields = released.get("fields")
        if isinstance(fields, str):
            out["fields"] = [f for f in fields.split(",") if f]
        return out


def _resource_name(policy: PolicySet, rid: str) -> str | None:
    resource = policy.resources.get(rid)
    if resource is not None:
        return resource.name
    if rid.startswith("licence:"):  # a verification names the licence type
        type_code = rid.removeprefix("licence:")
        for r in policy.resources.values():
            if r.source.get("adapter") == "licence" and r.source.get("type_code") == type_code:
                return r.name
    return None
