"""Synthetic audit entries for measurements at scale: a district's log, months of it.

Entries look like the gateway's own: lookups and verifications of eight departments, a
subject HMAC drawn from a large population (random keys, as the real ones are), case
numbers of each department's caseload, a few refusals, times spread over the months the
log covers. Deterministic for a given seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator

from gateway.audit import AuditEntry, Outcome

__all__ = ["DEPARTMENTS", "synthetic_entries"]

DEPARTMENTS = (
    "market",
    "police",
    "tax",
    "hrss",
    "realestate",
    "service-centre",
    "civil-affairs",
    "data-bureau",
)
_RESOURCES = ("enterprise-registration", "resident-identity", "tax-compliance", "licence")
_EVENTS = (
    ("lookup:record:released", Outcome.ALLOWED),
    ("lookup:record:released", Outcome.ALLOWED),
    ("lookup:record:released", Outcome.ALLOWED),
    ("licence:verification:answered", Outcome.ALLOWED),
    ("lookup:record:refused", Outcome.REFUSED),
)
_EPOCH = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


def synthetic_entries(
    count: int,
    *,
    start: int = 0,
    subjects: int = 100_000,
    days: int = 90,
    seed: int = 17,
) -> Iterator[AuditEntry]:
    """``count`` entries, the ``start``-th onwards of a log spanning ``days`` days."""
    rng = random.Random(seed * 1_000_003 + start)
    total = max(start + count, 1)
    span = days * 86_400
    for i in range(start, start + count):
        event, decision = _EVENTS[i % len(_EVENTS)]
        department = DEPARTMENTS[rng.randrange(len(DEPARTMENTS))]
        subject = rng.randrange(subjects)
        yield AuditEntry(
            at=_EPOCH + dt.timedelta(seconds=span * i / total),
            event=event,
            decision=decision,
            department=department,
            operator=f"clerk-{rng.randrange(40)}",
            service_item="000201002000",
            case_number=f"{department[:2].upper()}-2026-{rng.randrange(50_000):05d}",
            reason="核验经营主体信息",
            resource=_RESOURCES[i % len(_RESOURCES)],
            subject_hmac=hashlib.sha256(f"subject:{subject}".encode()).hexdigest(),
            fields=("name", "status") if decision is Outcome.ALLOWED else None,
            reason_code=None if decision is Outcome.ALLOWED else "no-grant",
            grant_id="g-centre-enterprise" if decision is Outcome.ALLOWED else None,
            policy_version="v-2026-01",
            request_hash=hashlib.sha256(b"req%d" % i).hexdigest(),
            response_hash=hashlib.sha256(b"res%d" % i).hexdigest(),
            latency_ms=1.0 + (i % 97) / 10,
            request_id=f"{i:032x}",
        )
