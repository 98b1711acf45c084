"""Merkle trees after RFC 9162 (Certificate Transparency 2.0), section 2.1.

The tree is the RFC's: a leaf hashes as ``SHA-256(0x00 ‖ data)``, an interior node as
``SHA-256(0x01 ‖ left ‖ right)`` (the two prefixes keep a leaf from ever being passed off as
a node, and the other way round), and the hash of ``n > 1`` leaves splits them at ``k``, the
largest power of two smaller than ``n``::

    MTH({})       = SHA-256()
    MTH({d0})     = SHA-256(0x00 ‖ d0)
    MTH(D[n])     = SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))

Because of that split, every subtree the RFC ever looks at is either *perfect* (``2**L``
leaves starting at a multiple of ``2**L``, whose hash never changes once its last leaf is in)
or lies on the right edge of the tree (and is cheap to rebuild from the perfect subtrees that
make it up). So a log need only store the hashes of perfect subtrees, each addressed by
``(level, index)``: level 0 holds the leaf hashes and node ``(L, i)`` covers leaves
``[i·2**L, (i+1)·2**L)``. :class:`NodeReader` is that store; :func:`root`,
:func:`inclusion_proof` and :func:`consistency_proof` read ``O(log n)`` nodes from it, never
the leaves. :func:`new_perfect_nodes` tells a sequencer which nodes an append completes, so it
can store them in the same transaction as the leaves; :class:`MemoryTree` is the in-memory
store.

Verification (:func:`verify_inclusion`, :func:`verify_consistency`) follows the RFC's
iterative algorithms (2.1.3.2 and 2.1.4.2) and needs no store at all. It answers ``False`` for
any proof it cannot accept, however malformed, and never raises: a verifier is fed untrusted
data and must not be crashable by it.

Edge cases (the RFC defines proofs for ``0 < m < n`` only; the rest is this module's choice):

- ``consistency_proof(m, m)`` is ``[]`` (``SUBPROOF(m, D[m], true)``), and it verifies iff the
  two roots are equal;
- ``consistency_proof(0, n)`` is ``[]``: the empty tree is a prefix of every tree. It verifies
  iff the old root is :data:`EMPTY_ROOT` (the only root a tree of size 0 can have); it says
  nothing about the new root, which the caller must take from a signed tree head;
- an inclusion proof for ``index >= size`` does not exist: generating one raises
  :class:`~gateway.errors.InvalidInput`, verifying one answers ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from gateway.errors import InvalidInput

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryTree",
    "NodeReader",
    "PerfectNode",
    "RightEdge",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "leaf_hash",
    "new_perfect_nodes",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

#: Bytes in every hash of the tree (SHA-256).
HASH_SIZE = 32

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: ``MTH({})``: the root of the empty tree, the SHA-256 of the empty string (RFC 9162 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: ``SHA-256(0x00 ‖ data)``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 ‖ left ‖ right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


#: ``(level, index, hash)``: the hash of the perfect subtree at ``(level, index)``, which
#: covers leaves ``[index·2**level, (index+1)·2**level)``. A plain tuple, so that a store can
#: pass it straight to an ``INSERT`` as its parameters.
PerfectNode = tuple[int, int, bytes]


class NodeReader(Protocol):
    """A store of perfect-subtree hashes, the only thing roots and proofs are computed from."""

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree at ``(level, index)``.

        Level 0 holds the leaf hashes; node ``(L, i)`` covers leaves ``[i·2**L, (i+1)·2**L)``.
        Raise :class:`LookupError` if the store does not hold it (the subtree is not complete
        yet): the functions of this module only ask for nodes that are complete in the tree
        size they are given, so that means the store is smaller than that size.
        """
        ...


