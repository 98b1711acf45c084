"""``gateway audit verify``: recompute the tree from the stored entries and hold it against
the stored leaves and every signed checkpoint.

What each kind of tampering leaves behind, and how it is found:

- an **edited** entry no longer hashes to the leaf written with it — unless the stored tree
  was rewritten too, and then its root no longer matches the signed checkpoints;
- a **deleted** entry leaves a gap in the indexes;
- an **inserted** entry either shifts the indexes (every later leaf differs) or sits past the
  stored tree (an entry that is not in the tree);
- **reordered** entries carry their index inside the leaf, so both leaves differ;
- a **truncated** log is shorter than the tree or than a signed checkpoint.

The report names the first entry that differs where the evidence points at one, and every
problem found otherwise. Each problem is a :class:`Problem`: a stable code and its numbers
(what a page in another language builds its own sentence from) with the English sentence the
command prints. Checkpoint signatures are checked with the gateway's JWKS: each with the key
its ``kid`` names, which must have been in force when it was signed (a rotation leaves the
old checkpoints verifiable with the retired key).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.audit.tree import leaf_bytes, tree_size
from gateway.core import merkle
from gateway.core.keyring import GatewayKeyRefused, verify_gateway_jws
from gateway.core.protocol import TokenType
from gateway.storage.schema import audit_checkpoints, audit_entries, merkle_nodes

__all__ = [
    "ENTRY_PAGE",
    "Problem",
    "ProblemCode",
    "VerifyReport",
    "report_json",
    "stored_entries",
    "stored_leaves",
    "verify_log",
]

#: Entries read at a time when the whole log is recomputed.
ENTRY_PAGE = 5000
#: How many problems a report keeps: the first ones say enough.
PROBLEMS_KEPT = 50


class ProblemCode(enum.StrEnum):
    """Every kind of problem the verification reports; :attr:`Problem.details` holds the
    numbers named after each."""

    ENTRIES_MISSING = "entries-missing"  # first, last: a gap in the indexes
    ENTRY_NOT_IN_TREE = "entry-not-in-tree"  # entry: stored past the tree
    ENTRY_DIFFERS = "entry-differs"  # entry: no longer the leaf written with it
    LOG_SHORTER_THAN_TREE = "log-shorter-than-tree"  # leaves, entries
    CHECKPOINT_SIGNATURE = "checkpoint-signature"  # size (the library's reason: ``reason``)
    CHECKPOINT_CLAIMS = "checkpoint-claims"  # size: signed claims differ from the row
    LOG_SHORTER_THAN_CHECKPOINT = "log-shorter-than-checkpoint"  # size, entries
    CHECKPOINT_ROOT = "checkpoint-root"  # size: the stored entries give another root


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found: its code, its numbers, and the English sentence (``message``)."""

    code: ProblemCode
    details: Mapping[str, int | str]
    message: str


@dataclass
class VerifyReport:
    """What a verification found. ``ok`` only if there is no problem at all."""

    entries: int = 0
    tree_size: int = 0
    checkpoints: int = 0
    first_bad_entry: int | None = None
    found: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.found

    @property
    def problems(self) -> list[str]:
        """The problems' English sentences (what ``gateway audit verify`` prints)."""
        return [p.message for p in self.found]

    def flag(
        self, index: int | None, code: ProblemCode, message: str, **details: int | str
    ) -> None:
        """Record a problem; ``index`` is the entry it points at, if one."""
        if index is not None and (self.first_bad_entry is None or index < self.first_bad_entry):
            self.first_bad_entry = index
        if len(self.found) < PROBLEMS_KEPT:
            self.found.append(Problem(code, details, message))


def stored_entries(conn: sa.Connection, *, upto: int | None = None) -> Iterator[sa.RowMapping]:
    """Every stored entry (up to index ``upto``, when given) in index order, read in pages of
    :data:`ENTRY_PAGE` by keyset: what recomputes the leaves and the root from the rows."""
    after = 0
    while upto is None or after < upto:
        query = sa.select(audit_entries).where(audit_entries.c.idx > after)
        if upto is not None:
            query = query.where(audit_entries.c.idx <= upto)
        batch = conn.execute(query.order_by(audit_entries.c.idx).limit(ENTRY_PAGE)).mappings().all()
        if not batch:
            return
        yield from batch
        after = int(batch[-1]["idx"])


