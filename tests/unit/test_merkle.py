"""Merkle trees after RFC 9162 2.1: roots, proofs, verification and incremental node storage.

Expected values come from the RFC's recursive definitions (MTH, PATH, SUBPROOF) written out
below over plain lists of leaves, independently of the module under test, and from the
Certificate Transparency reference vectors.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    NodeReader,
    RightEdge,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    new_perfect_nodes,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from gateway.errors import InvalidInput

# --- the RFC's definitions, written out recursively over D = DATA ---------------------------

MAX_SIZE = 300
DATA = [f"audit entry {i}".encode() for i in range(MAX_SIZE)]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1), by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(a: int, b: int) -> bytes:
    """MTH(D[a:b]) by the RFC's recursion (memoized: every tree here is a prefix of DATA)."""
    n = b - a
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + DATA[a])
    k = _k(n)
    return _sha256(b"\x01" + ref_mth(a, a + k) + ref_mth(a + k, b))


def ref_path(m: int, a: int, b: int) -> list[bytes]:
    """PATH(m, D[a:b]), m relative to a."""
    n = b - a
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, a, a + k), ref_mth(a + k, b)]
    return [*ref_path(m - k, a + k, b), ref_mth(a, a + k)]


def ref_subproof(m: int, a: int, b: int, complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[a:b], complete), m relative to a."""
    n = b - a
    if m == n:
        return [] if complete else [ref_mth(a, b)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, a, a + k, complete), ref_mth(a + k, b)]
    return [*ref_subproof(m - k, a + k, b, False), ref_mth(a, a + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n]) for 0 < m <= n."""
    return ref_subproof(m, 0, n, True)


# --- stores ---------------------------------------------------------------------------------


