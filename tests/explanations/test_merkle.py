"""The RFC 6962 / RFC 9162 Merkle tree: published vectors, every small tree, corruptions, node store."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import cache, partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explanations.merkle import (
    EMPTY_ROOT,
    MemoryNodes,
    NodeGetter,
    consistency_proof,
    consistency_proof_from,
    inclusion_proof,
    inclusion_proof_from,
    leaf_hash,
    node_hash,
    perfect_nodes_completed,
    root,
    root_from,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    """Bytes from hex."""
    return bytes.fromhex(text)


# --- Published vectors -------------------------------------------------------------------------
# Source: transparency-dev/merkle testonly/constants.go (LeafInputs, NodeHashes, RootHashes); the
# same values are in google/trillian merkle/testonly/constants.go.

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
LEAVES = [leaf_hash(data) for data in LEAF_INPUTS]

# NODE_HASHES[level][index]: every perfect subtree of the 8-leaf tree.
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# ROOT_HASHES[size] for the first `size` leaves, size 0..8.
ROOT_HASHES = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# Source: transparency-dev/merkle proof/verify_test.go (inclusionProofs, consistencyProofs), also
# in google/trillian merkle/log_verifier_test.go. Their leaf numbers are 1-based; here
# (index, size, proof) uses the 0-based leaf index.
INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (old_size, new_size, proof)
CONSISTENCY_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

# Source: transparency-dev/merkle proof/proof_test.go (TestInclusion, TestConsistency): which
# stored nodes make up each proof. A (level, index) pair is one stored node; a list of pairs is
# the one proof element rebuilt from them as that project's Nodes.Rehash does (start from the
# first, then hash = node_hash(next, hash)): the partial right subtree.
Layout = list[tuple[int, int] | list[tuple[int, int]]]

INCLUSION_LAYOUTS: dict[tuple[int, int], Layout] = {  # (size, index)
    (1, 0): [],
    (2, 0): [(0, 1)],
    (2, 1): [(0, 0)],
    (3, 1): [(0, 0), (0, 2)],
    (7, 0): [(0, 1), (1, 1), [(0, 6), (1, 2)]],
    (7, 1): [(0, 0), (1, 1), [(0, 6), (1, 2)]],
    (7, 2): [(0, 3), (1, 0), [(0, 6), (1, 2)]],
    (7, 3): [(0, 2), (1, 0), [(0, 6), (1, 2)]],
    (7, 4): [(0, 5), (0, 6), (2, 0)],
    (7, 5): [(0, 4), (0, 6), (2, 0)],
    (7, 6): [(1, 2), (2, 0)],
    (4, 2): [(0, 3), (1, 0)],
    (5, 3): [(0, 2), (1, 0), (0, 4)],
    (6, 3): [(0, 2), (1, 0), (1, 2)],
    (6, 4): [(0, 5), (2, 0)],
    (15, 10): [(0, 11), (1, 4), [(0, 14), (1, 6)], (3, 0)],
    (31, 24): [(0, 25), (1, 13), [(0, 30), (1, 14)], (3, 2), (4, 0)],
    (95, 81): [(0, 80), (1, 41), (2, 21), [(0, 94), (1, 46), (2, 22)], (4, 4), (6, 0)],
}

CONSISTENCY_LAYOUTS: dict[tuple[int, int], Layout] = {  # (old_size, new_size)
    (1, 2): [(0, 1)],
    (1, 4): [(0, 1), (1, 1)],
    (1, 6): [(0, 1), (1, 1), (1, 2)],
    (2, 3): [(0, 2)],
    (2, 8): [(1, 1), (2, 1)],
    (3, 7): [(0, 2), (0, 3), (1, 0), [(0, 6), (1, 2)]],
    (4, 7): [[(0, 6), (1, 2)]],
    (5, 7): [(0, 4), (0, 5), (0, 6), (2, 0)],
    (6, 7): [(1, 2), (0, 6), (2, 0)],
    (7, 8): [(0, 6), (0, 7), (1, 2), (2, 0)],
    (1, 1): [],
    (2, 2): [],
    (3, 3): [],
    (4, 4): [],
    (5, 5): [],
    (7, 7): [],
    (8, 8): [],
    (2, 4): [(1, 1)],
    (3, 5): [(0, 2), (0, 3), (1, 0), (0, 4)],
    (3, 6): [(0, 2), (0, 3), (1, 0), (1, 2)],
    (4, 6): [(1, 2)],
    (1, 7): [(0, 1), (1, 1), [(0, 6), (1, 2)]],
    (10, 15): [(1, 4), (1, 5), [(0, 14), (1, 6)], (3, 0)],
    (24, 31): [(3, 2), [(0, 30), (1, 14), (2, 6)], (4, 0)],
    (81, 95): [(0, 80), (0, 81), (1, 41), (2, 21), [(0, 94), (1, 46), (2, 22)], (4, 4), (6, 0)],
}


# --- An independent reference: RFC 6962 §2.1 transcribed over leaf ranges ---------------------
# PATH and SUBPROOF are written to name the ranges D[start:end] whose MTH make up a proof; MTH is
# computed naively with hashlib. The same recursion gives, for any (index, size) or
# (old_size, new_size), the formula that turns the hashes a verifier is handed into the root(s):
# that is the second, structural verifier the RFC 9162 verifiers are checked against.

Range = tuple[int, int]
Expr = str | int | tuple["Expr", "Expr"]  # an atom ("leaf", "old", proof position) or a node


def _sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n, found by counting."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path_ranges(m: int, start: int, end: int) -> list[Range]:
    """PATH(m, D[start:end]) as the ranges whose MTH form it, lowest first."""
    if end - start == 1:
        return []
    k = _k(end - start)
    if m < k:
        return [*path_ranges(m, start, start + k), (start + k, end)]
    return [*path_ranges(m - k, start + k, end), (start, start + k)]


def subproof_ranges(m: int, start: int, end: int, b: bool) -> list[Range]:
    """SUBPROOF(m, D[start:end], b) as ranges."""
    if m == end - start:
        return [] if b else [(start, end)]
    k = _k(end - start)
    if m <= k:
        return [*subproof_ranges(m, start, start + k, b), (start + k, end)]
    return [*subproof_ranges(m - k, start + k, end, False), (start, start + k)]


def proof_ranges(m: int, n: int) -> list[Range]:
    """PROOF(m, D[n]) as ranges; empty for m == 0 and m == n, where the RFC defines none."""
    return subproof_ranges(m, 0, n, True) if 0 < m < n else []


class HonestLog:
    """An honest log over fixed leaves: MTH of any range (memoised), and its proofs."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._mth: dict[Range, bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        if (start, end) not in self._mth:
            n = end - start
            if n == 0:
                value = _sha()
            elif n == 1:
                value = self.leaves[start]
            else:
                k = _k(n)
                value = _sha(b"\x01", self.mth(start, start + k), self.mth(start + k, end))
            self._mth[(start, end)] = value
        return self._mth[(start, end)]

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def path(self, index: int, size: int) -> list[bytes]:
        return [self.mth(*r) for r in path_ranges(index, 0, size)]

    def proof(self, old_size: int, new_size: int) -> list[bytes]:
        return [self.mth(*r) for r in proof_ranges(old_size, new_size)]


