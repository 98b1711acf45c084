"""The public face of the audit tree: signed checkpoints, leaves, inclusion and consistency
proofs — what outside witnesses and consumers need to check that the log is append-only and
that their entry is in it. Everything here is hashes, except a leaf, which holds no subject in
clear (subjects are HMAC-keyed).

A **checkpoint** is a JWT the gateway signs (``typ`` :data:`TokenType.AUDIT_CHECKPOINT`) with
the claims ``size`` (entries in the tree), ``root`` (hex SHA-256 of the RFC 9162 root) and
``iat``. Every gateway process looks each second (:meth:`TransparencyLog.run`) and signs one
whenever the tree is larger than the latest checkpoint — however the entries got there (a
request, a console log-in, a ``gateway`` command in another process), so on a quiet gateway
too its last entry is covered within :attr:`TransparencyLog.interval` seconds. A failed
attempt is logged and retried at the next tick; nothing ends the loop but cancelling it.
They are all kept (one per size), so a witness can ask for consistency between any two.

Entry ``index`` (1-based, as answers name it) is leaf ``index − 1`` of the tree; the proofs'
``index`` is the entry index, so a consumer passes on what its answer says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.audit.tree import CommittedNodes, StoredTree, leaf_bytes, tree_size
from gateway.core import merkle
from gateway.core.keyring import GatewaySigner
from gateway.core.protocol import TokenType
from gateway.errors import InvalidInput, StoreUnavailable
from gateway.storage.database import ShortReads
from gateway.storage.schema import audit_checkpoints, audit_entries

__all__ = ["Checkpoint", "TransparencyLog"]

log = logging.getLogger(__name__)

#: Right edges kept, one per tree size proofs were asked in (least recently asked out).
_EDGES_KEPT = 8

#: ``typ`` header of a signed checkpoint.


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the tree's size and root at a time."""

    size: int
    root: str  # hex
    at: dt.datetime
    token: str

    def as_json(self) -> dict[str, Any]:
        """The checkpoint as a JSON object (the token is what a verifier trusts)."""
        return {
            "size": self.size,
            "root": self.root,
            "at": self.at.isoformat(),
            "token": self.token,
        }


def _checkpoint(row: Any) -> Checkpoint:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=dt.UTC)
    return Checkpoint(int(row.size), row.root, at, row.token)


