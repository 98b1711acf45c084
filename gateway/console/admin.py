"""The administrators' console pages under ``/console/admin``.

Departments and their registered keys, the e-seals with their status history, and the
policy set in force with a form explaining one decision grant by grant. Administrators only:
any other role gets the 403 page.

A change goes through a page of its own before it is done: revoking a key or changing a
seal's status (suspend, reinstate, revoke) is first a GET of a confirmation page that says
what will happen (nothing is preselected: no action, no revocation reason), whose form then
POSTs the change and is answered 303 to the list, which shows the result — so a reload never
sends it again. Every form that changes something carries the session's CSRF token; a wrong
one answers the console's 403 page, changes nothing and is audited. The acts themselves go
through the key administration and the licensing service, which audit them with the console
username as the operator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect

from gateway.accounts import Role, Session
from gateway.console.admin_text import ADMIN_TEXT, KEY_STATUSES, REASON_CODES, SEAL_STATUSES
from gateway.console.officers_text import (
    DAY_NAMES,
    DEPARTMENT_ROLES,
    REVOCATION_REASONS,
    SEAL_TYPES,
)
from gateway.console.routes import (
    AnyRequest,
    _csrf_refused,
    _current_session,
    _lang,
    _now,
    _page,
    _text,
)
from gateway.console.services import ConsoleServices
from gateway.core.keyring import KeyStatus
from gateway.core.policy import DISTRICT_TZ, PolicySet
from gateway.core.policy_check import explain_decision
from gateway.core.seals import RevocationReason, Seal, SealStatus
from gateway.errors import InvalidInput

__all__ = ["ROUTES"]

DEPARTMENTS = "/console/admin/departments"
REVOKE_KEY = DEPARTMENTS + "/revoke-key"
SEALS = "/console/admin/seals"
CONFIRM_SEAL = SEALS + "/confirm"
POLICY = "/console/admin/policy"

#: The revocation reasons as the form offers them: the least harmful first, the one that
#: invalidates every licence the seal ever sealed last (and none chosen beforehand).
REVOCATION_ORDER = (
    RevocationReason.SUPERSEDED,
    RevocationReason.CESSATION,
    RevocationReason.OTHER,
    RevocationReason.KEY_COMPROMISE,
)

#: Which actions each seal status allows (revoked is final).
_SEAL_ACTIONS = {
    SealStatus.ACTIVE: ("suspend", "revoke"),
    SealStatus.SUSPENDED: ("reinstate", "revoke"),
    SealStatus.REVOKED: (),
}


async def _admin(request: AnyRequest, console: ConsoleServices) -> Session | Response[Any]:
    """The administrator's session, or the answer instead: the login page, or 403."""
    session = await _current_session(request, console)
    if session is None:
        return Redirect(path="/console/login", status_code=303)
    if session.role is not Role.ADMIN:
        return _page(
            request,
            console,
            "error.html",
            status=403,
            session=session,
            message=ADMIN_TEXT[_lang(request)]["role_refused"],
            back="/console",
        )
    return session


def _admin_page(
    request: AnyRequest,
    console: ConsoleServices,
    template: str,
    session: Session,
    *,
    status: int = 200,
    **context: Any,
) -> Response[str]:
    lang = _lang(request)
    return _page(
        request,
        console,
        template,
        status=status,
        session=session,
        a=ADMIN_TEXT[lang],
        key_statuses=KEY_STATUSES[lang],
        seal_statuses=SEAL_STATUSES[lang],
        **context,
    )


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands timestamps back naive; they were stored in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _when(value: dt.datetime) -> str:
    """Beijing time to the second, as every console page shows time."""
    return f"{_utc(value).astimezone(DISTRICT_TZ):%Y-%m-%d %H:%M:%S}"


# --- departments and keys -------------------------------------------------------------------


