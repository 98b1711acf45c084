"""Reviewing a policy set before it goes live, and explaining one decision of it.

:func:`check_policy` reports what stops the files from loading (errors) and what loads but
is probably not meant (warnings), each at its file and line, for ``gateway policy check``.
:func:`explain_decision` says how :meth:`PolicySet.decide` answers one request and why,
grant by grant, as plain JSON-able data for ``gateway policy explain`` and the HTTP API.
Both are pure: the date or time they judge by is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.policy import (
    DISTRICT_TZ,
    POLICY_FILES,
    Grant,
    ParsedPolicyTexts,
    PolicySet,
    Role,
    SharingClass,
    parse_policy_texts,
)
from gateway.errors import InvalidInput, PolicyDenied

__all__ = [
    "CheckReport",
    "Finding",
    "Severity",
    "check_policy",
    "explain_decision",
]


class Severity(enum.StrEnum):
    """How bad a finding is: errors stop the set from being used, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of :func:`check_policy`, located in the policy files."""

    severity: Severity
    file: str
    line: int | None
    field: str  # e.g. "grant 'g-x'.valid_until"; empty for the file as a whole
    message: str

    @property
    def location(self) -> str:
        """``file:line`` (just the file when there is no line to point at)."""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def __str__(self) -> str:
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{self.severity} {self.location} {what}"

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-able data."""
        return {
            "severity": str(self.severity),
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Every finding about a policy set, in file and line order."""

    findings: tuple[Finding, ...]
    #: The version the set would have in force; ``None`` if it cannot be loaded at all.
    policy_version: str | None

    @property
    def errors(self) -> list[Finding]:
        """The findings that stop the set from loading or make a grant useless."""
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """The findings worth a reviewer's look that do not stop the set."""
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """Whether there is no error."""
        return not self.errors

    def summary(self) -> str:
        """One line: how many errors and warnings."""
        e, w = len(self.errors), len(self.warnings)
        counts = f"{e} error{'' if e == 1 else 's'}, {w} warning{'' if w == 1 else 's'}"
        return counts + (f" (policy version {self.policy_version})" if self.policy_version else "")

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "ok": self.ok,
            "policy_version": self.policy_version,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.as_dict() for f in self.findings],
        }


# --- the check ------------------------------------------------------------------------------


def check_policy(texts: Mapping[str, str], *, today: dt.date) -> CheckReport:
    """Check the policy files' ``texts`` (by file name) as of the district date ``today``.

    Errors: every problem that stops the set from loading, and grants of conditional
    resources without an approval (they load, but refuse every lookup). Warnings: grants
    expired or not yet in force; grants that duplicate an earlier one or are shadowed by
    it (never decide anything); materials of service items that no usable grant supplies;
    provider departments whose resources nobody may read.
    """
    parsed = parse_policy_texts(texts)
    findings = [Finding(Severity.ERROR, p.file, p.line, p.field, p.reason) for p in parsed.problems]
    policy = parsed.policy
    if policy is not None:
        check = _Check(policy, parsed, today)
        findings += check.approvals()
        findings += check.validity()
        findings += check.overlaps()
        findings += check.materials()
        findings += check.providers()
    order = {name: n for n, name in enumerate(POLICY_FILES)}
    findings.sort(key=lambda f: (order.get(f.file, len(order)), f.line or 0, f.severity))
    version = policy.version if policy is not None and not parsed.problems else None
    return CheckReport(tuple(findings), version)


