"""The audit log as an RFC 9162 Merkle tree: leaf bytes, the stored tree, its sequencer step.

An entry's **leaf** is the RFC 8785 canonical JSON of its row — index, time (UTC, RFC 3339
with microseconds) and every recorded field — so anyone holding the row can recompute the
exact bytes that were hashed, and the index inside the leaf pins its place (swapping two
rows changes both leaves). Entry ``i`` (1-based, as every answer names it) is leaf ``i − 1``.

The tree is stored as the hashes of its perfect subtrees (table ``merkle_nodes``); the
sequencer (:func:`integrate`) adds the new leaves and completed nodes in the same transaction
as the entries, under the same lock, so every committed tree size has every node it needs and
the tree's order is the log's. Roots and proofs then read ``O(log n)`` rows
(:class:`StoredTree`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785
import sqlalchemy as sa

from gateway.core import merkle
from gateway.storage.schema import audit_entries, merkle_nodes

__all__ = ["LEAF_VERSION", "StoredTree", "integrate", "leaf_bytes", "tree_size"]

#: Version of the leaf encoding, inside every leaf.
LEAF_VERSION = 1

#: The recorded fields of an entry, in the leaf under the same names (``idx`` as ``index``).
_FIELDS = tuple(c.name for c in audit_entries.columns if c.name not in ("idx", "at", "fields"))


def _utc(value: dt.datetime) -> str:
    # SQLite hands timestamps back naive (they were written in UTC); PostgreSQL in the
    # session's zone. Either way the leaf names the instant in UTC, to the microsecond.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def leaf_bytes(row: Mapping[Any, Any]) -> bytes:
    """The exact bytes hashed as the leaf of an audit row (as inserted, or as read back)."""
    fields = row.get("fields")
    doc: dict[str, Any] = {
        "v": LEAF_VERSION,
        "index": int(row["idx"]),
        "at": _utc(row["at"]),
        "fields": None if fields is None else json.loads(fields),
    }
    for name in _FIELDS:
        value = row.get(name)
        doc[name] = float(value) if name == "latency_ms" and value is not None else value
    return rfc8785.dumps(doc)


class StoredTree:
    """The tree as stored, read through one connection; a :class:`merkle.NodeReader`.

    Nodes already read (or about to be written) are kept, so a proof or a sequencer step
    asks the database for each node at most once; :meth:`prefetch` reads several in one query.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._cache: dict[tuple[int, int], bytes] = {}

    def prefetch(self, keys: Sequence[tuple[int, int]]) -> None:
        """Read the nodes ``(level, index)`` in one query (missing ones are left out)."""
        wanted = [k for k in keys if k not in self._cache]
        if not wanted:
            return
        rows = self._conn.execute(
            sa.select(merkle_nodes.c.level, merkle_nodes.c.idx, merkle_nodes.c.hash).where(
                sa.tuple_(merkle_nodes.c.level, merkle_nodes.c.idx).in_(wanted)
            )
        )
        for level, index, value in rows:
            self._cache[(int(level), int(index))] = bytes(value)

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree ``(level, index)``; LookupError if not stored."""
        key = (level, index)
        if key not in self._cache:
            self.prefetch([key])
        try:
            return self._cache[key]
        except KeyError:
            raise LookupError(f"no node {key} in the stored tree") from None

    def remember(self, nodes: Sequence[merkle.PerfectNode]) -> None:
        """Nodes written in this transaction: later reads need not ask the database."""
        for level, index, value in nodes:
            self._cache[(level, index)] = value

    def frontier(self, size: int) -> None:
        """Prefetch the right edge of a tree of ``size`` leaves: the roots of its perfect
        subtrees, all a root, a proof or an append can need besides the newest nodes."""
        self.prefetch([(lvl, (size >> lvl) - 1) for lvl in range(64) if (size >> lvl) & 1])


def tree_size(conn: sa.Connection) -> int:
    """How many leaves the stored tree has."""
    last = conn.execute(
        sa.select(sa.func.max(merkle_nodes.c.idx)).where(merkle_nodes.c.level == 0)
    ).scalar()
    return 0 if last is None else int(last) + 1


def integrate(conn: sa.Connection, new_rows: Sequence[Mapping[str, Any]]) -> int:
    """Add the entries up to the last of ``new_rows`` to the tree; the new tree size.

    Called by the sequencer inside its transaction, after inserting ``new_rows`` (contiguous
    indexes). Entries between the stored tree and ``new_rows`` (written before the tree
    existed, i.e. before migration 0005) are read back and added first, in order.
    """
    if not new_rows:
        return tree_size(conn)
    size = tree_size(conn)
    first = int(new_rows[0]["idx"])
    rows: list[Mapping[str, Any]] = []
    if size < first - 1:  # catch up with entries the tree does not hold yet
        older = conn.execute(
            sa.select(audit_entries)
            .where(audit_entries.c.idx > size, audit_entries.c.idx < first)
            .order_by(audit_entries.c.idx)
        ).mappings()
        rows.extend(dict(r) for r in older)
    rows.extend(new_rows)
    if int(rows[0]["idx"]) != size + 1:
        raise RuntimeError(f"audit tree holds {size} leaves but the next entry is {rows[0]['idx']}")
    tree = StoredTree(conn)
    tree.frontier(size)
    nodes = merkle.new_perfect_nodes(size, [merkle.leaf_hash(leaf_bytes(r)) for r in rows], tree)
    conn.execute(
        sa.insert(merkle_nodes),
        [{"level": lvl, "idx": idx, "hash": value} for lvl, idx, value in nodes],
    )
    return size + len(rows)