class TransparencyLog:
    """Checkpoints and proofs over the stored audit tree of one database."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        signer: GatewaySigner,
        gateway_id: str,
        interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._gateway_id = gateway_id
        self._interval = interval
        # The upper levels' nodes, shared by every proof this process answers.
        self._committed = CommittedNodes()
        # The right edges of the last few sizes proofs were asked in (clients ask in the
        # size of the latest checkpoint, so nearly every proof finds its edge here).
        self._edges: OrderedDict[int, merkle.RightEdge] = OrderedDict()
        self._edges_lock = threading.Lock()
        #: How the routes run this log's reads: on the event loop on SQLite.
        self.read = ShortReads(engine).run

    @property
    def interval(self) -> float:
        """Seconds between two looks at the tree: the longest an entry stays uncovered while
        the loop runs and the store answers."""
        return self._interval

    def _read(self, work: Any) -> Any:
        try:
            with self._engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError:
            raise StoreUnavailable("audit log") from None

    # --- checkpoints ----------------------------------------------------------------------

    def make_checkpoint(self, now: dt.datetime) -> Checkpoint | None:
        """Sign and store a checkpoint if the tree grew since the latest one; the new one."""
        with self._engine.begin() as conn:
            size = tree_size(conn)
            latest = conn.execute(sa.select(sa.func.max(audit_checkpoints.c.size))).scalar()
            if size == 0 or (latest is not None and int(latest) >= size):
                return None
            tree = StoredTree(conn)
            tree.frontier(size)
            root = merkle.root(size, tree).hex()
            token = self._signer.sign(
                {"iss": self._gateway_id, "iat": int(now.timestamp()), "size": size, "root": root},
                typ=TokenType.AUDIT_CHECKPOINT,
            )
            try:
                with conn.begin_nested():
                    conn.execute(
                        audit_checkpoints.insert().values(size=size, root=root, at=now, token=token)
                    )
            except IntegrityError:
                return None  # another process checkpointed this very size first
        return Checkpoint(size, root, now, token)

    async def run(self) -> None:
        """Checkpoint every ``interval`` seconds whenever the tree grew, until cancelled.

        Any failure is logged and tried again at the next tick: a loop that ended on one
        unexpected error would leave every later entry uncovered for the process's life.
        """
        while True:
            try:
                await asyncio.to_thread(self.make_checkpoint, dt.datetime.now(dt.UTC))
            except SQLAlchemyError as exc:  # the store is down: try again next tick
                log.warning("no checkpoint this time: %s", exc)
            except Exception:
                log.exception("no checkpoint this time (unexpected); trying again")
            await asyncio.sleep(self._interval)

    def latest(self) -> Checkpoint | None:
        """The newest stored checkpoint."""

        def work(conn: sa.Connection) -> Checkpoint | None:
            row = conn.execute(
                sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)
            ).first()
            return None if row is None else _checkpoint(row)

        result: Checkpoint | None = self._read(work)
        return result

    def checkpoints(self, *, before: int | None, limit: int) -> list[Checkpoint]:
        """Stored checkpoints, newest first, of sizes below ``before`` (if given)."""

        def work(conn: sa.Connection) -> list[Checkpoint]:
            query = sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc())
            if before is not None:
                query = query.where(audit_checkpoints.c.size < before)
            return [_checkpoint(r) for r in conn.execute(query.limit(limit))]

        result: list[Checkpoint] = self._read(work)
        return result

    # --- leaves and proofs ----------------------------------------------------------------

    def leaf(self, index: int) -> bytes | None:
        """The exact bytes hashed as the leaf of entry ``index`` (None if there is none)."""
        found = self.leaf_with_owner(index)
        return None if found is None else found[0]

    def leaf_with_owner(self, index: int) -> tuple[bytes, str | None] | None:
        """The leaf of entry ``index`` and the department the entry is about (None if there
        is no such entry): a department may read the leaves of its own entries only."""

        def work(conn: sa.Connection) -> tuple[bytes, str | None] | None:
            row = (
                conn.execute(sa.select(audit_entries).where(audit_entries.c.idx == index))
                .mappings()
                .first()
            )
            return None if row is None else (leaf_bytes(row), row["department"])

        result: tuple[bytes, str | None] | None = self._read(work)
        return result

    def _sized(self, conn: sa.Connection, size: int, field: str) -> StoredTree:
        current = tree_size(conn)
        if not 1 <= size <= current:
            raise InvalidInput(field, f"must be 1..{current}, the entries in the log now")
        return StoredTree(conn, committed=self._committed)

    def inclusion(self, index: int, size: int) -> dict[str, Any]:
        """The inclusion proof of entry ``index`` in the tree of ``size`` entries."""

        def work(conn: sa.Connection) -> dict[str, Any]:
            tree = self._sized(conn, size, "size")
            if not 1 <= index <= size:
                raise InvalidInput("index", f"must be 1..{size} (entries are numbered from 1)")
            edge = self._right_edge(size, tree)
            # Every other node the proof needs, in one query: about one a level (the upper
            # levels' from the shared copy), one round trip at 10⁶ entries as at 10³.
            tree.prefetch(merkle.inclusion_nodes(index - 1, size, edge=edge))
            proof = merkle.inclusion_proof(index - 1, size, tree, edge=edge)
            return {
                "index": index,
                "leaf_index": index - 1,
                "size": size,
                "leaf_hash": tree.node(0, index - 1).hex(),
                "root": edge.root.hex(),
                "proof": [h.hex() for h in proof],
            }

        result: dict[str, Any] = self._read(work)
        return result

    def _right_edge(self, size: int, tree: StoredTree) -> merkle.RightEdge:
        """The tree's right edge at ``size`` (committed: it never changes), kept for reuse."""
        with self._edges_lock:
            edge = self._edges.get(size)
            if edge is not None:
                self._edges.move_to_end(size)
                return edge
        tree.prefetch(merkle.RightEdge.nodes(size))
        edge = merkle.RightEdge.read(size, tree)
        with self._edges_lock:
            self._edges[size] = edge
            while len(self._edges) > _EDGES_KEPT:
                self._edges.popitem(last=False)
        return edge

    def consistency(self, old_size: int, new_size: int) -> dict[str, Any]:
        """The consistency proof between the trees of ``old_size`` and ``new_size`` entries."""

        def work(conn: sa.Connection) -> dict[str, Any]:
            tree = self._sized(conn, new_size, "to")
            if not 1 <= old_size <= new_size:
                raise InvalidInput("from", f"must be 1..{new_size} (the 'to' size)")
            tree.prefetch(merkle.consistency_nodes(old_size, new_size))
            proof = merkle.consistency_proof(old_size, new_size, tree)
            return {
                "from": old_size,
                "to": new_size,
                "from_root": merkle.root(old_size, tree).hex(),
                "to_root": merkle.root(new_size, tree).hex(),
                "proof": [h.hex() for h in proof],
            }

        result: dict[str, Any] = self._read(work)
        return result
