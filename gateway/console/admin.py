"""The administrators' console pages under ``/console/admin``.

Departments and their registered keys (each active key with a revoke form), the e-seals with
their status history (suspend, reinstate, revoke with a reason), and the policy set in force
with a form explaining one decision grant by grant. Administrators only: any other role gets
the 403 page. Every form that changes something carries the session's CSRF token; a wrong
one answers the console's 403 page, changes nothing and is audited. The acts themselves go
through the key administration and the licensing service, which audit them
with the console username as the operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect

from gateway.accounts import Role, Session
from gateway.console.admin_text import ADMIN_TEXT, KEY_STATUSES, REASON_CODES, SEAL_STATUSES
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
from gateway.core.policy import PolicySet
from gateway.core.policy_check import explain_decision
from gateway.core.seals import RevocationReason, Seal, SealStatus
from gateway.errors import InvalidInput

__all__ = ["ROUTES"]

DEPARTMENTS = "/console/admin/departments"
SEALS = "/console/admin/seals"
POLICY = "/console/admin/policy"

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
    return _utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- departments and keys -------------------------------------------------------------------


def _registry_view(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The registry as the page shows it (times in the district's words)."""
    return [
        {
            **d,
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
    listed = _registry_view(await console.keys.registry())
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
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Every department, its roles and its keys; a revoke form per active key."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    return await _departments_page(request, console, session)


@post(DEPARTMENTS + "/revoke-key", include_in_schema=False, status_code=200)
async def revoke_key(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Revoke one department key (CSRF-checked; audited by :class:`KeyAdministration`)."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, DEPARTMENTS)
    a = ADMIN_TEXT[_lang(request)]
    department, kid, reason = (_text(form, n) for n in ("department", "kid", "reason"))
    if not reason:
        return await _departments_page(
            request, console, session, status=400, error=a["reason_required"]
        )
    try:
        await console.keys.revoke(
            department=department, kid=kid, reason=reason, by=session.username, now=_now()
        )
    except InvalidInput:
        return await _departments_page(
            request, console, session, status=400, error=a["no_such_key"]
        )
    return await _departments_page(
        request, console, session, notice=f"{a['key_revoked']}: {department} · {kid}"
    )


# --- seals ----------------------------------------------------------------------------------


def _seal_view(seal: Seal, lang: str) -> dict[str, Any]:
    a = ADMIN_TEXT[lang]
    return {
        "seal_id": seal.seal_id,
        "name": seal.name,
        "type": seal.type,
        "owner": seal.owner,
        "owner_uscc": seal.owner_uscc,
        "alg": seal.alg,
        "valid_from": seal.valid_from.isoformat(),
        "valid_until": seal.valid_until.isoformat(),
        "status": str(seal.status),
        "status_words": SEAL_STATUSES[lang].get(str(seal.status), str(seal.status)),
        "actions": [(action, a[action]) for action in _SEAL_ACTIONS[seal.status]],
        "history": [
            {
                "at": _when(event.at),
                "status": SEAL_STATUSES[lang].get(str(event.status), str(event.status)),
                "by": event.by,
                "reason": event.reason,
                "revocation_reason": str(event.revocation_reason or ""),
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
        revocation_reasons=[str(r) for r in RevocationReason],
        notice=notice,
        error=error,
    )


@get(SEALS, include_in_schema=False)
async def seals_page(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Every seal with its history; a status change form per seal that can still change."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    return await _seals_page(request, console, session)


@post(SEALS, include_in_schema=False, status_code=200)
async def change_seal(
    request: AnyRequest, console: NamedDependency[ConsoleServices]
) -> Response[Any]:
    """Suspend, reinstate or revoke a seal with a reason (CSRF-checked; audited)."""
    session = await _admin(request, console)
    if isinstance(session, Response):
        return session
    form = await request.form()
    if not console.accounts.csrf_ok(session, _text(form, "csrf_token")):
        return await _csrf_refused(request, console, session, SEALS)
    a = ADMIN_TEXT[_lang(request)]
    seal_id, action, reason = (_text(form, n) for n in ("seal_id", "action", "reason"))
    if not reason:
        return await _seals_page(request, console, session, status=400, error=a["reason_required"])
    why = _text(form, "revocation_reason") if action == "revoke" else ""
    try:
        seal = await console.licensing.change_seal(
            seal_id,
            action=action,
            reason=reason,
            revocation_reason=why or None,
            by=session.username,
            now=_now(),
        )
    except InvalidInput as exc:
        return await _seals_page(
            request, console, session, status=400, error=f"{a['seal_refused']}: {exc.reason}"
        )
    words = SEAL_STATUSES[_lang(request)].get(str(seal.status), str(seal.status))
    return await _seals_page(
        request, console, session, notice=f"{a['seal_changed']}: {seal_id} → {words}"
    )


# --- the policy set and explain -------------------------------------------------------------


def _policy_view(policy: PolicySet, lang: str) -> dict[str, Any]:
    a = ADMIN_TEXT[lang]
    resources = [
        {
            "id": r.id,
            "name": r.name,
            "provider": r.provider,
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
            days = ",".join(str(d) for d in h.days)
            conditions.append(
                f"{a['office_hours']}: {days} {h.start.isoformat()}–{h.end.isoformat()}"
            )
        if g.max_subjects_per_day is not None:
            conditions.append(f"{a['max_per_day']}: {g.max_subjects_per_day}")
        if g.masks:
            masks = ", ".join(f"{k}={v}" for k, v in g.masks.items())
            conditions.append(f"{a['masks']}: {masks}")
        grants.append(
            {
                "id": g.id,
                "consumer": g.consumer,
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
        consumers=sorted(policy.departments),
        form=form,
        explained=explained,
        notice=None,
        error=error,
    )


ROUTES = [departments_page, revoke_key, seals_page, change_seal, policy_page]
