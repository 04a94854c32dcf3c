"""RFC 6962 / RFC 9162 Merkle tree: hashes, inclusion and consistency proofs, perfect-node storage.

Hashes are 32-byte SHA-256 digests. ``root``, ``inclusion_proof`` and ``consistency_proof`` take
the list of *leaf hashes* (``leaf_hash(entry)``, not the entries themselves) and transcribe the
recursive definitions of RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF), repeated in RFC 9162
§2.1.1, §2.1.3.1 and §2.1.4.1. The ``*_from`` variants give byte-identical results while reading
only stored roots of perfect subtrees, which is all an append-only log needs to keep (see
``perfect_nodes_completed`` and ``MemoryNodes``). The two ``verify_*`` functions follow the
verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step; they return ``False``
on any malformed input instead of raising.

A *node* ``(level, index)`` is the root of the perfect subtree over the leaves
``[index << level, (index + 1) << level)``; ``(0, i)`` is leaf ``i``'s hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodes",
    "NodeGetter",
    "consistency_proof",
    "consistency_proof_from",
    "inclusion_proof",
    "inclusion_proof_from",
    "leaf_hash",
    "node_hash",
    "perfect_nodes_completed",
    "root",
    "root_from",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 6962 §2.1): the root of the empty tree."""

NodeGetter = Callable[[int, int], bytes]
"""``get(level, index)`` returns the stored root of that perfect subtree."""

_RangeHash = Callable[[int, int], bytes]
"""``mth(start, end)`` returns MTH(D[start:end])."""


def leaf_hash(data: bytes) -> bytes:
    """Hash one log entry: SHA-256(0x00 || data) (RFC 6962 §2.1, RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children: SHA-256(0x01 || left || right) (RFC 6962 §2.1, RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1), where RFC 6962 §2.1 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 6962 §2.1); ``EMPTY_ROOT`` for no leaves."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 6962 §2.1.1, RFC 9162 §2.1.3.1): sibling hashes from the leaf up.

    Raises ``ValueError`` unless ``0 <= index < len(leaves)``.
    """
    _check_index(index, len(leaves))
    return _path(index, 0, len(leaves), lambda start, end: root(leaves[start:end]))


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 6962 §2.1.2, RFC 9162 §2.1.4.1) from ``old_size`` to ``len(leaves)``.

    Empty when ``old_size`` is 0 or the whole tree. Raises ``ValueError`` unless
    ``0 <= old_size <= len(leaves)``.
    """
    _check_sizes(old_size, len(leaves))
    return _proof(old_size, len(leaves), lambda start, end: root(leaves[start:end]))


def _path(m: int, start: int, end: int, mth: _RangeHash) -> list[bytes]:
    """PATH(m, D[start:end]) with subtree hashes from ``mth``."""
    if end - start == 1:
        return []
    mid = start + _split(end - start)
    if m < mid - start:
        return [*_path(m, start, mid, mth), mth(mid, end)]
    return [*_path(m - (mid - start), mid, end, mth), mth(start, mid)]


def _proof(m: int, n: int, mth: _RangeHash) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m < n; empty otherwise."""
    return _subproof(m, 0, n, known=True, mth=mth) if 0 < m < n else []


def _subproof(m: int, start: int, end: int, *, known: bool, mth: _RangeHash) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b); ``known`` is the RFC's b: the verifier holds MTH(D[m])."""
    if m == end - start:
        return [] if known else [mth(start, end)]
    mid = start + _split(end - start)
    if m <= mid - start:
        return [*_subproof(m, start, mid, known=known, mth=mth), mth(mid, end)]
    return [*_subproof(m - (mid - start), mid, end, known=False, mth=mth), mth(start, mid)]


# --- Reading proofs from stored perfect subtrees ----------------------------------------------


def perfect_nodes_completed(leaf_index: int) -> list[tuple[int, int]]:
    """The nodes of level >= 1 that appending leaf ``leaf_index`` completes, lowest first.

    Appending leaf i completes one node per trailing 1 bit of i: leaf 3 completes (1, 1) and
    (2, 0). Each can be computed from its two children, both stored by then.
    """
    if leaf_index < 0:
        raise ValueError(f"leaf index must be >= 0, got {leaf_index}")
    nodes = []
    level = 1
    while (leaf_index + 1) % (1 << level) == 0:
        nodes.append((level, leaf_index >> level))
        level += 1
    return nodes


