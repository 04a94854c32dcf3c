"""The transparency log over the records: RFC 6962 leaves, signed checkpoints, receipts.

Each stored record is one leaf. The leaf binds the record's hash to the columns that live
outside the record (the idempotency key, as a hash, and the request hash), so a database
administrator can neither edit a record nor re-point a key at another decision without
changing the tree. The service signs a checkpoint (origin, size, root, time) with Ed25519
after every tree update; a checkpoint saved outside the database (a file, an auditor's
copy, the receipt a platform holds) proves that the log only grew since.

The database keeps the perfect-subtree roots (``log_nodes``) so that roots and proofs cost
O(log n) reads, and every signed head (``log_heads``) so that a receipt can be given again
exactly as first issued.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from explanations import merkle
from explanations.record import canonical_json, canonical_json_bytes_of_dump

__all__ = [
    "Checkpoint",
    "LeafEntry",
    "LogHeadRow",
    "LogNodeRow",
    "Receipt",
    "load_public_keys",
    "public_key_id",
    "public_key_pem",
    "verify_receipt",
]

CHECKPOINT_SCHEMA = "miaopi.checkpoint/1"
RECEIPT_SCHEMA = "miaopi.receipt/1"
LEAF_SCHEMA = "miaopi.log-leaf/1"


class LogNodeRow(SQLModel, table=True):
    """The root of a perfect subtree: leaves ``[idx << level, (idx + 1) << level)``."""

    __tablename__ = "log_nodes"

    level: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    hash: str = Field(max_length=64)


class LogHeadRow(SQLModel, table=True):
    """A signed tree head, one per tree update."""

    __tablename__ = "log_heads"

    size: int = Field(primary_key=True)
    root: str = Field(max_length=64)
    time: str = Field(max_length=40)
    key_id: str = Field(max_length=16)
    signature: str = Field(max_length=120)


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


_HEX64 = re.compile(r"[0-9a-f]{64}")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys by id from PEM files (several per file; a private key gives its public half)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        for match in _PEM.finditer(path.read_bytes()):
            pem = match.group(0)
            key: Any
            if b"PRIVATE KEY" in match.group(1):
                key = serialization.load_pem_private_key(pem, password=None).public_key()
            else:
                key = serialization.load_pem_public_key(pem)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{path}: not an Ed25519 key")
            keys[public_key_id(key)] = key
    return keys


@functools.lru_cache(maxsize=8)
def _signer_id(key: Ed25519PrivateKey) -> str:
    """The key id of a signing key (worked out once per key, not once per signature)."""
    return public_key_id(key.public_key())


class LeafEntry(BaseModel):
    """What one leaf of the log commits to (its canonical JSON is the leaf's data)."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = LEAF_SCHEMA
    seq: int
    decision_id: str
    record_hash: str
    idempotency_key_sha256: str
    request_sha256: str

    @classmethod
    def of(
        cls,
        *,
        seq: int,
        decision_id: str,
        record_hash: str,
        idempotency_key: str,
        request_sha256: str,
    ) -> LeafEntry:
        digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()
        return cls(
            seq=seq,
            decision_id=decision_id,
            record_hash=record_hash,
            idempotency_key_sha256="sha256:" + digest,
            request_sha256=request_sha256,
        )

    def data(self) -> bytes:
        """The leaf's canonical JSON in UTF-8 (``canonical_json``'s text, by orjson where the
        two agree: one leaf a decision, in the commit process)."""
        return canonical_json_bytes_of_dump(self.model_dump(mode="json"))

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.data())