def _registry_view(listed: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """The registry as the page shows it (times in Beijing time, roles in words)."""
    roles = DEPARTMENT_ROLES[lang]
    return [
        {
            **d,
            "role_words": [roles.get(str(r), str(r)) for r in d["roles"]],
            "keys": [
                {
                    **k,
                    "active": k["status"] == KeyStatus.ACTIVE,
                    "created_at": _when(k["created_at"]),
                    "updated_at": _when(k["updated_at"]),
                }
                for k in d["keys"]
            ],
        }
        for d in listed
    ]


async def _departments_page(
    request: AnyRequest,
    console: ConsoleServices,
    session: Session,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response[str]:
    listed = _registry_view(await console.keys.registry(), _lang(request))
    return _admin_page(
        request,
        console,
        "admin_departments.html",
        session,
        status=status,
        departments=listed,
        notice=notice,
        error=error,
    )


@get(DEPARTMENTS, include_in_schema=False)
async def departments_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices], revoked: FromQuery[str] = ""
) -> Response[Any]:
    """Every department, its roles and its keys; a link to revoke each active key. After a
    revocation (``?revoked=<kid>``) it says so, if that key is indeed revoked."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    notice = None
    if revoked:
        a = ADMIN_TEXT[_lang(request)]
        for d in await console.keys.registry():
            for k in d["keys"]:
                if k["kid"] == revoked and k["status"] == KeyStatus.REVOKED:
                    notice = f"{a['key_revoked']}: {d['name']} · {k['kid']}"
    return await _departments_page(request, console, session, notice=notice)


async def _key_to_revoke(
    console: ConsoleServices, department: str, kid: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The department and its active key ``kid``, or None."""
    for d in await console.keys.registry():
        if d["id"] == department:
            for k in d["keys"]:
                if k["kid"] == kid and k["status"] == KeyStatus.ACTIVE:
                    return d, k
    return None