def subtree_root(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) (RFC 6962 §2.1) from stored perfect nodes, ``EMPTY_ROOT`` if empty.

    The range is split as the RFC splits it (k = largest power of two smaller than the size); a
    perfect, aligned piece is one lookup. When ``start`` is a multiple of the smallest power of
    two >= ``end - start`` (as for every range in the RFC recursion) this reads one node per 1
    bit of the size, each at most once. Raises ``ValueError`` unless ``0 <= start <= end``.
    """
    if not 0 <= start <= end:
        raise ValueError(f"expected 0 <= start <= end, got [{start}, {end})")
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return get(n.bit_length() - 1, start // n)
    mid = start + _split(n)
    return node_hash(subtree_root(start, mid, get), subtree_root(mid, end, get))


def root_from(size: int, get: NodeGetter) -> bytes:
    """``root`` of the first ``size`` leaves, reading at most log2(size) + 1 stored nodes."""
    return subtree_root(0, size, get)


def inclusion_proof_from(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """``inclusion_proof`` for the tree of the first ``size`` leaves, from stored perfect nodes.

    Every sibling is a perfect node except at most one partial right subtree, rebuilt from its
    perfect pieces: O(log size) lookups, none repeated, none beyond ``size``.
    """
    _check_index(index, size)
    return _path(index, 0, size, lambda start, end: subtree_root(start, end, get))


def consistency_proof_from(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """``consistency_proof`` from ``old_size`` to ``new_size``, from stored perfect nodes.

    O(log new_size) lookups, none repeated, none beyond ``new_size``.
    """
    _check_sizes(old_size, new_size)
    return _proof(old_size, new_size, lambda start, end: subtree_root(start, end, get))


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf index must be in [0, {size}), got {index}")


def _check_sizes(old_size: int, new_size: int) -> None:
    if not 0 <= old_size <= new_size:
        raise ValueError(f"expected 0 <= old_size <= new_size, got {old_size} and {new_size}")


class MemoryNodes:
    """An append-only log kept as a dict of perfect-subtree roots: the reference node store.

    ``append`` stores the leaf hash as node (0, i) and every node it completes, so ``get`` can
    serve ``root_from``, ``inclusion_proof_from`` and ``consistency_proof_from`` for any size up
    to ``size``. A database-backed store keeps the same rows.
    """

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0

    @property
    def size(self) -> int:
        """How many leaves have been appended."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Store one leaf hash and the nodes it completes; return the leaf's index."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, got {len(leaf_hash)}")
        index = self._size
        self._nodes[(0, index)] = leaf_hash
        for level, i in perfect_nodes_completed(index):
            left, right = self._nodes[(level - 1, 2 * i)], self._nodes[(level - 1, 2 * i + 1)]
            self._nodes[(level, i)] = node_hash(left, right)
        self._size = index + 1
        return index

    def get(self, level: int, index: int) -> bytes:
        """The root of perfect subtree (level, index); ``KeyError`` if it is not complete."""
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise KeyError(f"no node ({level}, {index}) in a log of {self._size} leaves") from None


# --- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------------------------


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hash_list(proof: object) -> list[bytes] | None:
    """The proof as a list if it is a sequence of 32-byte hashes, else None."""
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | bytearray | str):
        return None
    items = list(proof)
    return items if all(_is_hash(item) for item in items) else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` and ``root``.

    RFC 9162 §2.1.3.2, step by step, after checking that every hash has 32 bytes and the sizes
    are integers. Never raises.
    """
    path = _hash_list(proof)
    if path is None or not (_is_hash(leaf) and _is_hash(root)):
        return False
    if not (_is_int(index) and _is_int(size)) or index < 0:
        return False
    # 1. If leaf_index is greater than or equal to tree_size, fail.
    if index >= size:
        return False
    # 2. Set fn to leaf_index and sn to tree_size - 1. 3. Set r to hash.
    fn, sn = index, size - 1
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in path:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, right-shift both fn and sn equally until either LSB(fn)
            #     is set or fn is 0.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            # Otherwise: i. Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 5. Succeed if sn is 0 and r equals root_hash.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    Equal sizes need an empty proof and equal roots; from size 0 any tree is consistent and the
    proof must be empty. Otherwise RFC 9162 §2.1.4.2, step by step, after checking that every
    hash has 32 bytes and ``0 < old_size < new_size``. Never raises.
    """
    path = _hash_list(proof)
    if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not (_is_int(old_size) and _is_int(new_size)) or not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path
    # 1. If consistency_path is an empty array, fail.
    if not path:
        return False
    # 2. If first is an exact power of 2, prepend first_hash to the consistency_path array.
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). ii. Set sr to HASH(0x01 || c || sr).
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            # iii. If LSB(fn) is not set, right-shift both fn and sn equally until either
            #      LSB(fn) is set or fn is 0.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            # Otherwise: i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # 7. Succeed if fr equals first_hash, sr equals second_hash and sn is 0.
    return fr == old_root and sr == new_root and sn == 0