class Checkpoint(BaseModel):
    """A signed statement: the log called ``origin`` had ``size`` leaves with ``root``."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = CHECKPOINT_SCHEMA
    origin: str
    size: int
    root: str
    """Hex SHA-256 Merkle tree hash (RFC 6962)."""
    time: str
    key_id: str
    signature: str
    """Base64 Ed25519 signature over ``signed_text()``."""

    def signed_text(self) -> bytes:
        return (
            f"{CHECKPOINT_SCHEMA}\n{self.origin}\n{self.size}\n{self.root}\n{self.time}\n"
        ).encode()

    @classmethod
    def sign(
        cls, *, origin: str, size: int, root: bytes, key: Ed25519PrivateKey, time: dt.datetime
    ) -> Checkpoint:
        unsigned = cls(
            origin=origin,
            size=size,
            root=root.hex(),
            time=time.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            key_id=_signer_id(key),
            signature="",
        )
        sig = key.sign(unsigned.signed_text())
        return unsigned.model_copy(update={"signature": base64.b64encode(sig).decode("ascii")})

    def problem(self, keys: dict[str, Ed25519PublicKey]) -> str | None:
        """Why this checkpoint cannot be trusted, or None when its signature holds."""
        key = keys.get(self.key_id)
        if key is None:
            return f"checkpoint signed by unknown key {self.key_id}"
        if self.size < 0 or not _HEX64.fullmatch(self.root):
            return f"checkpoint of size {self.size}: size or root malformed"
        try:
            signature = base64.b64decode(self.signature, validate=True)
            if base64.b64encode(signature).decode("ascii") != self.signature:
                raise ValueError("not the canonical base64 of the signature")
            key.verify(signature, self.signed_text())
        except (InvalidSignature, ValueError):
            return f"checkpoint of size {self.size}: signature does not verify"
        return None

    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root)

    def to_row(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root,
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_row(cls, row: Any, origin: str) -> Checkpoint:
        return cls(
            origin=origin,
            size=row.size,
            root=row.root,
            time=row.time,
            key_id=row.key_id,
            signature=row.signature,
        )


class Receipt(BaseModel):
    """Proof, checkable offline, that a record is in the log the service signed."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = RECEIPT_SCHEMA
    leaf: LeafEntry
    leaf_index: int
    inclusion_proof: list[str]
    """Hex hashes, RFC 6962 audit path from the leaf to ``checkpoint.root``."""
    checkpoint: Checkpoint


def verify_receipt(
    receipt: Receipt,
    keys: dict[str, Ed25519PublicKey],
    *,
    record_body: dict[str, Any] | None = None,
) -> list[str]:
    """Every reason the receipt does not prove inclusion; empty when it does.

    With ``record_body`` (a record as JSON), also checks that the record hashes to the
    leaf's ``record_hash`` and is the record the leaf names.
    """
    problems: list[str] = []
    signature = receipt.checkpoint.problem(keys)
    if signature:
        problems.append(signature)
    if receipt.leaf_index != receipt.leaf.seq - 1:
        problems.append(f"leaf index {receipt.leaf_index} is not seq {receipt.leaf.seq} - 1")
    try:
        proof = [bytes.fromhex(h) for h in receipt.inclusion_proof]
        root = receipt.checkpoint.root_bytes()
    except ValueError:
        problems.append("proof or root is not hexadecimal")
        return problems
    if not merkle.verify_inclusion(
        receipt.leaf.leaf_hash(), receipt.leaf_index, receipt.checkpoint.size, proof, root
    ):
        problems.append("inclusion proof does not lead to the checkpoint's root")
    if record_body is not None:
        body = {k: v for k, v in record_body.items() if k != "record_hash"}
        digest = "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
        if digest != receipt.leaf.record_hash:
            problems.append("the record does not hash to the receipt's record_hash")
        if record_body.get("decision_id") != receipt.leaf.decision_id:
            problems.append("the record is not the decision the receipt names")
    return problems


# --- the tree in the database ------------------------------------------------------------

NODES = LogNodeRow.__table__  # type: ignore[attr-defined]
HEADS = LogHeadRow.__table__  # type: ignore[attr-defined]


# Built once: a statement built per call costs more to key and compile than to run.
_NODE = sa.select(NODES.c.hash).where(
    NODES.c.level == sa.bindparam("level"), NODES.c.idx == sa.bindparam("idx")
)
_NODE_INSERT = NODES.insert()
HEAD_INSERT = HEADS.insert()