def formula(start: int, end: int, atoms: dict[Range, str | int]) -> Expr:
    """MTH(D[start:end]) written over the atoms: the hashes the verifier is handed."""
    if (start, end) in atoms:
        return atoms[(start, end)]
    assert end - start > 1, f"the proof does not cover {(start, end)}"
    k = _k(end - start)
    return (formula(start, start + k, atoms), formula(start + k, end, atoms))


@cache
def inclusion_shape(index: int, size: int) -> tuple[int, Expr]:
    """What verifying (index, size) computes: the proof length and the root's formula."""
    ranges = path_ranges(index, 0, size)
    atoms: dict[Range, str | int] = {r: j for j, r in enumerate(ranges)}
    atoms[(index, index + 1)] = "leaf"
    return len(ranges), formula(0, size, atoms)


@cache
def consistency_shape(old_size: int, new_size: int) -> tuple[int, Expr, Expr]:
    """What verifying 0 < old_size < new_size computes: proof length, old and new root formulas.

    When old_size is a power of two the proof leaves out MTH(D[0:m]) (RFC 6962 §2.1.2, b = true):
    the verifier uses the old root it holds.
    """
    ranges = proof_ranges(old_size, new_size)
    atoms: dict[Range, str | int] = {r: j for j, r in enumerate(ranges)}
    if old_size & (old_size - 1) == 0:
        atoms[(0, old_size)] = "old"
    return len(ranges), formula(0, old_size, atoms), formula(0, new_size, atoms)


def evaluate(expr: Expr, values: dict[str | int, bytes]) -> bytes:
    if isinstance(expr, tuple):
        return _sha(b"\x01", evaluate(expr[0], values), evaluate(expr[1], values))
    return values[expr]


def _hashes(*values: object) -> bool:
    return all(isinstance(v, bytes) and len(v) == 32 for v in values)


def recomputes_inclusion(
    leaf: bytes, index: int, size: int, proof: list[bytes], root_hash: bytes
) -> bool:
    """The structural verifier: does PATH's formula for (index, size) give the root?"""
    if not 0 <= index < size or not _hashes(leaf, root_hash, *proof):
        return False
    length, root_formula = inclusion_shape(index, size)
    if len(proof) != length:
        return False
    return root_hash == evaluate(root_formula, {"leaf": leaf, **dict(enumerate(proof))})