class DictReader:
    """A NodeReader over a mapping, as a database-backed store would be."""

    def __init__(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        self.nodes = nodes
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.nodes[level, index]


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    """One tree of MAX_SIZE leaves: every smaller tree is a prefix, so it serves all sizes."""
    return MemoryTree(leaf_hash(d) for d in DATA)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


# --- hashing and known answers --------------------------------------------------------------

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_hashes_are_domain_separated_sha256() -> None:
    assert leaf_hash(b"x") == _sha256(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha256(b"\x01" + b"a" * 32 + b"b" * 32)
    assert EMPTY_ROOT == _sha256(b"") == bytes.fromhex(CT_ROOTS[0])


def test_certificate_transparency_reference_vectors() -> None:
    ct = MemoryTree(leaf_hash(d) for d in CT_LEAVES)
    for size, expected in enumerate(CT_ROOTS):
        assert root(size, ct).hex() == expected
    assert [h.hex() for h in inclusion_proof(0, 8, ct)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [h.hex() for h in inclusion_proof(5, 8, ct)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]


# --- roots ------------------------------------------------------------------------------------


def test_empty_tree() -> None:
    empty = MemoryTree()
    assert empty.size == 0
    assert root(0, empty) == EMPTY_ROOT == ref_mth(0, 0)
    assert list(empty.nodes()) == []
    assert consistency_proof(0, 0, empty) == []
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


def test_one_leaf() -> None:
    one = MemoryTree([leaf_hash(DATA[0])])
    assert root(1, one) == leaf_hash(DATA[0]) == ref_mth(0, 1)
    assert inclusion_proof(0, 1, one) == []
    assert verify_inclusion(leaf_hash(DATA[0]), 0, 1, [], root(1, one))
    assert not verify_inclusion(leaf_hash(DATA[1]), 0, 1, [], root(1, one))


def test_every_root_up_to_max_size(tree: MemoryTree) -> None:
    assert tree.size == MAX_SIZE
    for size in range(MAX_SIZE + 1):
        assert root(size, tree) == ref_mth(0, size), size


def test_growing_tree_roots_match() -> None:
    growing = MemoryTree()
    for i, d in enumerate(DATA[:70]):
        assert growing.append(leaf_hash(d)) == i
        assert root(growing.size, growing) == ref_mth(0, i + 1)


# --- inclusion --------------------------------------------------------------------------------


def test_every_inclusion_proof_up_to_130(tree: MemoryTree) -> None:
    for size in range(1, 131):
        r = ref_mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, tree)
            assert proof == ref_path(index, 0, size), (index, size)
            assert verify_inclusion(leaf_hash(DATA[index]), index, size, proof, r)


def test_sampled_inclusion_proofs_up_to_max_size(tree: MemoryTree) -> None:
    rng = random.Random(9162)
    for size in range(1, MAX_SIZE + 1):
        r = ref_mth(0, size)
        sample = {0, size // 2, size - 1, rng.randrange(size), rng.randrange(size)}
        for index in sample:
            proof = inclusion_proof(index, size, tree)
            assert proof == ref_path(index, 0, size), (index, size)
            assert verify_inclusion(leaf_hash(DATA[index]), index, size, proof, r)


def test_inclusion_tampering_fails(tree: MemoryTree) -> None:
    for size in range(1, 40):
        r = ref_mth(0, size)
        for index in range(size):
            leaf = leaf_hash(DATA[index])
            proof = inclusion_proof(index, size, tree)
            for i in range(len(proof)):
                changed = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
                assert not verify_inclusion(leaf, index, size, changed, r)
            assert not verify_inclusion(_flip(leaf), index, size, proof, r)
            assert not verify_inclusion(leaf, index, size, proof, _flip(r))
            for other in range(size + 2):
                if other != index:
                    assert not verify_inclusion(leaf, other, size, proof, r), (other, index)
            for other_size in range(1, 42):
                if other_size != size:
                    # The proof claimed against the tree head of another size.
                    wrong = ref_mth(0, other_size)
                    assert not verify_inclusion(leaf, index, other_size, proof, wrong)
            if proof:
                assert not verify_inclusion(leaf, index, size, proof[:-1], r)
                assert not verify_inclusion(leaf, index, size, proof[1:], r)
            assert not verify_inclusion(leaf, index, size, [*proof, proof[-1] if proof else r], r)
            assert not verify_inclusion(leaf, index, size, [r, *proof], r)


def test_inclusion_proof_for_leaf_of_another_tree_size_fails(tree: MemoryTree) -> None:
    # A proof for leaf 0 in a tree of 3 has the same shape as one in a tree of 4; it must still
    # fail against the head of size 4, the only root a verifier would hold for that size.
    proof = inclusion_proof(0, 3, tree)
    assert not verify_inclusion(leaf_hash(DATA[0]), 0, 4, proof, root(4, tree))


# --- consistency ------------------------------------------------------------------------------


def test_every_consistency_proof_up_to_70(tree: MemoryTree) -> None:
    for new in range(1, 71):
        new_root = ref_mth(0, new)
        for old in range(1, new + 1):
            proof = consistency_proof(old, new, tree)
            assert proof == ref_proof(old, new), (old, new)
            assert verify_consistency(old, new, ref_mth(0, old), new_root, proof)


def test_sampled_consistency_proofs_up_to_max_size(tree: MemoryTree) -> None:
    rng = random.Random(6962)
    for _ in range(600):
        new = rng.randint(1, MAX_SIZE)
        old = rng.randint(1, new)
        proof = consistency_proof(old, new, tree)
        assert proof == ref_proof(old, new), (old, new)
        assert verify_consistency(old, new, ref_mth(0, old), ref_mth(0, new), proof)
    for old, new in [(1, 300), (128, 256), (256, 300), (255, 256), (299, 300), (300, 300)]:
        proof = consistency_proof(old, new, tree)
        assert proof == ref_proof(old, new)
        assert verify_consistency(old, new, ref_mth(0, old), ref_mth(0, new), proof)


def test_consistency_tampering_fails(tree: MemoryTree) -> None:
    for new in range(2, 40):
        new_root = ref_mth(0, new)
        for old in range(1, new):
            old_root = ref_mth(0, old)
            proof = consistency_proof(old, new, tree)
            assert proof
            for i in range(len(proof)):
                changed = [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
                assert not verify_consistency(old, new, old_root, new_root, changed)
            assert not verify_consistency(old, new, new_root, old_root, proof)
            assert not verify_consistency(old, new, _flip(old_root), new_root, proof)
            assert not verify_consistency(old, new, old_root, _flip(new_root), proof)
            assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
            assert not verify_consistency(old, new, old_root, new_root, proof[1:])
            assert not verify_consistency(old, new, old_root, new_root, [*proof, proof[-1]])
            assert not verify_consistency(old, new, old_root, new_root, [old_root, *proof])
            for other in range(1, 42):
                if other != old:
                    assert not verify_consistency(other, new, ref_mth(0, other), new_root, proof)
                if other != new and other >= old:
                    assert not verify_consistency(old, other, old_root, ref_mth(0, other), proof)


def test_consistency_edge_cases(tree: MemoryTree) -> None:
    r5, r9 = ref_mth(0, 5), ref_mth(0, 9)
    # Equal sizes: an empty proof, and the roots must be equal.
    assert consistency_proof(5, 5, tree) == []
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r9, [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    # From the empty tree: an empty proof, and the old root must be the empty root.
    assert consistency_proof(0, 9, tree) == []
    assert verify_consistency(0, 9, EMPTY_ROOT, r9, [])
    assert not verify_consistency(0, 9, r5, r9, [])
    assert not verify_consistency(0, 9, EMPTY_ROOT, r9, [r9])
    # 0 < old < new never has an empty proof.
    assert not verify_consistency(5, 9, r5, r9, [])
    assert not verify_consistency(4, 9, ref_mth(0, 4), r9, [])


# --- malformed input --------------------------------------------------------------------------


def test_verification_never_raises_on_malformed_input(tree: MemoryTree) -> None:
    leaf, r = leaf_hash(DATA[3]), ref_mth(0, 10)
    proof = inclusion_proof(3, 10, tree)
    assert verify_inclusion(leaf, 3, 10, proof, r)
    # Bytes-like hashes, as some database drivers return them, are accepted too.
    as_bytearrays = [bytearray(p) for p in proof]
    assert verify_inclusion(bytearray(leaf), 3, 10, as_bytearrays, r)  # type: ignore[arg-type]
    bad_calls: list[Callable[[], bool]] = [
        lambda: verify_inclusion(leaf, 10, 10, proof, r),
        lambda: verify_inclusion(leaf, 11, 10, proof, r),
        lambda: verify_inclusion(leaf, -1, 10, proof, r),
        lambda: verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT),
        lambda: verify_inclusion(leaf, 3, -10, proof, r),
        lambda: verify_inclusion(leaf[:31], 3, 10, proof, r),
        lambda: verify_inclusion(leaf, 3, 10, proof, r + b"\x00"),
        lambda: verify_inclusion(leaf, 3, 10, [*proof[:-1], proof[-1][:16]], r),
        lambda: verify_inclusion(leaf, 3, 10, [p.hex() for p in proof], r),  # type: ignore[misc]
        lambda: verify_inclusion(leaf, 3, 10, b"".join(proof), r),  # type: ignore[arg-type]
        lambda: verify_inclusion(leaf, 3, 10, None, r),  # type: ignore[arg-type]
        lambda: verify_inclusion(leaf, "3", 10, proof, r),  # type: ignore[arg-type]
        lambda: verify_inclusion(leaf, True, 10, proof, r),
        lambda: verify_inclusion(None, 3, 10, proof, r),  # type: ignore[arg-type]
        lambda: verify_inclusion(leaf, 3, 10, [*proof, *[r] * 100], r),
    ]
    old_root, new_root = ref_mth(0, 6), ref_mth(0, 10)
    cproof = consistency_proof(6, 10, tree)
    assert verify_consistency(6, 10, old_root, new_root, cproof)
    bad_calls += [
        lambda: verify_consistency(10, 6, new_root, old_root, cproof),
        lambda: verify_consistency(-1, 10, old_root, new_root, cproof),
        lambda: verify_consistency(6, -10, old_root, new_root, cproof),
        lambda: verify_consistency(6, 10, old_root[:31], new_root, cproof),
        lambda: verify_consistency(6, 10, old_root, None, cproof),  # type: ignore[arg-type]
        lambda: verify_consistency(6, 10, old_root, new_root, [c[:31] for c in cproof]),
        lambda: verify_consistency(6, 10, old_root, new_root, "proof"),  # type: ignore[arg-type]
        lambda: verify_consistency(6, 10, old_root, new_root, [*cproof, *[r] * 100]),
        lambda: verify_consistency(6.0, 10, old_root, new_root, cproof),  # type: ignore[arg-type]
    ]
    for call in bad_calls:
        assert call() is False


def test_bad_arguments_raise_invalid_input(tree: MemoryTree) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: root(-1, tree), "size"),
        (lambda: inclusion_proof(0, -1, tree), "size"),
        (lambda: inclusion_proof(0, 0, tree), "index"),
        (lambda: inclusion_proof(5, 5, tree), "index"),
        (lambda: inclusion_proof(-1, 5, tree), "index"),
        (lambda: consistency_proof(-1, 5, tree), "from"),
        (lambda: consistency_proof(0, -1, tree), "to"),
        (lambda: consistency_proof(6, 5, tree), "from"),
        (lambda: new_perfect_nodes(-1, [], tree), "size"),
        (lambda: new_perfect_nodes(0, [b"short"], tree), "leaf_hash"),
        (lambda: MemoryTree().append(b"x" * 33), "leaf_hash"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.field == field


def test_asking_beyond_the_store_is_a_lookup_error(tree: MemoryTree) -> None:
    with pytest.raises(LookupError):
        root(MAX_SIZE + 1, tree)
    with pytest.raises(LookupError):
        tree.node(0, MAX_SIZE)
    with pytest.raises(LookupError):
        tree.node(-1, 0)
    with pytest.raises(LookupError):
        tree.node(40, 0)


# --- incremental storage ----------------------------------------------------------------------


def _all_perfect_nodes(size: int) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of D[0:size], from the reference MTH."""
    nodes: dict[tuple[int, int], bytes] = {}
    level = 0
    while 1 << level <= size:
        width = 1 << level
        for index in range(size // width):
            nodes[level, index] = ref_mth(index * width, (index + 1) * width)
        level += 1
    return nodes


def test_memory_tree_holds_exactly_the_perfect_subtrees(tree: MemoryTree) -> None:
    assert {(level, index): h for level, index, h in tree.nodes()} == _all_perfect_nodes(MAX_SIZE)
    for size in (1, 2, 3, 7, 8, 64, 65, 127):
        small = MemoryTree(leaf_hash(d) for d in DATA[:size])
        assert {(level, index): h for level, index, h in small.nodes()} == _all_perfect_nodes(size)


def test_new_perfect_nodes_in_random_batches() -> None:
    rng = random.Random(1)
    for _ in range(5):
        stored: dict[tuple[int, int], bytes] = {}
        memory = MemoryTree()
        size = 0
        while size < MAX_SIZE:
            count = min(rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 31, 64]), MAX_SIZE - size)
            batch = [leaf_hash(d) for d in DATA[size : size + count]]
            reader = DictReader(stored)
            added = new_perfect_nodes(size, batch, reader)
            # Only new nodes, each once, level by level, and at most one read per level.
            keys = [(level, index) for level, index, _ in added]
            assert len(set(keys)) == len(keys)
            assert not set(keys) & set(stored)
            assert keys == sorted(keys)
            assert all(len(n) == 3 and len(n[2]) == 32 for n in added)
            assert reader.reads <= (size + count).bit_length()
            stored.update({(level, index): h for level, index, h in added})
            memory.extend(batch)
            size += count
            assert stored == {(level, index): h for level, index, h in memory.nodes()}
        assert stored == _all_perfect_nodes(MAX_SIZE)


def test_dict_reader_gives_the_same_roots_and_proofs(tree: MemoryTree) -> None:
    stored = {
        (level, index): h for level, index, h in new_perfect_nodes(0, list(tree_leaves()), tree)
    }
    reader: NodeReader = DictReader(stored)
    rng = random.Random(7)
    for _ in range(200):
        new = rng.randint(1, MAX_SIZE)
        old, index = rng.randint(0, new), rng.randrange(new)
        assert root(new, reader) == root(new, tree)
        assert inclusion_proof(index, new, reader) == inclusion_proof(index, new, tree)
        assert consistency_proof(old, new, reader) == consistency_proof(old, new, tree)


def tree_leaves() -> list[bytes]:
    return [leaf_hash(d) for d in DATA]


def test_proofs_read_logarithmically_many_nodes(tree: MemoryTree) -> None:
    stored = {(level, index): h for level, index, h in tree.nodes()}
    for new in (255, 256, 257, 299, 300):
        bound = 2 * new.bit_length() + 1
        for index in (0, new // 3, new - 1):
            reader = DictReader(stored)
            inclusion_proof(index, new, reader)
            assert reader.reads <= bound
        for old in (1, new // 2, new - 1):
            reader = DictReader(stored)
            consistency_proof(old, new, reader)
            assert reader.reads <= bound
        reader = DictReader(stored)
        root(new, reader)
        assert reader.reads == bin(new).count("1")


# --- property ---------------------------------------------------------------------------------


@st.composite
def sizes_and_indexes(draw: st.DrawFn) -> tuple[int, int, int]:
    new = draw(st.integers(1, MAX_SIZE))
    return new, draw(st.integers(0, new - 1)), draw(st.integers(0, new))


@functools.cache
def _shared_tree() -> MemoryTree:
    # Hypothesis does not mix with function-scoped fixtures; one module-level tree instead.
    return MemoryTree(tree_leaves())


@settings(max_examples=150, deadline=None)
@given(sizes_and_indexes(), st.binary(min_size=32, max_size=32))
def test_property_proofs_match_the_rfc_and_bind_their_leaf(
    case: tuple[int, int, int], stranger: bytes
) -> None:
    new, index, old = case
    t = _shared_tree()
    new_root, old_root = ref_mth(0, new), ref_mth(0, old)
    proof = inclusion_proof(index, new, t)
    assert proof == ref_path(index, 0, new)
    assert verify_inclusion(leaf_hash(DATA[index]), index, new, proof, new_root)
    assert not verify_inclusion(stranger, index, new, proof, new_root)
    cproof = consistency_proof(old, new, t)
    assert cproof == (ref_proof(old, new) if old else [])
    assert verify_consistency(old, new, old_root, new_root, cproof)
    if old not in (0, new):
        assert not verify_consistency(old, new, old_root, stranger, cproof)


class _Only:
    """A reader holding exactly the nodes ``keys`` of ``tree``: anything else is missing."""

    def __init__(self, tree: MemoryTree, keys: list[tuple[int, int]]) -> None:
        self._nodes = {k: tree.node(*k) for k in keys}

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise LookupError((level, index)) from None


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_the_nodes_named_ahead_are_all_a_proof_and_its_root_read(
    size: int, data: st.DataObject
) -> None:
    tree = MemoryTree(leaf_hash(n.to_bytes(4, "big")) for n in range(size))
    index = data.draw(st.integers(0, size - 1))
    named = inclusion_nodes(index, size)
    only = _Only(tree, named)  # one query's worth: the proof needs nothing more
    assert inclusion_proof(index, size, only) == inclusion_proof(index, size, tree)
    assert root(size, only) == root(size, tree)
    assert only.node(0, index) == tree.node(0, index)
    assert len(named) <= 2 * size.bit_length() + 1  # about two nodes per level, not per leaf
    old = data.draw(st.integers(1, size))
    both = _Only(tree, consistency_nodes(old, size))
    assert consistency_proof(old, size, both) == consistency_proof(old, size, tree)
    assert (root(old, both), root(size, both)) == (root(old, tree), root(size, tree))


class _Asked:
    """A reader that answers zeros and records what was asked (the oracle for which nodes a
    proof and its root read: they depend on the sizes alone)."""

    def __init__(self) -> None:
        self.keys: set[tuple[int, int]] = set()

    def node(self, level: int, index: int) -> bytes:
        self.keys.add((level, index))
        return bytes(32)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 5000), data=st.data())
def test_the_nodes_named_ahead_are_exactly_those_the_proof_and_root_read(
    size: int, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, size - 1))
    asked = _Asked()
    inclusion_proof(index, size, asked)
    root(size, asked)
    named = inclusion_nodes(index, size)
    assert len(named) == len(set(named))
    assert set(named) == asked.keys | {(0, index)}


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, MAX_SIZE), data=st.data())
def test_proofs_with_the_right_edge_are_the_rfcs(size: int, data: st.DataObject) -> None:
    """Oracle: a proof that takes its right-edge siblings from the size's RightEdge, reading
    only the nodes named for it, is the RFC's path; the edge's root is the tree's."""
    tree = MemoryTree(leaf_hash(d) for d in DATA[:size])
    edge = RightEdge.read(size, _Only(tree, RightEdge.nodes(size)))
    assert edge.root == ref_mth(0, size) == root(size, tree)
    index = data.draw(st.integers(0, size - 1))
    only = _Only(tree, inclusion_nodes(index, size, edge=edge))
    proof = inclusion_proof(index, size, only, edge=edge)
    assert proof == ref_path(index, 0, size)
    assert verify_inclusion(leaf_hash(DATA[index]), index, size, proof, edge.root)
    assert len(inclusion_nodes(index, size, edge=edge)) <= size.bit_length() + 1