class _Check:
    """The checks beyond loading, on a set that could at least be decoded."""

    def __init__(self, policy: PolicySet, parsed: ParsedPolicyTexts, today: dt.date) -> None:
        self.policy = policy
        self.parsed = parsed
        self.today = today

    def _grant(self, severity: Severity, g: Grant, field: str, message: str) -> Finding:
        line = self.parsed.line_of("grant", g.id, *field.split("."))
        return Finding(severity, "grants.toml", line, f"grant {g.id!r}.{field}", message)

    def _needs_approval(self, g: Grant) -> bool:
        res = self.policy.resources.get(g.resource)
        return res is not None and res.sharing is SharingClass.CONDITIONAL and g.approval is None

    def _unusable(self, g: Grant) -> str | None:
        """Why ``g`` allows no lookup today, or ``None`` if it may allow some."""
        res = self.policy.resources.get(g.resource)
        if res is None or res.sharing is SharingClass.NOT_SHARED:
            return "invalid"
        if self._needs_approval(g):
            return "no approval"
        if g.valid_until is not None and g.valid_until < self.today:
            return f"expired on {g.valid_until}"
        if g.valid_from is not None and g.valid_from > self.today:
            return f"in force from {g.valid_from}"
        return None

    def approvals(self) -> list[Finding]:
        """Grants of conditional resources without an approval: they refuse everything."""
        return [
            self._grant(
                Severity.ERROR,
                g,
                "approval",
                f"resource {g.resource!r} is conditional (有条件共享), so the grant needs an "
                "approval (by, on, document); without one every lookup under it is refused "
                "(approval-missing)",
            )
            for g in self.policy.grants.values()
            if self._needs_approval(g)
        ]

    def validity(self) -> list[Finding]:
        """Grants expired before ``today`` or not yet in force on it."""
        findings: list[Finding] = []
        for g in self.policy.grants.values():
            if g.valid_until is not None and g.valid_until < self.today:
                findings.append(
                    self._grant(
                        Severity.WARNING,
                        g,
                        "valid_until",
                        f"the grant expired on {g.valid_until}: lookups under it are refused "
                        "(grant-expired)",
                    )
                )
            if g.valid_from is not None and g.valid_from > self.today:
                findings.append(
                    self._grant(
                        Severity.WARNING,
                        g,
                        "valid_from",
                        f"the grant is in force only from {g.valid_from}: until then lookups "
                        "under it are refused (grant-expired)",
                    )
                )
        return findings

    def overlaps(self) -> list[Finding]:
        """Grants that repeat an earlier grant of the same pair, or that never decide.

        :meth:`PolicySet.decide` tries the grants of a (consumer, resource) pair in file
        order and the first that allows the request wins, so a grant is dead when an
        earlier one allows every request it allows.
        """
        pairs: dict[tuple[str, str], list[Grant]] = {}
        for g in self.policy.grants.values():
            pairs.setdefault((g.consumer, g.resource), []).append(g)
        findings: list[Finding] = []
        for grants in pairs.values():
            for n, later in enumerate(grants):
                for earlier in grants[:n]:
                    message = self._overlap(earlier, later)
                    if message is not None:
                        findings.append(self._grant(Severity.WARNING, later, "id", message))
                        break
        return findings

    def _overlap(self, a: Grant, b: Grant) -> str | None:
        where = f"grant {a.id!r} (line {self.parsed.line_of('grant', a.id, 'id')})"
        if set(a.fields) == set(b.fields) and set(a.items) == set(b.items):
            return f"names the same consumer, resource, fields and items as {where}"
        if self._unusable(a) in ("invalid", "no approval") or not _covers(a, b):
            return None
        message = (
            f"never decides anything: {where} comes first for this consumer and resource "
            "and allows every request this grant allows"
        )
        if a.max_subjects_per_day is not None and (
            b.max_subjects_per_day is None or b.max_subjects_per_day > a.max_subjects_per_day
        ):
            # The quota is counted against the deciding grant only, so the later grant is
            # no fallback once the earlier one's quota is spent.
            message += f"; its limit of {a.max_subjects_per_day} subjects a day applies instead"
        if a.masks != b.masks:
            message += "; its masks apply instead"
        return message

    def materials(self) -> list[Finding]:
        """Materials of service items that come from a resource no usable grant supplies
        for that item: the applicant still has to bring them."""
        findings: list[Finding] = []
        grants = list(self.policy.grants.values())
        for item in self.policy.items.values():
            for n, m in enumerate(item.materials):
                res = None if m.resource is None else self.policy.resources.get(m.resource)
                if res is None:
                    continue  # a plain material, or an unknown resource (a load error)
                naming = [g for g in grants if g.resource == res.id and item.code in g.items]
                if res.sharing is SharingClass.NOT_SHARED:
                    why = f"resource {res.id!r} is not-shared, so no grant can supply it"
                elif not naming:
                    why = f"no grant for resource {res.id!r} names this item"
                elif all(self._unusable(g) for g in naming):
                    unusable = ", ".join(f"{g.id} ({self._unusable(g)})" for g in naming)
                    why = f"the grants for {res.id!r} that name this item allow nothing today: "
                    why += unusable
                else:
                    continue
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "catalogue.toml",
                        self.parsed.line_of("item", item.code, "materials", n),
                        f"item {item.code!r}.materials[{n}]",
                        f"material {m.name!r}: {why}; applicants must still bring it",
                    )
                )
        return findings

    def providers(self) -> list[Finding]:
        """Departments with the provider role whose resources nobody may read today."""
        findings: list[Finding] = []
        for d in self.policy.departments.values():
            if Role.PROVIDER not in d.roles:
                continue
            own = [r.id for r in self.policy.resources.values() if r.provider == d.id]
            if not own:
                why = "provides no catalogued resource"
            elif not any(
                g.resource in own and self._unusable(g) is None for g in self.policy.grants.values()
            ):
                why = f"no grant in force lets anyone read its resources ({', '.join(own)})"
            else:
                continue
            findings.append(
                Finding(
                    Severity.WARNING,
                    "departments.toml",
                    self.parsed.line_of("department", d.id, "roles"),
                    f"department {d.id!r}.roles",
                    f"has the provider role but {why}",
                )
            )
        return findings


def _covers(a: Grant, b: Grant) -> bool:
    """Whether grant ``a`` allows every request that ``b`` allows (see ``PolicySet._check``)."""
    if not (set(a.fields) >= set(b.fields) and set(a.items) >= set(b.items)):
        return False
    if a.valid_from is not None and (b.valid_from is None or b.valid_from < a.valid_from):
        return False
    if a.valid_until is not None and (b.valid_until is None or b.valid_until > a.valid_until):
        return False
    if a.office_hours is None:
        return True
    h, k = a.office_hours, b.office_hours
    return k is not None and set(h.days) >= set(k.days) and h.start <= k.start and h.end >= k.end


