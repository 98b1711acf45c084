"""Demo history: a quarter and a half of synthetic service in the demo district, written as
audit entries, so that ``gateway report quarter`` shows a full report with a change from the
quarter before on a fresh demo district.

Only for the demo: the entries are written through the audit log (they are in the Merkle tree
like any other; ``gateway demo --history`` then signs a checkpoint over them, as a running
gateway's checkpoint loop would, so that a report covers them with no server), dated in the
past, and every one says what it is — operator ``demo-history``, reason ``演示数据（合成）``.
They follow the demo catalogue: each service item's own department, its shared materials
and the grants that cover them, and for a company about half of its cases verify its 营业执照
online (mostly valid); the keyed subjects are the demo population's, keyed with the
gateway's HMAC key.
Deterministic for a given ``now`` (the same seed draws the same history).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from typing import Any

from gateway.audit.entry import AuditEntry, Outcome
from gateway.core.policy import DISTRICT_TZ, PolicySet
from gateway.core.protocol import AuditEvent
from gateway.demo.licences import BUSINESS_LICENCE
from gateway.demo.population import companies, people

__all__ = ["OPERATOR", "history_entries"]

OPERATOR = "demo-history"
_REASON = "演示数据（合成）"
_SEED = 20261001
#: The verdicts of the history's licence verifications, and how often each comes up.
_VERDICTS = ("valid", "suspended", "revoked", "expired", "seal-invalid", "forged", "not-found")
_VERDICT_WEIGHTS = (86, 3, 3, 3, 2, 1, 2)


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def history_entries(
    policy: PolicySet, *, now: dt.datetime, hash_subject: Callable[[str, str], str]
) -> list[AuditEntry]:
    """Synthetic entries from the start of the previous quarter up to ``now``, in time order."""
    rng = random.Random(_SEED)
    today = now.astimezone(DISTRICT_TZ).date()
    this_quarter = _quarter_start(today)
    start = _quarter_start(this_quarter - dt.timedelta(days=1))
    grants = {(g.consumer, g.resource): g for g in policy.grants.values()}
    # Every (item, material resource) a grant lets the item's own department read.
    plans = []
    for item in policy.items.values():
        shared = [
            m.resource
            for m in item.materials
            if m.resource is not None
            and (item.department, m.resource) in grants
            and item.code in grants[(item.department, m.resource)].items
        ]
        if item.materials:
            plans.append((item, shared))
    if not plans:
        return []
    firms, persons = companies(), people()
    out: list[AuditEntry] = []
    day = start
    case_no = 0
    while day < today:
        # More service in the current quarter than in the one before: the change shows.
        per_day = rng.randint(2, 5) if day >= this_quarter else rng.randint(1, 3)
        if day.weekday() >= 5:
            per_day = 0
        for n in range(per_day):
            item, shared = rng.choice(plans)
            at = dt.datetime.combine(day, dt.time(9 + n, rng.randint(0, 59)), DISTRICT_TZ)
            case_no += 1
            case = f"DEMO-{day:%Y%m%d}-{case_no:04d}"
            resource = policy.resources[shared[0]] if shared else None
            kind = resource.subject if resource is not None else "uscc"
            subject = rng.choice(firms).uscc if kind == "uscc" else rng.choice(persons).id_number
            keyed = hash_subject(str(kind), subject)
            common: dict[str, Any] = {
                "department": item.department,
                "operator": OPERATOR,
                "service_item": item.code,
                "case_number": case,
                "reason": _REASON,
                "policy_version": policy.version,
                "request_id": f"demo-history-{case_no}",
            }
            bring = sum(1 for m in item.materials if m.resource is None)
            out.append(
                AuditEntry(
                    at=at,
                    event=AuditEvent.MANIFEST_LISTED,
                    decision=Outcome.ALLOWED,
                    subject_hmac=keyed,
                    detail=json.dumps({"available": len(shared), "bring": bring, "not-granted": 0}),
                    **common,
                )
            )
            for k, rid in enumerate(shared):
                refused = rng.random() < 0.08
                out.append(
                    AuditEntry(
                        at=at + dt.timedelta(minutes=2 + k),
                        event=AuditEvent.LOOKUP_REFUSED if refused else AuditEvent.LOOKUP_RELEASED,
                        decision=Outcome.REFUSED if refused else Outcome.ALLOWED,
                        resource=rid,
                        subject_hmac=keyed,
                        grant_id=grants[(item.department, rid)].id,
                        reason_code=rng.choice(["source-timeout", "source-failed"])
                        if refused
                        else None,
                        **common,
                    )
                )
            if kind == "uscc" and rng.random() < 0.5:
                # The clerk verifies the applicant's 营业执照 online instead of asking for the
                # paper: mostly valid, now and then one that is not.
                verdict = rng.choices(_VERDICTS, weights=_VERDICT_WEIGHTS)[0]
                out.append(
                    AuditEntry(
                        at=at + dt.timedelta(minutes=7),
                        event=AuditEvent.VERIFICATION_PERFORMED,
                        decision=Outcome.ALLOWED,
                        resource=f"licence:{BUSINESS_LICENCE.code}",
                        subject_hmac=keyed,
                        reason_code=verdict,
                        detail=f"licence_id (demo): {verdict}",
                        **common,
                    )
                )
            if rng.random() < 0.15:  # a clerk asks for a purpose no grant covers
                out.append(
                    AuditEntry(
                        at=at + dt.timedelta(minutes=9),
                        event=AuditEvent.LOOKUP_REFUSED,
                        decision=Outcome.REFUSED,
                        resource="criminal-record",
                        subject_hmac=keyed,
                        reason_code="not-shared",
                        **common,
                    )
                )
        day += dt.timedelta(days=1)
    return out
