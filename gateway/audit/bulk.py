"""Filling an audit log in bulk: entries and their Merkle tree, without the writer.

For measurements at scale (``loadtests.audit_path``, ``loadtests.scale``) and tests: a log of
a million entries is built in a minute or two by inserting the rows in large transactions and
computing the tree's perfect-subtree hashes in memory, chunk by chunk, exactly as the
sequencer would (:func:`gateway.core.merkle.new_perfect_nodes` over the same leaf bytes). The
result is the log the gateway would have written entry by entry: same rows, same leaves, same
stored nodes, so every root, proof and verification holds on it.

It is not a way to write a live log: it takes no sequencer lock and checks no promise. Use it
on a store no gateway is writing to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import sqlalchemy as sa

from gateway.audit.entry import AuditEntry
from gateway.audit.tree import StoredTree, frontier_keys, leaf_bytes, node_row, tree_size
from gateway.core import merkle
from gateway.storage.inserts import insert_many
from gateway.storage.schema import audit_entries, merkle_nodes

__all__ = ["bulk_append"]


class _Frontier:
    """A :class:`merkle.NodeReader` holding only the nodes an append can ask for."""

    def __init__(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        self.nodes = dict(nodes)

    def node(self, level: int, index: int) -> bytes:
        try:
            return self.nodes[(level, index)]
        except KeyError:
            raise LookupError(f"no node {(level, index)} on the frontier") from None


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def bulk_append(
    engine: sa.Engine,
    entries: Iterable[AuditEntry],
    *,
    chunk: int = 20_000,
) -> int:
    """Append ``entries`` (in order) to the log in ``engine`` with their tree; the new size.

    The log must be consistent to begin with (its tree as large as its entries). Each chunk
    of ``chunk`` entries is one transaction holding its rows and its nodes, so an interrupted
    fill leaves a shorter but whole log.
    """
    with engine.connect() as conn:
        size = tree_size(conn)
        last = conn.execute(sa.select(sa.func.max(audit_entries.c.idx))).scalar()
        if int(last or 0) != size:
            raise RuntimeError(f"the log holds {last} entries but its tree {size} leaves")
        stored, edge = StoredTree(conn), frontier_keys(size)
        stored.prefetch(edge)
        frontier = _Frontier(stored.known(edge))
    for batch in _chunks(entries, chunk):
        rows = [e.as_row() for e in batch]
        for offset, row in enumerate(rows):
            row["idx"] = size + 1 + offset
        nodes = merkle.new_perfect_nodes(
            size, [merkle.leaf_hash(leaf_bytes(r)) for r in rows], frontier
        )
        with engine.begin() as conn:
            insert_many(conn, audit_entries, rows)
            insert_many(
                conn,
                merkle_nodes,
                [node_row(lvl, idx, value) for lvl, idx, value in nodes],
            )
        size += len(rows)
        known = {**frontier.nodes, **{(lvl, idx): value for lvl, idx, value in nodes}}
        frontier = _Frontier({k: known[k] for k in frontier_keys(size)})
    return size