def recomputes_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """The structural verifier, with the API's rules for size 0 and equal sizes."""
    if not 0 <= old_size <= new_size or not _hashes(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    length, old_formula, new_formula = consistency_shape(old_size, new_size)
    if len(proof) != length:
        return False
    values: dict[str | int, bytes] = {"old": old_root, **dict(enumerate(proof))}
    return old_root == evaluate(old_formula, values) and new_root == evaluate(new_formula, values)


# --- Shared data -------------------------------------------------------------------------------


def numbered_leaves(count: int) -> list[bytes]:
    """``count`` distinct leaf hashes."""
    return [leaf_hash(b"entry %d" % i) for i in range(count)]


def store_of(leaves: Sequence[bytes]) -> MemoryNodes:
    """A MemoryNodes holding ``leaves`` in order."""
    store = MemoryNodes()
    for leaf in leaves:
        store.append(leaf)
    return store


SMALL = 64
SMALL_LEAVES = numbered_leaves(SMALL)
BIG_LEAVES = numbered_leaves(2049)


@cache
def small_store() -> MemoryNodes:
    return store_of(SMALL_LEAVES)


@cache
def small_log() -> HonestLog:
    return HonestLog(SMALL_LEAVES)


@cache
def big_store() -> MemoryNodes:
    return store_of(BIG_LEAVES)


@cache
def big_log() -> HonestLog:
    return HonestLog(BIG_LEAVES)


def property_settings(default: int) -> settings:
    """``default`` examples (``MIAOPI_PROPERTY_EXAMPLES`` overrides it) and no deadline."""
    return settings(
        max_examples=int(os.environ.get("MIAOPI_PROPERTY_EXAMPLES") or default), deadline=None
    )


def resolve(layout: Layout, get: NodeGetter) -> list[bytes]:
    """The proof hashes that a layout from proof_test.go describes."""
    proof = []
    for item in layout:
        if isinstance(item, tuple):
            proof.append(get(*item))
        else:
            acc = get(*item[0])
            for node in item[1:]:
                acc = node_hash(get(*node), acc)
            proof.append(acc)
    return proof


def recording(store: MemoryNodes, size: int) -> tuple[NodeGetter, list[tuple[int, int]]]:
    """A getter that records each read and fails on a node not inside the tree of ``size``."""
    reads: list[tuple[int, int]] = []

    def get(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"read ({level}, {index}) beyond size {size}"
        reads.append((level, index))
        return store.get(level, index)

    return get, reads


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit flipped (bit 0 is the low bit of the first byte)."""
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# sha256SomeHash of transparency-dev/merkle proof/verify_test.go: a hash in no tree here.
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
FLIPS = (0, 7, 131, 255)  # bits flipped in a hash: first and last bit of byte 0, middle, last


def proof_variants(proof: list[bytes], extras: Sequence[bytes]) -> list[tuple[str, list[bytes]]]:
    """Every single corruption of a proof list: bit flips, removals, insertions anywhere."""
    variants: list[tuple[str, list[bytes]]] = []
    for i, element in enumerate(proof):
        for bit in FLIPS:
            variants.append(
                (f"proof[{i}] bit {bit}", [*proof[:i], flip(element, bit), *proof[i + 1 :]])
            )
        variants.append((f"proof[{i}] removed", [*proof[:i], *proof[i + 1 :]]))
    candidates = [
        ("random hash", SOME_HASH),
        ("empty bytes", b""),
        *((f"extra {i}", e) for i, e in enumerate(extras)),
    ]
    candidates += [(f"copy of proof[{i}]", element) for i, element in enumerate(proof)]
    for i in range(len(proof) + 1):
        for name, extra in candidates:
            variants.append((f"{name} inserted at {i}", [*proof[:i], extra, *proof[i:]]))
    return variants


InclusionProbe = tuple[str, tuple[bytes, int, int, list[bytes], bytes]]
ConsistencyProbe = tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]


def inclusion_probes(
    leaf: bytes, index: int, size: int, proof: list[bytes], root_hash: bytes
) -> list[InclusionProbe]:
    """The valid input, then each one-change corruption: index, size, leaf, root, proof."""
    probes: list[InclusionProbe] = [("valid", (leaf, index, size, proof, root_hash))]
    for name, other in [
        ("index - 1", index - 1),
        ("index + 1", index + 1),
        ("index ^ 2", index ^ 2),
    ]:
        probes.append((name, (leaf, other, size, proof, root_hash)))
    for name, other in [
        ("size - 1", size - 1),
        ("size + 1", size + 1),
        ("size * 2", size * 2),
        ("size // 2", size // 2),
    ]:
        probes.append((name, (leaf, index, other, proof, root_hash)))
    for bit in FLIPS:
        probes.append((f"leaf bit {bit}", (flip(leaf, bit), index, size, proof, root_hash)))
        probes.append((f"root bit {bit}", (leaf, index, size, proof, flip(root_hash, bit))))
    probes.append(("root as leaf", (root_hash, index, size, proof, root_hash)))
    probes.append(("empty root", (leaf, index, size, proof, EMPTY_ROOT)))
    for name, wrong in proof_variants(proof, [leaf, root_hash]):
        probes.append((name, (leaf, index, size, wrong, root_hash)))
    return probes


def consistency_probes(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[ConsistencyProbe]:
    """The valid input, then each one-change corruption: sizes, roots, proof."""
    m, n = old_size, new_size
    probes: list[ConsistencyProbe] = [("valid", (m, n, old_root, new_root, proof))]
    for name, (m2, n2) in [
        ("old_size - 1", (m - 1, n)),
        ("old_size + 1", (m + 1, n)),
        ("old_size ^ 2", (m ^ 2, n)),
        ("new_size - 1", (m, n - 1)),
        ("new_size + 1", (m, n + 1)),
        ("new_size * 2", (m, n * 2)),
        ("new_size // 2", (m, n // 2)),
        ("sizes swapped", (n, m)),
    ]:
        probes.append((name, (m2, n2, old_root, new_root, proof)))
    probes.append(("roots swapped", (m, n, new_root, old_root, proof)))
    probes.append(("new root twice", (m, n, new_root, new_root, proof)))
    probes.append(("old root twice", (m, n, old_root, old_root, proof)))
    for bit in FLIPS:
        probes.append((f"old root bit {bit}", (m, n, flip(old_root, bit), new_root, proof)))
        probes.append((f"new root bit {bit}", (m, n, old_root, flip(new_root, bit), proof)))
    probes.append(("empty proof", (m, n, old_root, new_root, [])))
    for name, wrong in proof_variants(proof, [old_root, new_root]):
        probes.append((name, (m, n, old_root, new_root, wrong)))
    return probes


def inclusion_problems(log: HonestLog, index: int, size: int, *, distinct: bool) -> list[str]:
    """The probes around the honest proof for (index, size) that the verifier judges wrongly.

    Every probe must get the structural verifier's verdict. With distinct leaves (no two hashes
    in the tree equal) the only corruptions that may pass are size changes under which the proof
    keeps its shape, so that the verifier computes exactly the same root from the same hashes
    (test_the_tree_size_is_bound_only_through_the_proof_shape); all others must be rejected.
    """
    valid = (log.leaves[index], index, size, log.path(index, size), log.root(size))
    problems = []
    for name, args in inclusion_probes(*valid):
        verdict = verify_inclusion(*args)
        if verdict != recomputes_inclusion(*args):
            problems.append(f"{name}: verify={verdict}, structural verifier={not verdict}")
        leaf, i, s, proof, root_hash = args
        if distinct:
            expected = (
                (leaf, proof, root_hash) == (valid[0], valid[3], valid[4])
                and 0 <= i < s
                and inclusion_shape(i, s) == inclusion_shape(index, size)
            )
            if verdict != expected:
                problems.append(f"{name}: verify={verdict} with distinct leaves")
    return problems


def consistency_problems(
    log: HonestLog, old_size: int, new_size: int, *, distinct: bool
) -> list[str]:
    """The probes around the honest proof for (old_size, new_size) that the verifier judges wrongly.

    As for inclusion_problems; the distinct-leaves rule is checked for 0 < old_size < new_size
    (from size 0 any new size and roots are consistent, so most "corruptions" stay valid there).
    """
    valid = (
        old_size,
        new_size,
        log.root(old_size),
        log.root(new_size),
        log.proof(old_size, new_size),
    )
    problems = []
    for name, args in consistency_probes(*valid):
        verdict = verify_consistency(*args)
        if verdict != recomputes_consistency(*args):
            problems.append(f"{name}: verify={verdict}, structural verifier={not verdict}")
        m, n, old_root, new_root, proof = args
        if distinct and 0 < old_size < new_size:
            if not 0 <= m <= n:
                expected = False
            elif m == n:
                expected = not proof and old_root == new_root
            elif m == 0:
                expected = not proof
            else:
                expected = (old_root, new_root, proof) == valid[2:] and consistency_shape(
                    m, n
                ) == consistency_shape(old_size, new_size)
            if verdict != expected:
                problems.append(f"{name}: verify={verdict} with distinct leaves")
    return problems


# --- 1. Published vectors ----------------------------------------------------------------------


def test_hashes_use_the_rfc_6962_domain_prefixes() -> None:
    """A leaf hash is SHA-256(0x00 || data), a node SHA-256(0x01 || l || r), the empty root SHA-256()."""
    assert hashlib.sha256(b"\x00abc").digest() == leaf_hash(b"abc")
    assert hashlib.sha256(b"\x01" + LEAVES[0] + LEAVES[1]).digest() == node_hash(
        LEAVES[0], LEAVES[1]
    )
    assert ROOT_HASHES[0] == EMPTY_ROOT


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_published_vectors(size: int) -> None:
    """The root of the first 0..8 vector leaves, from the list and from stored nodes."""
    assert ROOT_HASHES[size] == root(LEAVES[:size])
    assert ROOT_HASHES[size] == root_from(size, store_of(LEAVES).get)


def test_stored_nodes_match_the_published_node_hashes() -> None:
    """MemoryNodes over the 8 vector leaves holds exactly the published perfect-subtree hashes."""
    store = store_of(LEAVES)
    for level, row in enumerate(NODE_HASHES):
        for index, expected in enumerate(row):
            assert expected == store.get(level, index)
    with pytest.raises(KeyError):
        store.get(4, 0)


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_published_vectors(
    index: int, size: int, expected: list[bytes]
) -> None:
    """Published inclusion proofs are generated byte for byte and verify."""
    assert expected == inclusion_proof(index, LEAVES[:size])
    assert expected == inclusion_proof_from(index, size, store_of(LEAVES).get)
    assert verify_inclusion(LEAVES[index], index, size, expected, ROOT_HASHES[size])


@pytest.mark.parametrize(("old_size", "new_size", "expected"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_published_vectors(
    old_size: int, new_size: int, expected: list[bytes]
) -> None:
    """Published consistency proofs are generated byte for byte and verify."""
    assert expected == consistency_proof(old_size, LEAVES[:new_size])
    assert expected == consistency_proof_from(old_size, new_size, store_of(LEAVES).get)
    assert verify_consistency(
        old_size, new_size, ROOT_HASHES[old_size], ROOT_HASHES[new_size], expected
    )


@pytest.mark.parametrize(("size", "index"), list(INCLUSION_LAYOUTS))
def test_inclusion_proofs_use_the_published_node_layout(size: int, index: int) -> None:
    """Inclusion proofs are made of the nodes transparency-dev/merkle names, up to size 95."""
    store = store_of(BIG_LEAVES[:95])
    expected = resolve(INCLUSION_LAYOUTS[(size, index)], store.get)
    assert expected == inclusion_proof(index, BIG_LEAVES[:size])
    assert expected == inclusion_proof_from(index, size, store.get)


@pytest.mark.parametrize(("old_size", "new_size"), list(CONSISTENCY_LAYOUTS))
def test_consistency_proofs_use_the_published_node_layout(old_size: int, new_size: int) -> None:
    """Consistency proofs are made of the nodes transparency-dev/merkle names, up to size 95."""
    store = store_of(BIG_LEAVES[:95])
    expected = resolve(CONSISTENCY_LAYOUTS[(old_size, new_size)], store.get)
    assert expected == consistency_proof(old_size, BIG_LEAVES[:new_size])
    assert expected == consistency_proof_from(old_size, new_size, store.get)


# --- 2. Every small tree, and larger ones by hypothesis ---------------------------------------


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_every_inclusion_proof_of_a_small_tree_is_the_rfc_path_and_verifies(size: int) -> None:
    """For each leaf: list and node-store proofs equal the naive PATH and verify."""
    leaves, store, log = SMALL_LEAVES[:size], small_store(), small_log()
    tree_root = log.root(size)
    assert tree_root == root(leaves) == root_from(size, store.get)
    for index in range(size):
        expected = log.path(index, size)
        assert expected == inclusion_proof(index, leaves)
        assert expected == inclusion_proof_from(index, size, store.get)
        assert verify_inclusion(leaves[index], index, size, expected, tree_root)


@pytest.mark.parametrize("new_size", range(SMALL + 1))
def test_every_consistency_proof_of_a_small_tree_is_the_rfc_proof_and_verifies(
    new_size: int,
) -> None:
    """For each old size 0..n: list and node-store proofs equal the naive PROOF and verify."""
    leaves, store, log = SMALL_LEAVES[:new_size], small_store(), small_log()
    for old_size in range(new_size + 1):
        expected = log.proof(old_size, new_size)
        assert expected == consistency_proof(old_size, leaves)
        assert expected == consistency_proof_from(old_size, new_size, store.get)
        assert verify_consistency(
            old_size, new_size, log.root(old_size), log.root(new_size), expected
        )


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_node_store_reads_few_nodes_never_twice_never_beyond_the_size(size: int) -> None:
    """Each *_from call reads at most 2 * bit_length(size) perfect nodes, each once, all inside."""
    store = small_store()
    limit = 2 * size.bit_length()
    calls: list[tuple[str, Callable[[NodeGetter], object]]] = [
        ("root", partial(root_from, size)),
        *((f"inclusion {i}", partial(inclusion_proof_from, i, size)) for i in range(size)),
        *((f"consistency {m}", partial(consistency_proof_from, m, size)) for m in range(size + 1)),
    ]
    for name, call in calls:
        get, reads = recording(store, size)
        call(get)
        assert len(reads) == len(set(reads)), f"{name} read a node twice: {reads}"
        assert len(reads) <= limit, f"{name} read {len(reads)} nodes: {reads}"
    get, reads = recording(store, size)
    root_from(size, get)
    assert bin(size).count("1") == len(reads)


@property_settings(60)
@given(data=st.data(), size=st.integers(SMALL + 1, len(BIG_LEAVES) - 1))
def test_larger_trees_give_identical_proofs_from_lists_and_nodes(
    data: st.DataObject, size: int
) -> None:
    """In trees up to 2048 leaves, list and node-store proofs equal the naive ones and verify."""
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(0, size), label="old_size")
    leaves, store, log = BIG_LEAVES[:size], big_store(), big_log()
    assert log.root(size) == root(leaves) == root_from(size, store.get)
    path = log.path(index, size)
    assert path == inclusion_proof(index, leaves) == inclusion_proof_from(index, size, store.get)
    assert verify_inclusion(leaves[index], index, size, path, log.root(size))
    proof = log.proof(old_size, size)
    assert proof == consistency_proof(old_size, leaves)
    assert proof == consistency_proof_from(old_size, size, store.get)
    assert verify_consistency(old_size, size, log.root(old_size), log.root(size), proof)
    calls: list[tuple[str, Callable[[NodeGetter], object]]] = [
        ("inclusion", partial(inclusion_proof_from, index, size)),
        ("consistency", partial(consistency_proof_from, old_size, size)),
    ]
    for name, call in calls:
        get, reads = recording(store, size)
        call(get)
        assert len(reads) == len(set(reads)) <= 2 * size.bit_length(), f"{name}: {reads}"


@property_settings(200)
@given(start=st.integers(0, SMALL), length=st.integers(0, SMALL))
def test_subtree_root_of_any_range_is_its_mth(start: int, length: int) -> None:
    """subtree_root gives MTH of any range, aligned or not."""
    end = min(start + length, SMALL)
    assert small_log().mth(start, end) == subtree_root(start, end, small_store().get)


# --- 3. Corruptions ----------------------------------------------------------------------------
# Each probe changes one thing in a valid input (see inclusion_probes, consistency_probes). The
# verifier must agree with the structural verifier on every probe. With distinct leaves it must
# also reject every probe except the valid input and size changes that keep the proof's shape
# (RFC 9162 verification cannot see those: the size is bound by the signed tree head). With
# repeated leaves some corruptions are honest proofs for the new parameters and must pass.


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_every_single_corruption_of_an_inclusion_proof_is_rejected(size: int) -> None:
    """For every leaf of trees of 1..64 leaves, every corrupted input is rejected."""
    log = small_log()
    for index in range(size):
        assert [] == inclusion_problems(log, index, size, distinct=True), f"index {index}"


@pytest.mark.parametrize("new_size", range(1, SMALL + 1))
def test_every_single_corruption_of_a_consistency_proof_is_rejected(new_size: int) -> None:
    """For every 0 <= m <= n <= 64, every corrupted input is rejected."""
    log = small_log()
    for old_size in range(new_size + 1):
        problems = consistency_problems(log, old_size, new_size, distinct=True)
        assert [] == problems, f"old_size {old_size}"


@property_settings(40)
@given(data=st.data(), size=st.integers(SMALL + 1, 1024))
def test_corruptions_are_rejected_in_larger_trees(data: st.DataObject, size: int) -> None:
    """In trees up to 1024 leaves, every corrupted inclusion and consistency input is rejected."""
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(0, size), label="old_size")
    assert [] == inclusion_problems(big_log(), index, size, distinct=True)
    assert [] == consistency_problems(big_log(), old_size, size, distinct=True)


@property_settings(150)
@given(
    data=st.data(),
    entries=st.lists(st.sampled_from([b"a", b"b"]), min_size=1, max_size=24),
)
def test_corruptions_with_repeated_leaves(data: st.DataObject, entries: list[bytes]) -> None:
    """With repeated leaves the verifier still accepts exactly what the structural verifier does."""
    log = HonestLog([leaf_hash(entry) for entry in entries])
    size = len(entries)
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(0, size), label="old_size")
    assert [] == inclusion_problems(log, index, size, distinct=False)
    assert [] == consistency_problems(log, old_size, size, distinct=False)


def test_a_corruption_that_is_an_honest_proof_is_accepted() -> None:
    """Leaves 0 and 1 of [a, a] share their proof, so "index + 1" is still a valid proof."""
    a = leaf_hash(b"a")
    assert inclusion_proof(0, [a, a]) == inclusion_proof(1, [a, a])
    assert verify_inclusion(a, 1, 2, inclusion_proof(0, [a, a]), root([a, a]))


def test_the_tree_size_is_bound_only_through_the_proof_shape() -> None:
    """A size change that keeps the proof's shape verifies, as RFC 9162 §2.1.3.2 and §2.1.4.2 say.

    Leaf 0 of 3 leaves and leaf 0 of 4 both climb left, left with two siblings, so the verifier
    computes the same root from the same hashes; it cannot see that the second sibling is one
    leaf and not MTH(D[2:4]). The size is authenticated by the signed tree head that carries it
    with the root, not by the proof.
    """
    assert inclusion_shape(0, 3) == inclusion_shape(0, 4)
    assert verify_inclusion(LEAVES[0], 0, 4, inclusion_proof(0, LEAVES[:3]), ROOT_HASHES[3])
    assert consistency_shape(1, 3) == consistency_shape(1, 4)
    assert verify_consistency(
        1, 4, ROOT_HASHES[1], ROOT_HASHES[3], consistency_proof(1, LEAVES[:3])
    )


# --- 4. Edge cases -----------------------------------------------------------------------------

# A valid inclusion input (vector: leaf 1 of 5) and malformed variants of each argument.
_LEAF, _INDEX, _SIZE, _PROOF = LEAVES[1], 1, 5, INCLUSION_VECTORS[4][2]
_ROOT = ROOT_HASHES[5]
BAD_HASHES: list[Any] = [b"", b"\x00" * 31, b"\x00" * 33, _LEAF + b"\x00", None, _LEAF.hex(), 7]
BAD_PROOFS: list[Any] = [
    None,
    b"".join(_PROOF),
    _PROOF[0],
    "proof",
    7,
    [*_PROOF[:2], None],
    [*_PROOF[:2], _PROOF[2][:31]],
    [*_PROOF[:2], _PROOF[2] + b"\x00"],
    [*_PROOF[:2], _PROOF[2].hex()],
    [*_PROOF[:2], bytearray(_PROOF[2])],
    [*_PROOF, *_PROOF],
]
BAD_INTS: list[Any] = [None, 1.0, "1", True, False, b"\x01"]


def test_the_edge_case_baseline_is_valid() -> None:
    """The input the edge cases below spoil is itself accepted."""
    assert verify_inclusion(_LEAF, _INDEX, _SIZE, _PROOF, _ROOT)
    assert verify_inclusion(_LEAF, _INDEX, _SIZE, tuple(_PROOF), _ROOT)


@pytest.mark.parametrize(
    ("index", "size"),
    [(-1, 5), (-1, 0), (5, 5), (6, 5), (0, 0), (1, 0), (0, -1), (1, -5), (2**70, 5), (1, 2**70)],
)
def test_inclusion_with_impossible_index_or_size_is_rejected(index: int, size: int) -> None:
    """Negative index, index >= size, size 0 or negative: False, not an exception."""
    assert verify_inclusion(_LEAF, index, size, _PROOF, _ROOT) is False
    assert verify_inclusion(_LEAF, index, size, [], _ROOT) is False


@pytest.mark.parametrize("bad", BAD_INTS)
def test_inclusion_with_a_non_integer_index_or_size_is_rejected(bad: Any) -> None:
    """Index and size must be ints (not bools, floats or strings)."""
    assert verify_inclusion(_LEAF, bad, _SIZE, _PROOF, _ROOT) is False
    assert verify_inclusion(_LEAF, _INDEX, bad, _PROOF, _ROOT) is False


@pytest.mark.parametrize("bad", BAD_HASHES)
def test_inclusion_with_a_malformed_leaf_or_root_is_rejected(bad: Any) -> None:
    """Leaf and root must be 32-byte ``bytes``."""
    assert verify_inclusion(bad, _INDEX, _SIZE, _PROOF, _ROOT) is False
    assert verify_inclusion(_LEAF, _INDEX, _SIZE, _PROOF, bad) is False


@pytest.mark.parametrize("bad", BAD_PROOFS)
def test_inclusion_with_a_malformed_proof_is_rejected(bad: Any) -> None:
    """The proof must be a sequence of the right number of 32-byte hashes."""
    assert verify_inclusion(_LEAF, _INDEX, _SIZE, bad, _ROOT) is False


def test_single_leaf_tree_needs_an_empty_proof_and_root_equal_to_leaf() -> None:
    """In a one-leaf tree the root is the leaf hash and the proof is empty."""
    assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
    assert not verify_inclusion(LEAVES[0], 0, 1, [LEAVES[0]], LEAVES[0])
    assert not verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[1])
    assert not verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)


# A valid consistency input (vector 6 -> 8).
_M, _N, _CPROOF = 6, 8, CONSISTENCY_VECTORS[2][2]
_OLD, _NEW = ROOT_HASHES[6], ROOT_HASHES[8]


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof", "expected"),
    [
        pytest.param(_M, _N, _OLD, _NEW, _CPROOF, True, id="baseline"),
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True, id="0 to 0, equal roots"),
        pytest.param(0, 0, EMPTY_ROOT, _NEW, [], False, id="0 to 0, different roots"),
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False, id="0 to 0, non-empty"),
        pytest.param(0, 8, EMPTY_ROOT, _NEW, [], True, id="0 to 8, empty proof"),
        pytest.param(0, 8, _OLD, _NEW, [], True, id="0 to 8, any old root"),
        pytest.param(0, 8, EMPTY_ROOT, _NEW, [_NEW], False, id="0 to 8, non-empty proof"),
        pytest.param(8, 8, _NEW, _NEW, [], True, id="8 to 8, equal roots"),
        pytest.param(8, 8, _OLD, _NEW, [], False, id="8 to 8, different roots"),
        pytest.param(8, 8, _NEW, _NEW, [_NEW], False, id="8 to 8, non-empty proof"),
        pytest.param(6, 8, _OLD, _NEW, [], False, id="6 to 8, empty proof"),
        pytest.param(8, 6, _NEW, _OLD, _CPROOF, False, id="shrinking tree"),
        pytest.param(-1, 8, _OLD, _NEW, _CPROOF, False, id="negative old size"),
        pytest.param(-1, -1, _OLD, _OLD, [], False, id="negative sizes"),
        pytest.param(0, -1, EMPTY_ROOT, EMPTY_ROOT, [], False, id="negative new size"),
        pytest.param(6, 2**70, _OLD, _NEW, _CPROOF, False, id="huge new size"),
        pytest.param(2**70, 2**71, _OLD, _NEW, _CPROOF, False, id="huge sizes"),
    ],
)
def test_consistency_edge_cases(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: list[bytes],
    expected: bool,
) -> None:
    """Size 0, equal sizes, empty proofs, shrinking and negative sizes follow the stated rules."""
    assert expected is verify_consistency(old_size, new_size, old_root, new_root, proof)


@pytest.mark.parametrize("bad", BAD_INTS)
def test_consistency_with_a_non_integer_size_is_rejected(bad: Any) -> None:
    """Sizes must be ints (not bools, floats or strings)."""
    assert verify_consistency(bad, _N, _OLD, _NEW, _CPROOF) is False
    assert verify_consistency(_M, bad, _OLD, _NEW, _CPROOF) is False


@pytest.mark.parametrize("bad", BAD_HASHES)
def test_consistency_with_a_malformed_root_is_rejected(bad: Any) -> None:
    """Both roots must be 32-byte ``bytes``, also for the trivial sizes."""
    assert verify_consistency(_M, _N, bad, _NEW, _CPROOF) is False
    assert verify_consistency(_M, _N, _OLD, bad, _CPROOF) is False
    assert verify_consistency(0, _N, bad, _NEW, []) is False
    assert verify_consistency(_N, _N, bad, bad, []) is False


@pytest.mark.parametrize("bad", BAD_PROOFS)
def test_consistency_with_a_malformed_proof_is_rejected(bad: Any) -> None:
    """The proof must be a sequence of the right number of 32-byte hashes."""
    assert verify_consistency(_M, _N, _OLD, _NEW, bad) is False


@property_settings(300)
@given(
    leaf=st.binary(max_size=40),
    index=st.integers(-3, 40) | st.none() | st.text(max_size=2),
    size=st.integers(-3, 40) | st.none() | st.floats(allow_nan=True),
    proof=st.lists(st.binary(min_size=30, max_size=34) | st.none(), max_size=8)
    | st.binary(max_size=64),
    root_hash=st.binary(min_size=31, max_size=33),
)
def test_verifiers_never_raise(
    leaf: Any, index: Any, size: Any, proof: Any, root_hash: Any
) -> None:
    """Arbitrary garbage in any argument gives a bool, never an exception."""
    assert isinstance(verify_inclusion(leaf, index, size, proof, root_hash), bool)
    assert isinstance(verify_consistency(index, size, leaf, root_hash, proof), bool)


# --- Generation arguments and the node store ---------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: inclusion_proof(-1, LEAVES),
        lambda: inclusion_proof(8, LEAVES),
        lambda: inclusion_proof(0, []),
        lambda: consistency_proof(-1, LEAVES),
        lambda: consistency_proof(9, LEAVES),
        lambda: inclusion_proof_from(3, 3, store_of(LEAVES).get),
        lambda: consistency_proof_from(5, 4, store_of(LEAVES).get),
        lambda: subtree_root(3, 2, store_of(LEAVES).get),
        lambda: subtree_root(-1, 2, store_of(LEAVES).get),
        lambda: perfect_nodes_completed(-1),
        lambda: MemoryNodes().append(b"short"),
    ],
)
def test_proof_generation_refuses_impossible_arguments(call: Callable[[], object]) -> None:
    """Asking for a proof or range that cannot exist raises ValueError."""
    with pytest.raises(ValueError):
        call()


def test_generated_trivial_consistency_proofs_are_empty() -> None:
    """From size 0, and from the whole tree, the consistency proof is empty."""
    assert [] == consistency_proof(0, LEAVES)
    assert [] == consistency_proof(8, LEAVES)
    assert [] == consistency_proof(0, [])
    assert [] == consistency_proof_from(0, 0, MemoryNodes().get)
    assert EMPTY_ROOT == root([]) == root_from(0, MemoryNodes().get)


@pytest.mark.parametrize(
    ("leaf_index", "expected"),
    [
        (0, []),
        (1, [(1, 0)]),
        (2, []),
        (3, [(1, 1), (2, 0)]),
        (5, [(1, 2)]),
        (7, [(1, 3), (2, 1), (3, 0)]),
        (11, [(1, 5), (2, 2)]),
        (1023, [(level, 1023 >> level) for level in range(1, 11)]),
    ],
)
def test_perfect_nodes_completed_by_each_append(
    leaf_index: int, expected: list[tuple[int, int]]
) -> None:
    """Appending leaf i completes one node per trailing 1 bit of i, lowest level first."""
    assert expected == perfect_nodes_completed(leaf_index)


def test_memory_nodes_stores_exactly_the_perfect_subtrees() -> None:
    """After each append the store holds every complete (level, index) node and nothing else."""
    store = MemoryNodes()
    expected: set[tuple[int, int]] = set()
    for i, leaf in enumerate(SMALL_LEAVES[:40]):
        assert i == store.append(leaf)
        assert i + 1 == store.size
        expected |= {(0, i), *perfect_nodes_completed(i)}
        complete = {
            (level, index)
            for level in range((i + 1).bit_length())
            for index in range((i + 1) >> level)
        }
        assert complete == expected
        for level, index in complete:
            start, end = index << level, (index + 1) << level
            assert small_log().mth(start, end) == store.get(level, index)
    with pytest.raises(KeyError, match=r"\(1, 20\)"):
        store.get(1, 20)