async def _confirm_key_page(
    request: AnyRequest,
    console: ConsoleServices,
    session: Session,
    department: str,
    kid: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response[str]:
    a = ADMIN_TEXT[_lang(request)]
    found = await _key_to_revoke(console, department, kid)
    if found is None:
        return await _departments_page(
            request, console, session, status=404, error=a["key_not_active"]
        )
    d, k = found
    return _admin_page(
        request,
        console,
        "admin_confirm_key.html",
        session,
        status=status,
        department=d,
        key={**k, "updated_at": _when(k["updated_at"])},
        notice=None,
        error=error,
    )


@get(REVOKE_KEY, include_in_schema=False)
async def confirm_revoke_key(
    request: AnyRequest,
    console: NamedDependency[ConsoleServices],
    department: FromQuery[str] = "",
    kid: FromQuery[str] = "",
) -> Response[Any]:
    """The confirmation page of a key revocation: what it does, the reason to give."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    return await _confirm_key_page(request, console, session, department[:64], kid[:128])


@post(REVOKE_KEY, include_in_schema=False, status_code=303)
async def revoke_key(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Revoke one department key (CSRF-checked; audited by :class:`KeyAdministration`), then
    303 to the departments page, which shows the result."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, DEPARTMENTS)
    a = ADMIN_TEXT[_lang(request)]
    department, kid, reason = (_text(form, n) for n in ("department", "kid", "reason"))
    if not reason:
        return await _confirm_key_page(
            request, console, session, department, kid, status=400, error=a["reason_required"]
        )
    try:
        await console.keys.revoke(
            department=department, kid=kid, reason=reason, by=session.username, now=_now()
        )
    except InvalidInput:
        return await _departments_page(
            request, console, session, status=400, error=a["no_such_key"]
        )
    return Redirect(path=f"{DEPARTMENTS}?{urlencode({'revoked': kid})}#key-{kid}", status_code=303)


# --- seals ----------------------------------------------------------------------------------


def _seal_view(seal: Seal, lang: str) -> dict[str, Any]:
    a = ADMIN_TEXT[lang]
    reasons = REVOCATION_REASONS[lang]
    return {
        "seal_id": seal.seal_id,
        "name": seal.name,
        "type": seal.type,
        "type_words": SEAL_TYPES[lang].get(seal.type, seal.type),
        "owner": seal.owner,
        "owner_uscc": seal.owner_uscc,
        "alg": seal.alg,
        "valid_from": seal.valid_from.isoformat(),
        "valid_until": seal.valid_until.isoformat(),
        "status": str(seal.status),
        "status_words": SEAL_STATUSES[lang].get(str(seal.status), str(seal.status)),
        "actions": [(action, a[action]) for action in _SEAL_ACTIONS[seal.status]],
        "can_revoke": "revoke" in _SEAL_ACTIONS[seal.status],
        "history": [
            {
                "at": _when(event.at),
                "status": SEAL_STATUSES[lang].get(str(event.status), str(event.status)),
                "by": event.by,
                "reason": event.reason,
                "revocation_reason": ""
                if event.revocation_reason is None
                else reasons.get(str(event.revocation_reason), str(event.revocation_reason)),
            }
            for event in seal.history
        ],
    }


async def _seals_page(
    request: AnyRequest,
    console: ConsoleServices,
    session: Session,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response[str]:
    lang = _lang(request)
    seals = await console.licensing.seals()
    return _admin_page(
        request,
        console,
        "admin_seals.html",
        session,
        status=status,
        seals=[_seal_view(s, lang) for s in sorted(seals, key=lambda s: (s.owner, s.seal_id))],
        revocation_reasons=[(str(r), REVOCATION_REASONS[lang][r]) for r in REVOCATION_ORDER],
        notice=notice,
        error=error,
    )


async def _seal(console: ConsoleServices, seal_id: str) -> Seal | None:
    return next((s for s in await console.licensing.seals() if s.seal_id == seal_id), None)


@get(SEALS, include_in_schema=False)
async def seals_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices], changed: FromQuery[str] = ""
) -> Response[Any]:
    """Every seal with its history; a status change form per seal that can still change.
    After a change (``?changed=<seal_id>``) it says the seal's status now."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    notice = None
    if changed and (seal := await _seal(console, changed[:128])) is not None and seal.history:
        a, lang = ADMIN_TEXT[_lang(request)], _lang(request)
        words = SEAL_STATUSES[lang].get(str(seal.status), str(seal.status))
        notice = f"{a['seal_changed']}: {seal.name} · {seal.seal_id} → {words}"
    return await _seals_page(request, console, session, notice=notice)


@dataclass(frozen=True, slots=True)
class _SealChange:
    """What a seal form asks: which seal, which action, the revocation reason, the reason."""

    seal_id: str
    action: str
    why: str  # the revocation reason (revoke only)
    reason: str

    @classmethod
    def of(cls, form: Mapping[str, Any]) -> _SealChange:
        seal_id, action, why, reason = (
            _text(form, n) for n in ("seal_id", "action", "revocation_reason", "reason")
        )
        return cls(seal_id, action, why if action == "revoke" else "", reason)


async def _seal_change_problem(
    console: ConsoleServices, lang: str, change: _SealChange
) -> tuple[Seal | None, str | None]:
    """The seal, and what is wrong with the asked change (None: it can be confirmed)."""
    a = ADMIN_TEXT[lang]
    seal_id, action, why, reason = change.seal_id, change.action, change.why, change.reason
    seal = await _seal(console, seal_id)
    if seal is None:
        return None, a["no_such_seal"]
    if not action:
        return seal, a["choose_action"]
    if action not in _SEAL_ACTIONS[seal.status]:
        return seal, a["seal_action_not_allowed"]
    if action == "revoke" and why not in {str(r) for r in RevocationReason}:
        return seal, a["choose_revocation_reason"]
    if not reason:
        return seal, a["reason_required"]
    return seal, None


@get(CONFIRM_SEAL, include_in_schema=False)
async def confirm_seal(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The confirmation page of a seal's status change: what it will do, then the form that
    does it. A change that cannot be done goes back to the seals page with why."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    lang = _lang(request)
    a = ADMIN_TEXT[lang]
    change = _SealChange.of(request.query_params)
    action, why = change.action, change.why
    seal, problem = await _seal_change_problem(console, lang, change)
    if seal is None or problem is not None:
        return await _seals_page(request, console, session, status=400, error=problem)
    effect = (
        "confirm_revoke_compromise_effect"
        if why == RevocationReason.KEY_COMPROMISE
        else f"confirm_{action}_effect"
    )
    return _admin_page(
        request,
        console,
        "admin_confirm_seal.html",
        session,
        seal=_seal_view(seal, lang),
        action=action,
        action_words=a[action],
        revocation_reason=why,
        revocation_words=REVOCATION_REASONS[lang].get(why, "") if why else "",
        reason=change.reason,
        effect=a[effect],
        dangerous=action == "revoke",
        button=a[f"confirm_{action}"],
        notice=None,
        error=None,
    )


@post(SEALS, include_in_schema=False, status_code=303)
async def change_seal(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Suspend, reinstate or revoke a seal with a reason (CSRF-checked; audited), as
    confirmed on its page; then 303 to the seals page, which shows the result."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, SEALS)
    lang = _lang(request)
    a = ADMIN_TEXT[lang]
    change = _SealChange.of(form)
    seal_id = change.seal_id
    _, problem = await _seal_change_problem(console, lang, change)
    if problem is not None:
        return await _seals_page(request, console, session, status=400, error=problem)
    try:
        await console.licensing.change_seal(
            seal_id,
            action=change.action,
            reason=change.reason,
            revocation_reason=change.why or None,
            by=session.username,
            now=_now(),
        )
    except InvalidInput as exc:
        return await _seals_page(
            request, console, session, status=400, error=f"{a['seal_refused']}: {exc.reason}"
        )
    return Redirect(
        path=f"{SEALS}?{urlencode({'changed': seal_id})}#seal-{seal_id}", status_code=303
    )


# --- the policy set and explain -------------------------------------------------------------


def _policy_view(policy: PolicySet, lang: str) -> dict[str, Any]:
    a = ADMIN_TEXT[lang]
    names = {d.id: d.name for d in policy.departments.values()}
    resources = [
        {
            "id": r.id,
            "name": r.name,
            "provider": r.provider,
            "provider_name": names.get(r.provider, r.provider),
            "sharing": a.get(f"sharing_{r.sharing}", str(r.sharing)),
            "fields": [f.name for f in r.fields],
            "legal_basis": r.legal_basis,
        }
        for r in sorted(policy.resources.values(), key=lambda r: r.id)
    ]
    grants = []
    for g in policy.grants.values():
        conditions = []
        if g.valid_from is not None:
            conditions.append(f"{a['valid_from']} {g.valid_from.isoformat()}")
        if g.valid_until is not None:
            conditions.append(f"{a['valid_until']} {g.valid_until.isoformat()}")
        if g.approval is not None:
            conditions.append(
                f"{a['approval']}: {g.approval.by} {g.approval.on.isoformat()} "
                f"{g.approval.document}"
            )
        if g.office_hours is not None:
            h = g.office_hours
            days = "、".join(DAY_NAMES[lang].get(str(d), str(d)) for d in h.days)
            conditions.append(
                f"{a['office_hours']}: {days} {h.start.isoformat()}–{h.end.isoformat()}"
            )
        if g.max_subjects_per_day is not None:
            conditions.append(f"{a['max_per_day']}: {g.max_subjects_per_day}")
        grants.append(
            {
                "id": g.id,
                "consumer": g.consumer,
                "consumer_name": names.get(g.consumer, g.consumer),
                "masks": sorted(g.masks.items()) if g.masks else [],
                "resource": g.resource,
                "fields": list(g.fields),
                "items": list(g.items),
                "conditions": conditions,
            }
        )
    return {"version": policy.version, "resources": resources, "grants": grants}


def _explained(answer: dict[str, Any], lang: str) -> dict[str, Any]:
    """The explain answer with every refusal said in words."""
    reasons = REASON_CODES[lang]
    decision = answer["decision"]
    return {
        "allowed": decision["allowed"],
        "grant": decision["grant"],
        "fields": decision["fields"] or [],
        "reason": None
        if decision["allowed"]
        else reasons.get(decision["reason_code"], decision["reason_code"]),
        "detail": decision["detail"],
        "resource": answer["resource"],
        "item": answer["item"],
        "at": answer["at"],
        "candidates": [
            {
                "grant": c["grant"],
                "allows": c["allows"],
                "reason": None if c["allows"] else reasons.get(c["reason_code"], c["reason_code"]),
                "detail": c["detail"],
            }
            for c in answer["candidates"]
        ],
    }


_EXPLAIN_FIELDS = ("consumer", "resource", "item", "fields")


@get(POLICY, include_in_schema=False)
async def policy_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """The policy set in force; with ``?consumer=&resource=&item=`` its explained decision."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    lang = _lang(request)
    policy = console.policy.current
    query = request.query_params
    form = {n: str(query.get(n) or "").strip()[:512] for n in _EXPLAIN_FIELDS}
    explained = None
    error = None
    status = 200
    if form["consumer"] or form["resource"] or form["item"]:
        fields = [f.strip() for f in form["fields"].split(",") if f.strip()]
        try:
            answer = explain_decision(
                policy,
                consumer=form["consumer"],
                resource=form["resource"],
                item=form["item"],
                fields=fields or None,
                now=dt.datetime.now(dt.UTC),
            )
        except InvalidInput as exc:
            error = f"{ADMIN_TEXT[lang]['explain_invalid']}: {exc}"
            status = 400
        else:
            explained = _explained(answer, lang)
    return _admin_page(
        request,
        console,
        "admin_policy.html",
        session,
        status=status,
        policy=_policy_view(policy, lang),
        consumers=[(d, policy.departments[d].name) for d in sorted(policy.departments)],
        form=form,
        explained=explained,
        notice=None,
        error=error,
    )


ROUTES = [
    departments_page,
    confirm_revoke_key,
    revoke_key,
    seals_page,
    confirm_seal,
    change_seal,
    policy_page,
]