def stored_leaves(conn: sa.Connection, lo: int, hi: int) -> dict[int, bytes]:
    """The stored leaf hashes of the leaves ``lo <= i < hi`` (level 0 of the tree)."""
    rows = conn.execute(  # at level 0 a node's first leaf is the leaf itself
        sa.select(merkle_nodes.c.pos, merkle_nodes.c.hash).where(
            merkle_nodes.c.pos >= lo, merkle_nodes.c.pos < hi, merkle_nodes.c.level == 0
        )
    )
    return {int(i): bytes(h) for i, h in rows}


def _check_checkpoint(
    row: Any, tree: merkle.MemoryTree, jwks: Mapping[str, Any], issuer: str, report: VerifyReport
) -> None:
    size, root = int(row.size), str(row.root)
    try:
        # With the key's algorithm (ES256 or SM2), the key in force when it was signed.
        jws, claims = verify_gateway_jws(row.token, jwks=jwks, typ=None)
    except GatewayKeyRefused as exc:
        report.flag(
            None,
            ProblemCode.CHECKPOINT_SIGNATURE,
            f"checkpoint of size {size}: signature does not verify ({exc})",
            size=size,
            reason=str(exc),
        )
        return
    if (
        jws.header.typ != TokenType.AUDIT_CHECKPOINT
        or claims.get("iss") != issuer
        or claims.get("size") != size
        or claims.get("root") != root
    ):
        report.flag(
            None,
            ProblemCode.CHECKPOINT_CLAIMS,
            f"checkpoint of size {size}: its signed claims differ from its row",
            size=size,
        )
        return
    if size > tree.size:
        report.flag(
            tree.size + 1,
            ProblemCode.LOG_SHORTER_THAN_CHECKPOINT,
            f"log truncated: a checkpoint signs {size} entries, only {tree.size} are stored",
            size=size,
            entries=tree.size,
        )
        return
    if merkle.root(size, tree).hex() != root:
        report.flag(
            None,
            ProblemCode.CHECKPOINT_ROOT,
            f"checkpoint of size {size} does not match the stored entries: an entry at or "
            f"before {size} was changed, removed or inserted",
            size=size,
        )


def verify_log(
    engine: sa.Engine,
    *,
    issuer: str,
    gateway_jwks: Mapping[str, Any] | None = None,
    gateway_jwk: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Recompute the tree from every stored entry and check it (see the module docstring).

    Checkpoints are checked against ``gateway_jwks`` (the JWKS as served), or the one key
    ``gateway_jwk`` of a gateway that never rotated."""
    report = VerifyReport()
    tree = merkle.MemoryTree()
    if gateway_jwks is None:
        assert gateway_jwk is not None, "verify_log needs the gateway's keys"
        gateway_jwks = {"keys": [dict(gateway_jwk)]}
    with engine.connect() as conn:
        report.tree_size = stored_size = tree_size(conn)
        expected = 1
        stored: dict[int, bytes] = {}
        for row in stored_entries(conn):
            index = int(row["idx"])
            if index != expected:
                report.flag(
                    expected,
                    ProblemCode.ENTRIES_MISSING,
                    f"entries {expected}..{index - 1} are missing (deleted?)",
                    first=expected,
                    last=index - 1,
                )
                # Keep numbering from what is there so later entries are still compared.
            leaf = merkle.leaf_hash(leaf_bytes(row))
            if index - 1 not in stored:
                stored = stored_leaves(conn, index - 1, index - 1 + ENTRY_PAGE)
            written = stored.get(index - 1)
            if written is None:
                report.flag(
                    index,
                    ProblemCode.ENTRY_NOT_IN_TREE,
                    f"entry {index} is not in the tree (inserted after the fact?)",
                    entry=index,
                )
            elif written != leaf:
                report.flag(
                    index,
                    ProblemCode.ENTRY_DIFFERS,
                    f"entry {index} differs from the leaf written with it",
                    entry=index,
                )
            tree.append(leaf)
            report.entries += 1
            expected = index + 1
        if report.entries < stored_size:
            report.flag(
                report.entries + 1,
                ProblemCode.LOG_SHORTER_THAN_TREE,
                f"log truncated: the tree holds {stored_size} leaves, "
                f"{report.entries} entries are stored",
                leaves=stored_size,
                entries=report.entries,
            )
        for signed in conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size)):
            report.checkpoints += 1
            _check_checkpoint(signed, tree, gateway_jwks, issuer, report)
    return report


def report_json(report: VerifyReport, *, at: dt.datetime) -> bytes:
    """The report as JSON (for ``--json`` and for records of verify runs)."""
    return msgspec.json.encode(
        {
            "ok": report.ok,
            "at": at.isoformat(),
            "entries": report.entries,
            "tree_size": report.tree_size,
            "checkpoints": report.checkpoints,
            "first_bad_entry": report.first_bad_entry,
            "problems": report.problems,
        }
    )