# --- explaining one decision -----------------------------------------------------------------


def explain_decision(
    policy: PolicySet,
    *,
    consumer: str,
    resource: str,
    item: str,
    fields: Sequence[str] | None = None,
    now: dt.datetime,
) -> dict[str, Any]:
    """How ``policy`` decides a request and why, as JSON-able data.

    ``fields`` ``None`` asks whether any grant lets ``consumer`` read ``resource`` for
    ``item`` (the manifest's question). A naive ``now`` is taken as district time. Raises
    :class:`InvalidInput` (field ``consumer``, ``resource``, ``item`` or ``fields``) for
    names the set does not know. The answer::

        {"policy_version": str, "at": ISO datetime (district time),
         "request": {"consumer", "resource", "item", "fields": [str] | None},
         "resource": {"id", "name", "provider", "sharing", "legal_basis"},
         "item": {"code", "name", "department"},
         "decision": {"allowed": bool, "grant": str | None, "reason_code": str | None,
                      "detail": str | None, "fields": [str] | None,
                      "masks": {field: spec}, "max_subjects_per_day": int | None},
         "candidates": [{"grant", "allows": bool, "reason_code", "detail", "fields",
                         "items", "valid_from", "valid_until", "approval",
                         "office_hours", "max_subjects_per_day", "masks", "note"}]}

    ``candidates`` are the grants for this consumer and resource in the order ``decide``
    tries them; each says whether it allows the request or which refusal it gives.
    """
    if consumer not in policy.departments:
        raise InvalidInput("consumer", f"{consumer!r} is not a registered department")
    res = policy.resources.get(resource)
    if res is None:
        raise InvalidInput("resource", f"{resource!r} is not in the catalogue")
    service_item = policy.items.get(item)
    if service_item is None:
        raise InvalidInput("item", f"{item!r} is not a catalogued service item code")
    requested = None if fields is None else list(dict.fromkeys(fields))
    unknown = [f for f in requested or () if f not in res.field_names]
    if unknown:
        raise InvalidInput("fields", f"not fields of {resource!r}: {', '.join(unknown)}")
    local = (now if now.tzinfo is not None else now.replace(tzinfo=DISTRICT_TZ)).astimezone(
        DISTRICT_TZ
    )
    decision: dict[str, Any]
    try:
        d = policy.decide(
            consumer=consumer, resource=res, fields=requested, item=service_item, now=local
        )
    except PolicyDenied as exc:
        decision = {
            "allowed": False,
            "grant": None,
            "reason_code": str(exc.reason_code),
            "detail": exc.detail,
            "fields": None,
            "masks": {},
            "max_subjects_per_day": None,
        }
    else:
        decision = {
            "allowed": True,
            "grant": d.grant_id,
            "reason_code": None,
            "detail": None,
            "fields": list(d.fields),
            "masks": {name: mask.spec for name, mask in d.masks.items() if name in d.fields},
            "max_subjects_per_day": d.max_subjects_per_day,
        }
    candidates = [
        {
            "grant": g.id,
            "allows": refusal is None,
            "reason_code": None if refusal is None else str(refusal.code),
            "detail": None if refusal is None else refusal.detail,
            **_grant_terms(g),
        }
        for g, refusal in policy.explain(
            consumer=consumer, resource=res, fields=requested, item=service_item, now=local
        )
    ]
    return {
        "policy_version": policy.version,
        "at": local.isoformat(),
        "request": {
            "consumer": consumer,
            "resource": resource,
            "item": item,
            "fields": requested,
        },
        "resource": {
            "id": res.id,
            "name": res.name,
            "provider": res.provider,
            "sharing": str(res.sharing),
            "legal_basis": res.legal_basis,
        },
        "item": {
            "code": service_item.code,
            "name": service_item.name,
            "department": service_item.department,
        },
        "decision": decision,
        "candidates": candidates,
    }


def _iso(value: dt.date | dt.time | None) -> str | None:
    return None if value is None else value.isoformat()


def _grant_terms(g: Grant) -> dict[str, Any]:
    hours = g.office_hours
    return {
        "fields": list(g.fields),
        "items": list(g.items),
        "valid_from": _iso(g.valid_from),
        "valid_until": _iso(g.valid_until),
        "approval": None
        if g.approval is None
        else {
            "by": g.approval.by,
            "on": g.approval.on.isoformat(),
            "document": g.approval.document,
        },
        "office_hours": None
        if hours is None
        else {
            "start": hours.start.isoformat(),
            "end": hours.end.isoformat(),
            "days": [str(d) for d in hours.days],
        },
        "max_subjects_per_day": g.max_subjects_per_day,
        "masks": dict(g.masks),
        "note": g.note,
    }