@functools.cache
def _node_statements(p: str) -> tuple[str, str]:
    """The node read and insert as plain SQL for a driver whose placeholder is ``p``."""
    return (
        f"SELECT hash FROM log_nodes WHERE level = {p} AND idx = {p}",
        f"INSERT INTO log_nodes (level, idx, hash) VALUES ({p}, {p}, {p})",
    )


class DbNodes:
    """Perfect-subtree roots read (and, during an append, written) on one connection."""

    def __init__(
        self,
        conn: sa.Connection,
        known: Mapping[tuple[int, int], bytes] | None = None,
        *,
        cursor: Any = None,
        placeholder: str = "?",
    ) -> None:
        self.conn = conn
        self.cache: dict[tuple[int, int], bytes] = {}
        """Nodes read or written on this connection (written ones are not committed yet)."""
        self.known = known or {}
        """Nodes known to be committed (read only here)."""
        self.cursor = cursor
        """The driver's own cursor on ``conn`` (an append's hot path): plain SQL through it."""
        self._select, self._insert = _node_statements(placeholder)

    def get(self, level: int, idx: int) -> bytes:
        found = self.cache.get((level, idx)) or self.known.get((level, idx))
        if found is None:
            if self.cursor is not None:
                self.cursor.execute(self._select, (level, idx))
                row = self.cursor.fetchone()
                text = None if row is None else row[0]
            else:
                got = self.conn.execute(_NODE, {"level": level, "idx": idx}).first()
                text = None if got is None else got.hash
            if text is None:
                raise LookupError(f"log node ({level}, {idx}) is missing")
            found = self.cache[(level, idx)] = bytes.fromhex(text)
        return found

    def extend(self, first_index: int, leaves: Sequence[bytes]) -> None:
        """Store ``leaves`` at ``first_index``… and every subtree root they complete."""
        rows: list[dict[str, Any]] = []
        for offset, leaf in enumerate(leaves):
            index = first_index + offset
            self.cache[(0, index)] = leaf
            rows.append({"level": 0, "idx": index, "hash": leaf.hex()})
            for level, idx in merkle.perfect_nodes_completed(index):
                node = merkle.node_hash(
                    self.get(level - 1, 2 * idx), self.get(level - 1, 2 * idx + 1)
                )
                self.cache[(level, idx)] = node
                rows.append({"level": level, "idx": idx, "hash": node.hex()})
        if rows and self.cursor is not None:
            self.cursor.executemany(self._insert, [(r["level"], r["idx"], r["hash"]) for r in rows])
        elif rows:
            self.conn.execute(_NODE_INSERT, rows)


def head_for(conn: sa.Connection, seq: int) -> Any:
    """The first signed head that includes leaf ``seq`` (the one its receipt was issued with)."""
    return conn.execute(
        sa.select(HEADS).where(HEADS.c.size >= seq).order_by(HEADS.c.size).limit(1)
    ).first()


def latest_head(conn: sa.Connection) -> Any:
    return conn.execute(sa.select(HEADS).order_by(HEADS.c.size.desc()).limit(1)).first()


def receipt_from(nodes: Callable[[int, int], bytes], leaf: LeafEntry, head: Checkpoint) -> Receipt:
    index = leaf.seq - 1
    proof = merkle.inclusion_proof_from(index, head.size, nodes)
    return Receipt(
        leaf=leaf,
        leaf_index=index,
        inclusion_proof=[p.hex() for p in proof],
        checkpoint=head,
    )


def append_checkpoint_file(path: Path, checkpoint: Checkpoint) -> None:
    """Append one checkpoint as a JSON line (O_APPEND: lines from several processes interleave whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(checkpoint.model_dump(), ensure_ascii=False) + "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint in a JSON-lines file or a single JSON checkpoint/receipt file."""
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        return []
    try:
        whole = json.loads(text)
    except ValueError:  # JSON lines: one checkpoint each
        return [Checkpoint.model_validate_json(line) for line in text.splitlines() if line.strip()]
    return [Checkpoint.model_validate(whole.get("checkpoint", whole))]
