"""Promises the durable store keeps, in the audit writer's transaction: single use, closed
cases, daily quotas.

The request guard (in process, or Redis) checks all three first — one round trip, the fast
path — but it is only a copy: Redis can restart empty, the embedded gateway can restart, a
write to it can fail after the database took it. So the writer checks them again, under the
sequencer lock, in the very transaction that makes the request's entries durable:

* **single use** — every (department, ``jti``) admitted is claimed in ``used_tokens`` by the
  first entry of its request (a request's own later entries find their own claim by its
  nonce); another request with the same token finds the claim taken;
* **closed cases** — an entry that would release data under a case the department closed
  (``closed_cases``) is refused;
* **quotas** — each distinct subject read under a grant with ``max_subjects_per_day`` is
  counted in ``quota_subjects``; a subject beyond the quota is refused.

A refused entry is written as the refusal it is (never as a release), and its request gets
the matching error (409 / 403) with the entry's index — so no lost cache is ever an open door,
and the log never says something was released that was not.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.audit.entry import AuditEntry, Outcome
from gateway.cache.protocol import DurableState, QuotaClaim
from gateway.core.policy import ReasonCode
from gateway.errors import Error, PolicyDenied, Replayed
from gateway.storage.inserts import insert_many
from gateway.storage.prepared import PreparedSelect
from gateway.storage.schema import closed_cases, quota_subjects, used_tokens

__all__ = ["CURRENT_CLAIM", "Pending", "TokenClaim", "durable_state", "gate", "purge"]


@dataclass(slots=True)
class TokenClaim:
    """What an admitted request promised: its token is used once, its case is open."""

    department: str
    jti: str
    nonce: str  # this request's own id: its later entries find their own claim by it
    expires_at: int  # epoch seconds after which the token cannot verify any more
    case: str | None
    refused_event: str  # the event a refusal of this request is recorded under
    #: An entry of this request is durable, and with it the claim: the token is used for
    #: good (set on the request's own event loop when such an append returns).
    durable: bool = False


#: The claim of the request being served, set when the guard admits it and read by the audit
#: log for every entry the request appends after that. A context variable because each
#: request runs in its own task and appends from many places (services, refusals).
CURRENT_CLAIM: contextvars.ContextVar[TokenClaim | None] = contextvars.ContextVar(
    "yiwang_token_claim", default=None
)


@dataclass(slots=True)
class Pending:
    """One entry about to be written, with what its request promised."""

    entry: AuditEntry
    claim: TokenClaim | None = None
    quota: QuotaClaim | None = None
    refusal: Error | None = None  # set by the gate: write the refusal, raise this


def gate(conn: sa.Connection, batch: Sequence[Pending]) -> None:
    """Check the batch's promises against the durable store (under the sequencer lock);
    rewrite each entry that breaks one as its refusal (:attr:`Pending.refusal`)."""
    _single_use(conn, batch)
    _closed_cases(conn, batch)
    _quotas(conn, batch)


def _refuse(p: Pending, code: str, error: Error, detail: str) -> None:
    assert p.claim is not None
    p.entry = dataclasses.replace(
        p.entry,
        event=p.claim.refused_event,
        decision=Outcome.REFUSED,
        reason_code=code,
        response_hash=None,
        detail=detail,
    )
    p.refusal = error


# Both columns of each table's primary key are constrained, so that the database answers from
# the key (a jti or a case number alone would scan the table, which grows with the log).
_OWNERS = PreparedSelect(
    sa.select(used_tokens.c.department, used_tokens.c.jti, used_tokens.c.claimed_by).where(
        used_tokens.c.department.in_(sa.bindparam("departments", expanding=True)),
        used_tokens.c.jti.in_(sa.bindparam("jtis", expanding=True)),
    )
)
_CLOSED = PreparedSelect(
    sa.select(closed_cases.c.department, closed_cases.c.case_number).where(
        closed_cases.c.department.in_(sa.bindparam("departments", expanding=True)),
        closed_cases.c.case_number.in_(sa.bindparam("cases", expanding=True)),
    )
)
_COUNTED = PreparedSelect(
    sa.select(quota_subjects.c.subject_hmac).where(
        quota_subjects.c.grant_id == sa.bindparam("grant_id"),
        quota_subjects.c.day == sa.bindparam("day"),
        quota_subjects.c.subject_hmac.in_(sa.bindparam("subjects", expanding=True)),
    )
)
_COUNT = PreparedSelect(
    sa.select(sa.func.count()).where(
        quota_subjects.c.grant_id == sa.bindparam("grant_id"),
        quota_subjects.c.day == sa.bindparam("day"),
    )
)


def _single_use(conn: sa.Connection, batch: Sequence[Pending]) -> None:
    firsts: dict[tuple[str, str], TokenClaim] = {}
    for p in batch:
        if p.claim is not None:
            firsts.setdefault((p.claim.department, p.claim.jti), p.claim)
    if not firsts:
        return
    # Claim them all (a key claimed before stays its first claimer's). When every claim
    # landed now, each key belongs to its first claimer in this batch; otherwise read who
    # owns each by primary key: this request if its claim landed in an earlier entry of it,
    # another if the token was used before. Plain statements, no RETURNING: the insert's row
    # count and, only if some key was claimed already, one indexed read.
    claimed = insert_many(
        conn,
        used_tokens,
        [
            {
                "department": c.department,
                "jti": c.jti,
                "claimed_by": c.nonce,
                "expires_at": c.expires_at,
            }
            for c in firsts.values()
        ],
        ignore_duplicates=True,
    )
    owners: dict[tuple[str, str], str]
    if claimed == len(firsts):  # every key is now its first claimer's in this batch
        owners = {key: c.nonce for key, c in firsts.items()}
    else:
        asked = {
            "departments": sorted({d for d, _ in firsts}),
            "jtis": sorted({j for _, j in firsts}),
        }
        owners = {(d, j): n for d, j, n in _OWNERS.all(conn, **asked) if (d, j) in firsts}
    for p in batch:
        c = p.claim
        if c is not None and owners.get((c.department, c.jti)) != c.nonce:
            _refuse(p, "replay", Replayed(), "the token was used before (durable check)")


def _closed_cases(conn: sa.Connection, batch: Sequence[Pending]) -> None:
    asked = {
        (p.claim.department, p.claim.case)
        for p in batch
        if p.claim is not None
        and p.claim.case is not None
        and p.refusal is None
        and p.entry.decision is Outcome.ALLOWED
    }
    if not asked:
        return
    closed = {
        (d, k)
        for d, k in _CLOSED.all(
            conn,
            departments=sorted({d for d, _ in asked}),
            cases=sorted({k for _, k in asked}),
        )
        if (d, k) in asked
    }
    if not closed:
        return
    for p in batch:
        claim = p.claim
        if (
            claim is not None
            and p.refusal is None
            and p.entry.decision is Outcome.ALLOWED
            and (claim.department, claim.case) in closed
        ):
            _refuse(
                p,
                ReasonCode.CASE_CLOSED,
                PolicyDenied(ReasonCode.CASE_CLOSED, "the case was declared closed"),
                "the case was declared closed (durable check)",
            )


def _quotas(conn: sa.Connection, batch: Sequence[Pending]) -> None:
    counted = [
        p
        for p in batch
        if p.quota is not None and p.refusal is None and p.entry.decision is Outcome.ALLOWED
    ]
    if not counted:
        return
    # Per (grant, day): which of the batch's subjects are counted already, and how many are.
    pairs: dict[tuple[str, str], set[str]] = {}
    for p in counted:
        assert p.quota is not None
        pairs.setdefault((p.quota.grant_id, p.quota.day), set()).add(p.quota.subject)
    seen: dict[tuple[str, str], set[str]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for (grant_id, day), subjects in pairs.items():
        keys = {"grant_id": grant_id, "day": day}
        seen[(grant_id, day)] = {
            row[0] for row in _COUNTED.all(conn, **keys, subjects=sorted(subjects))
        }
        sizes[(grant_id, day)] = int(_COUNT.scalar(conn, **keys))
    new: list[dict[str, str]] = []
    for p in counted:
        claim = p.quota
        assert claim is not None
        key = (claim.grant_id, claim.day)
        if claim.subject in seen[key]:
            continue
        if sizes[key] >= claim.limit:
            _refuse(
                p,
                ReasonCode.QUOTA_EXHAUSTED,
                PolicyDenied(
                    ReasonCode.QUOTA_EXHAUSTED, "the grant's daily subject quota is used up"
                ),
                "the grant's daily subject quota is used up (durable check)",
            )
            continue
        seen[key].add(claim.subject)
        sizes[key] += 1
        new.append({"grant_id": claim.grant_id, "day": claim.day, "subject_hmac": claim.subject})
    if new:
        insert_many(conn, quota_subjects, new)


def durable_state(
    engine: sa.Engine, *, department: str, grant_ids: Sequence[str], day: str
) -> DurableState:
    """What the guard keeps a copy of, read from the durable store: ``department``'s closed
    cases, and the subjects counted on ``day`` under the given grants of its."""
    c, q = closed_cases.c, quota_subjects.c
    with engine.connect() as conn:
        cases = frozenset(
            conn.execute(sa.select(c.case_number).where(c.department == department)).scalars()
        )
        subjects: dict[tuple[str, str], set[str]] = {}
        if grant_ids:
            for grant_id, subject in conn.execute(
                sa.select(q.grant_id, q.subject_hmac).where(
                    q.grant_id.in_(list(grant_ids)), q.day == day
                )
            ):
                subjects.setdefault((grant_id, day), set()).add(subject)
    return DurableState(
        closed_cases=cases, quota_subjects={k: frozenset(v) for k, v in subjects.items()}
    )


def purge(conn: sa.Connection, *, now: float, oldest_day: str) -> None:
    """Forget tokens that can no longer verify and quota days that are over."""
    conn.execute(sa.delete(used_tokens).where(used_tokens.c.expires_at < int(now)))
    conn.execute(sa.delete(quota_subjects).where(quota_subjects.c.day < oldest_day))
