"""The audit log as an RFC 9162 Merkle tree: leaf bytes, the stored tree, its sequencer step.

An entry's **leaf** is the RFC 8785 canonical JSON of its row — index, time (UTC, RFC 3339
with microseconds), latency in whole microseconds and every other recorded field — so anyone
holding the row can recompute the exact bytes that were hashed, and the index inside the leaf
pins its place (swapping two rows changes both leaves). Entry ``i`` (1-based, as every answer
names it) is leaf ``i − 1``.

The tree is stored as the hashes of its perfect subtrees (table ``merkle_nodes``); the
sequencer (:class:`Sequencer`) adds the new leaves and completed nodes in the same transaction
as the entries, under the same lock, so every committed tree size has every node it needs and
the tree's order is the log's. Roots and proofs then read ``O(log n)`` rows
(:class:`StoredTree`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from gateway.core import merkle
from gateway.storage.inserts import insert_many
from gateway.storage.prepared import PreparedSelect
from gateway.storage.schema import audit_entries, merkle_nodes

__all__ = [
    "LEAF_VERSION",
    "CommittedNodes",
    "Sequencer",
    "StoredTree",
    "frontier_keys",
    "leaf_bytes",
    "node_row",
    "tree_size",
]

#: Version of the leaf encoding, inside every leaf.
LEAF_VERSION = 1

#: The recorded fields of an entry, in the leaf under the same names (``idx`` as ``index``).
_FIELDS = tuple(
    c.name
    for c in audit_entries.columns
    if c.name not in ("idx", "at", "fields", "withholds", "request_id")
)


def _utc(value: dt.datetime) -> str:
    # SQLite hands timestamps back naive (they were written in UTC); PostgreSQL in the
    # session's zone. Either way the leaf names the instant in UTC, to the microsecond.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def leaf_bytes(row: Mapping[Any, Any]) -> bytes:
    """The exact bytes hashed as the leaf of an audit row (as inserted, or as read back)."""
    fields = row.get("fields")
    latency = row.get("latency_ms")
    doc: dict[str, Any] = {name: row.get(name) for name in _FIELDS}
    doc.update(
        v=LEAF_VERSION,
        index=int(row["idx"]),
        at=_utc(row["at"]),
        fields=None if fields is None else json.loads(fields),
        # Whole microseconds: no float in the leaf, so no float formatting to agree on.
        latency_ms=None,
        latency_us=None if latency is None else round(float(latency) * 1000),
    )
    del doc["latency_ms"]
    # Added with migration 0008; in the leaf only where set, so every earlier leaf keeps its
    # bytes.
    withholds = row.get("withholds")
    if withholds is not None:
        doc["withholds"] = int(withholds)
    # Added with migration 0009, likewise only where set.
    request_id = row.get("request_id")
    if request_id is not None:
        doc["request_id"] = request_id
    # Sorted keys, no whitespace, minimal escaping: for these values (text, integers, null,
    # lists of text) exactly the RFC 8785 bytes — a test holds it to rfc8785 — at a
    # fiftieth of the pure-Python encoder's cost, on the audit writer's path.
    return msgspec.json.encode(doc, order="sorted")


#: The most nodes one query asks for (a proof of a tree of 2⁶³ leaves needs about 130).
_MOST_NODES = 64


def node_row(level: int, index: int, value: bytes) -> dict[str, Any]:
    """The stored row of the node ``(level, index)`` (keyed by its first leaf, then level)."""
    return {"pos": index << level, "level": level, "hash": value}


@functools.cache
def _nodes_query(terms: int) -> PreparedSelect:
    """The nodes named by ``terms`` (a power of two) ``(pos = ? AND level = ?)`` terms.

    An OR of key terms, because SQLite answers each from the primary key, where a row-value
    ``IN`` list made it scan the whole table. Compiled once per number of terms and run on the
    driver's cursor: built as Core expressions for each proof, the terms cost more than the
    query, and more as the tree grew (a proof asks for about two nodes per level).
    """
    condition = sa.or_(
        *(
            sa.and_(
                merkle_nodes.c.pos == sa.bindparam(f"pos{i}"),
                merkle_nodes.c.level == sa.bindparam(f"level{i}"),
            )
            for i in range(terms)
        )
    )
    return PreparedSelect(
        sa.select(merkle_nodes.c.level, merkle_nodes.c.pos, merkle_nodes.c.hash).where(condition)
    )


class CommittedNodes:
    """Nodes of the upper levels read from the committed tree, kept across requests.

    A node is the hash of a perfect subtree: once committed it never changes (the log only
    grows), so a copy of it is always right. A proof of any entry needs about one node a
    level, and those of the upper levels are few and shared by every proof — kept here, a
    proof reads from the database only the nodes of its lowest levels, about as many in a log
    of 10⁶ entries as in one of 10³. Only nodes read through a reader connection may be
    offered (committed ones): never those a transaction is writing.

    Bounded without eviction: when the nodes kept would pass ``most``, the lowest level kept
    is raised and its nodes dropped (a level holds half the nodes of the one below, so the
    levels kept stay the ones every proof shares). Keys are integers, not tuples: a cache of
    integers and bytes is nothing the cyclic garbage collector has to walk (with 10⁵ tuple
    keys, every collection did — seen as a few µs added to any allocation of a request).
    Safe to share between threads.
    """

    def __init__(self, *, from_level: int = 4, most: int = 65_536) -> None:
        self.from_level = from_level
        self._most = most
        self._nodes: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        nodes, lowest = self._nodes, self.from_level
        found = {}
        for level, index in keys:
            if level >= lowest:
                value = nodes.get(index << 6 | level)
                if value is not None:
                    found[(level, index)] = value
        return found

    def offer(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        with self._lock:
            kept = self._nodes
            for (level, index), value in nodes.items():
                if level >= self.from_level:
                    kept[index << 6 | level] = value
            while len(kept) > self._most:
                self.from_level += 1
                kept = {k: v for k, v in kept.items() if k & 63 >= self.from_level}
            self._nodes = kept

    def __len__(self) -> int:
        return len(self._nodes)


class StoredTree:
    """The tree as stored, read through one connection; a :class:`merkle.NodeReader`.

    Nodes already read (or about to be written) are kept, so a proof or a sequencer step
    asks the database for each node at most once; :meth:`prefetch` reads several in one query.
    With ``committed`` (a reader's connection only, :class:`CommittedNodes`) the upper
    levels' nodes come from that shared copy and the ones read are offered to it.
    """

    def __init__(self, conn: sa.Connection, *, committed: CommittedNodes | None = None) -> None:
        self._conn = conn
        self._cache: dict[tuple[int, int], bytes] = {}
        self._committed = committed

    def prefetch(self, keys: Sequence[tuple[int, int]]) -> None:
        """Read the nodes ``(level, index)`` in one query (missing ones are left out)."""
        wanted = [k for k in keys if k not in self._cache]
        if wanted and self._committed is not None:
            known = self._committed.get_many(wanted)
            if known:
                self._cache.update(known)
                wanted = [k for k in wanted if k not in known]
        if not wanted:
            return
        read: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(wanted), _MOST_NODES):
            chunk = wanted[start : start + _MOST_NODES]
            terms = 1 << (len(chunk) - 1).bit_length()
            chunk += [chunk[-1]] * (terms - len(chunk))  # a repeated term selects nothing new
            values: dict[str, int] = {}
            for i, (level, index) in enumerate(chunk):
                values[f"pos{i}"], values[f"level{i}"] = index << level, level
            for level, pos, value in _nodes_query(terms).all(self._conn, **values):
                read[(int(level), int(pos) >> int(level))] = bytes(value)
        self._cache.update(read)
        if self._committed is not None:
            self._committed.offer(read)

    def seed(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        """Nodes known to be stored (a sequencer's memory of the last frontier)."""
        self._cache.update(nodes)

    def known(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The nodes among ``keys`` this reader holds (read or written)."""
        return {k: self._cache[k] for k in keys if k in self._cache}

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
        self.prefetch(frontier_keys(size))


def frontier_keys(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees whose roots make up the right edge of a tree of ``size``."""
    return [(lvl, (size >> lvl) - 1) for lvl in range(64) if (size >> lvl) & 1]


#: The last leaf's index (compiled once, run on the driver's cursor: every proof reads it).
#: The last leaf's row is the last row of all: any other node ends at or before the last
#: leaf, so it starts before it. Read backwards from the end, one row.
_LAST_LEAF = PreparedSelect(
    sa.select(merkle_nodes.c.pos)
    .where(merkle_nodes.c.level == 0)
    .order_by(merkle_nodes.c.pos.desc())
    .limit(1)
)


def tree_size(conn: sa.Connection) -> int:
    """How many leaves the stored tree has."""
    last = _LAST_LEAF.scalar(conn)
    return 0 if last is None else int(last) + 1


class Sequencer:
    """Adds entries to the stored tree inside the sequencer's transaction (:meth:`integrate`).

    It remembers the size and the right edge of the tree it last wrote: when no other
    process appended in between (always, in the embedded setup) — the batch's first index,
    read under the sequencer lock, follows the remembered size — the next append reads
    nothing of the tree, neither its size nor a node.
    """

    def __init__(self) -> None:
        self._size = -1
        self._frontier: dict[tuple[int, int], bytes] = {}

    def integrate(self, conn: sa.Connection, new_rows: Sequence[Mapping[str, Any]]) -> int:
        """Add the entries up to the last of ``new_rows`` to the tree; the new tree size.

        Called inside the sequencer's transaction, after inserting ``new_rows`` (contiguous
        indexes). Entries between the stored tree and ``new_rows`` (written before the tree
        existed, i.e. before migration 0005) are read back and added first, in order. If the
        transaction then fails, :meth:`forget` must be called (the memory would be ahead).
        """
        if not new_rows:
            return tree_size(conn)
        first = int(new_rows[0]["idx"])
        # ``first`` was read under the sequencer lock: if it follows the tree this sequencer
        # last wrote, nobody appended since, and the stored tree is that one.
        size = self._size if self._size == first - 1 else tree_size(conn)
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
            raise RuntimeError(
                f"audit tree holds {size} leaves but the next entry is {rows[0]['idx']}"
            )
        tree = StoredTree(conn)
        if size == self._size:
            tree.seed(self._frontier)
        else:
            tree.frontier(size)
        nodes = merkle.new_perfect_nodes(
            size, [merkle.leaf_hash(leaf_bytes(r)) for r in rows], tree
        )
        insert_many(
            conn,
            merkle_nodes,
            [node_row(lvl, idx, value) for lvl, idx, value in nodes],
        )
        tree.remember(nodes)
        self._size = size + len(rows)
        self._frontier = tree.known(frontier_keys(self._size))
        return self._size

    def forget(self) -> None:
        """Drop the remembered edge (the transaction that wrote it did not commit)."""
        self._size = -1
        self._frontier = {}