class MemoryTree:
    """An in-memory log: every perfect-subtree hash, kept up to date leaf by leaf.

    Each level is one contiguous ``bytearray`` of 32-byte hashes rather than a list of
    ``bytes`` objects, which halves the memory of a tree of a million leaves (about 64 MB for
    the two million hashes it holds).
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """A tree holding ``leaf_hashes`` (already hashed with :func:`leaf_hash`), in order."""
        self._levels: list[bytearray] = []
        self._size = 0
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and complete the perfect subtrees it closes; its index."""
        current = _checked_hash(leaf_hash, "leaf_hash")
        index = self._size
        level = 0
        # A node at an odd index completes its parent: climb while that happens, like a
        # binary counter carrying.
        while True:
            if level == len(self._levels):
                self._levels.append(bytearray())
            row = self._levels[level]
            row += current
            if index & 1 == 0:
                break
            current = node_hash(bytes(row[-2 * HASH_SIZE : -HASH_SIZE]), current)
            index >>= 1
            level += 1
        self._size += 1
        return self._size - 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each of ``leaf_hashes`` in order."""
        for h in leaf_hashes:
            self.append(h)

    def node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree at ``(level, index)`` (see :class:`NodeReader`)."""
        if 0 <= level < len(self._levels) and index >= 0:
            row = self._levels[level]
            start = index * HASH_SIZE
            if start + HASH_SIZE <= len(row):
                return bytes(row[start : start + HASH_SIZE])
        raise LookupError(f"no complete subtree at level {level}, index {index}")

    def nodes(self) -> Iterator[PerfectNode]:
        """Every perfect-subtree hash held, level by level, index by index."""
        for level, row in enumerate(self._levels):
            for index in range(len(row) // HASH_SIZE):
                start = index * HASH_SIZE
                yield level, index, bytes(row[start : start + HASH_SIZE])


def new_perfect_nodes(
    size_before: int, leaf_hashes: Sequence[bytes], reader: NodeReader
) -> list[PerfectNode]:
    """The perfect subtrees that appending ``leaf_hashes`` to a tree of ``size_before`` completes.

    For a sequencer backed by a database: it reads the tree as it is (``reader`` holds every
    node complete at ``size_before``), calls this, and stores the leaves and the returned nodes
    in the same transaction, so the stored nodes always match the stored tree size. The result
    includes the new leaves themselves (level 0), then the new nodes of level 1, 2, ... each in
    index order; the nodes are independent rows and may be stored in any order.

    ``reader`` is asked for at most one node per level (the left sibling that was already
    complete), so a batch of ``k`` leaves costs ``O(k + log n)`` hashes and ``O(log n)`` reads.
    """
    if size_before < 0:
        raise InvalidInput("size", "must not be negative")
    row = [_checked_hash(h, "leaf_hash") for h in leaf_hashes]
    # At each level the new nodes are the indexes [first, first + len(row)): exactly those
    # that end after size_before and no later than the new size, since node (L, i) is
    # complete in a tree of s leaves iff i < s >> L.
    first = size_before
    level = 0
    out: list[PerfectNode] = [(0, first + i, h) for i, h in enumerate(row)]
    while True:
        start, end = first // 2, (first + len(row)) // 2
        if start >= end:
            return out
        parents: list[bytes] = []
        for parent in range(start, end):
            left, right = 2 * parent, 2 * parent + 1
            # The right child always ends after size_before, so it is new; the left child is
            # old only for the first parent, when the new nodes started at an odd index.
            left_hash = row[left - first] if left >= first else reader.node(level, left)
            parents.append(node_hash(left_hash, row[right - first]))
        level += 1
        first, row = start, parents
        out.extend((level, first + i, h) for i, h in enumerate(row))


def root(size: int, reader: NodeReader) -> bytes:
    """``MTH(D[0:size])``, the root of the tree's first ``size`` leaves."""
    if size < 0:
        raise InvalidInput("size", "must not be negative")
    if size == 0:
        return EMPTY_ROOT
    return _subtree_hash(0, size, reader)


class RightEdge:
    """The hashes of a tree's right edge: ``MTH(D[lo:size])`` for each range ``[lo, size)``
    the RFC's split makes on the way down the tree's right side, the root (``lo = 0``) first.

    They depend on the size alone (the nodes they come from never change), and every proof
    in the tree of that size takes its non-perfect siblings from them: a server computes them
    once per size (:meth:`read`, from the tree's frontier) and each proof then reads only
    perfect subtrees — about one node a level — with no hashing of partial ranges.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int, hashes: dict[int, bytes]) -> None:
        self.size = size
        self._hashes = hashes

    @staticmethod
    def nodes(size: int) -> list[tuple[int, int]]:
        """The nodes :meth:`read` reads: the perfect subtrees that make up ``D[0:size]``."""
        return _perfect_blocks(0, size) if size > 0 else []

    @classmethod
    def read(cls, size: int, reader: NodeReader) -> RightEdge:
        if size <= 0:
            raise InvalidInput("size", "must be positive")
        blocks = _perfect_blocks(0, size)
        hashes: dict[int, bytes] = {}
        level, index = blocks[-1]
        value = reader.node(level, index)
        hashes[index << level] = value
        for level, index in reversed(blocks[:-1]):
            value = node_hash(reader.node(level, index), value)
            hashes[index << level] = value
        return cls(size, hashes)

    @property
    def root(self) -> bytes:
        return self._hashes[0]

    def hash_of(self, lo: int, hi: int) -> bytes | None:
        """``MTH(D[lo:hi])`` if ``[lo, hi)`` is one of its ranges; None otherwise."""
        return self._hashes.get(lo) if hi == self.size else None


def inclusion_proof(
    index: int, size: int, reader: NodeReader, *, edge: RightEdge | None = None
) -> list[bytes]:
    """``PATH(index, D[size])`` (RFC 9162 2.1.3.1): the leaf's sibling first, the root's child last.

    With ``edge`` (the tree's :class:`RightEdge` of ``size``) the siblings on the right edge
    come from it. Raise :class:`~gateway.errors.InvalidInput` (field ``size`` or ``index``)
    unless ``0 <= index < size``.
    """
    _check_leaf(index, size)
    # Walk down from the root, taking the sibling of the half that holds the leaf at each
    # split. The RFC lists them leaf-up, so the list is reversed at the end.
    siblings: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            known = None if edge is None else edge.hash_of(mid, hi)
            siblings.append(known if known is not None else _subtree_hash(mid, hi, reader))
            hi = mid
        else:
            siblings.append(_subtree_hash(lo, mid, reader))
            lo = mid
    siblings.reverse()
    return siblings


def consistency_proof(old_size: int, new_size: int, reader: NodeReader) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` (RFC 9162 2.1.4.1), in the RFC's order.

    ``[]`` when ``old_size`` is 0 or equal to ``new_size`` (see the module's edge cases).
    Raise :class:`~gateway.errors.InvalidInput` (field ``from`` or ``to``) unless
    ``0 <= old_size <= new_size``.
    """
    if old_size < 0:
        raise InvalidInput("from", "must not be negative")
    if new_size < 0:
        raise InvalidInput("to", "must not be negative")
    if old_size > new_size:
        raise InvalidInput("from", f"must not exceed the new tree size {new_size}")
    if old_size in (0, new_size):
        return []
    # SUBPROOF(m, D[lo:hi], complete), unrolled: old_size stays absolute, in (lo, hi].
    siblings: list[bytes] = []
    lo, hi = 0, new_size
    complete = True
    while old_size != hi:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            siblings.append(_subtree_hash(mid, hi, reader))
            hi = mid
        else:
            siblings.append(_subtree_hash(lo, mid, reader))
            lo = mid
            complete = False
    siblings.reverse()
    # The base case SUBPROOF(m, D[m], b): nothing when the old tree is the whole subtree
    # reached (the verifier holds its root already), else that subtree's hash.
    if not complete:
        siblings.insert(0, _subtree_hash(lo, hi, reader))
    return siblings


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf ``leaf_hash`` at ``index`` in the tree of ``size`` with
    ``root`` (RFC 9162 2.1.3.2). ``False`` for any malformed input; never raises."""
    if not (_is_count(index) and _is_count(size) and index < size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False  # more hashes than the path has levels
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # On the right edge a node may have no right sibling: skip the levels where the
            # path goes straight up.
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree of ``old_size`` with ``old_root`` to be a prefix of the
    tree of ``new_size`` with ``new_root`` (RFC 9162 2.1.4.2). ``False`` for any malformed
    input; never raises. For ``old_size`` 0 and ``old_size == new_size`` see the module's edge
    cases."""
    if not (_is_count(old_size) and _is_count(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    if len(proof) == 0:
        return False
    path = list(proof)
    # A power-of-two old tree is a perfect subtree of the new one; the proof then omits its
    # root, which the verifier already has.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # more hashes than the trees have levels
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def _check_leaf(index: int, size: int) -> None:
    if size < 0:
        raise InvalidInput("size", "must not be negative")
    if not 0 <= index < size:
        raise InvalidInput("index", f"must be at least 0 and less than the tree size {size}")


def _split(n: int) -> int:
    """The RFC's ``k`` for ``n >= 2`` leaves: the largest power of two smaller than ``n``."""
    return 1 << ((n - 1).bit_length() - 1)


class _Recorder:
    """A reader that answers every node with zeros and remembers which were asked: which
    nodes a root or a proof reads depends on the sizes alone, never on the hashes."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def node(self, level: int, index: int) -> bytes:
        self.keys.append((level, index))
        return bytes(HASH_SIZE)


def inclusion_nodes(
    index: int, size: int, *, edge: RightEdge | None = None
) -> list[tuple[int, int]]:
    """The nodes ``(level, index)`` that :func:`inclusion_proof` of ``index`` in a tree of
    ``size`` and its :func:`root` read, the leaf's own included: a stored tree reads them in
    one query, however large the tree (InvalidInput as :func:`inclusion_proof`). With the
    tree's ``edge``, those the proof reads besides it (the root is the edge's).

    Named by the same walk as the proof's, without hashing: the sibling of each split is a
    range whose perfect subtrees are the set bits of its length (:func:`_perfect_blocks`)."""
    _check_leaf(index, size)
    keys = [(0, index)]
    lo, hi = 0, size
    while hi - lo > 1:
        half = _split(hi - lo)
        mid = lo + half
        if index < mid:  # the sibling is the right part: D[mid:hi]
            if edge is None or edge.hash_of(mid, hi) is None:
                keys.extend(_perfect_blocks(mid, hi - mid))
            hi = mid
        else:  # the perfect left half
            level = half.bit_length() - 1
            keys.append((level, lo >> level))
            lo = mid
    if edge is None:
        keys.extend(_perfect_blocks(0, size))
    return list(dict.fromkeys(keys))


def consistency_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The nodes that :func:`consistency_proof` between the two sizes and both roots read."""
    recorder = _Recorder()
    consistency_proof(old_size, new_size, recorder)
    root(old_size, recorder)
    root(new_size, recorder)
    return list(dict.fromkeys(recorder.keys))


def _perfect_blocks(lo: int, n: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up ``D[lo:lo+n]``, left to right:
    one per set bit of ``n``, largest first. Right for every range the RFC's split makes
    (``lo`` a multiple of a power of two at least ``n``: :func:`_aligned`)."""
    blocks = []
    while n:
        level = n.bit_length() - 1
        blocks.append((level, lo >> level))
        lo += 1 << level
        n -= 1 << level
    return blocks


def _aligned(lo: int, n: int) -> bool:
    """Whether ``lo`` is a multiple of the smallest power of two at least ``n``."""
    return lo & ((1 << (n - 1).bit_length()) - 1) == 0


def _subtree_hash(lo: int, hi: int, reader: NodeReader) -> bytes:
    """``MTH(D[lo:hi])`` for ``lo < hi``: one read if the range is a perfect subtree, else
    from the RFC's split (a perfect left half and a smaller right part) — for the ranges the
    split makes, the hash of the range's perfect subtrees folded from the right, at most one
    read per set bit of ``hi - lo`` and no recursion."""
    n = hi - lo
    if not _aligned(lo, n):  # not a range the split makes: the RFC's definition itself
        mid = lo + _split(n)
        return node_hash(_subtree_hash(lo, mid, reader), _subtree_hash(mid, hi, reader))
    blocks = _perfect_blocks(lo, n)
    value = reader.node(*blocks[-1])
    for level, index in reversed(blocks[:-1]):
        value = node_hash(reader.node(level, index), value)
    return value


def _checked_hash(value: bytes, field: str) -> bytes:
    """``value`` as ``bytes`` if it is a hash; :class:`InvalidInput` on ``field`` if not."""
    if not _is_hash(value):
        raise InvalidInput(field, f"must be {HASH_SIZE} bytes")
    return bytes(value)


def _is_hash(value: object) -> bool:
    """Whether ``value`` can be a hash of this tree (bytes-like and 32 long)."""
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _is_proof(proof: object) -> bool:
    """Whether ``proof`` is a sequence of hashes (a str or bytes is not one, though iterable)."""
    return (
        isinstance(proof, Sequence)
        and not isinstance(proof, str | bytes | bytearray)
        and all(_is_hash(p) for p in proof)
    )


def _is_count(value: object) -> bool:
    """Whether ``value`` is a usable index or size: an int (not a bool) that is not negative."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
