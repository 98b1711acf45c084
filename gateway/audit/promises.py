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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway.audit.entry import AuditEntry, Outcome
from gateway.cache.protocol import DurableState, QuotaClaim
from gateway.core.policy import ReasonCode
from gateway.errors import Error, PolicyDenied, Replayed
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


def _insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, rows: list[Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def _single_use(conn: sa.Connection, batch: Sequence[Pending]) -> None:
    firsts: dict[tuple[str, str], TokenClaim] = {}
    for p in batch:
        if p.claim is not None:
            firsts.setdefault((p.claim.department, p.claim.jti), p.claim)
    if not firsts:
        return
    _insert_ignoring_duplicates(
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
    )
    t = used_tokens.c
    owners = {
        (d, j): n
        for d, j, n in conn.execute(
            sa.select(t.department, t.jti, t.claimed_by).where(
                # OR of equalities: answered from the primary key on SQLite too.
                sa.or_(*(sa.and_(t.department == d, t.jti == j) for d, j in firsts))
            )
        )
    }
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
    c = closed_cases.c
    closed = set(
        conn.execute(
            sa.select(c.department, c.case_number).where(
                sa.or_(*(sa.and_(c.department == d, c.case_number == k) for d, k in asked))
            )
        ).tuples()
    )
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
    q = quota_subjects.c
    seen: dict[tuple[str, str], set[str]] = {}
    for key in {(p.quota.grant_id, p.quota.day) for p in counted if p.quota is not None}:
        seen[key] = set(
            conn.execute(
                sa.select(q.subject_hmac).where(q.grant_id == key[0], q.day == key[1])
            ).scalars()
        )
    new: list[dict[str, str]] = []
    for p in counted:
        claim = p.quota
        assert claim is not None
        subjects = seen[(claim.grant_id, claim.day)]
        if claim.subject in subjects:
            continue
        if len(subjects) >= claim.limit:
            _refuse(
                p,
                ReasonCode.QUOTA_EXHAUSTED,
                PolicyDenied(
                    ReasonCode.QUOTA_EXHAUSTED, "the grant's daily subject quota is used up"
                ),
                "the grant's daily subject quota is used up (durable check)",
            )
            continue
        subjects.add(claim.subject)
        new.append({"grant_id": claim.grant_id, "day": claim.day, "subject_hmac": claim.subject})
    if new:
        conn.execute(sa.insert(quota_subjects), new)


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
