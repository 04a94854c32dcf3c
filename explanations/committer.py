"""The commit process: one writer for all the workers of a server.

Each worker decides on its own event loop, encodes its record (``Unsealed``) and sends it,
over a Unix socket private to the server, to the commit process, which writes the group
commits of every worker: the records are sealed and chained there, in one transaction per
group, and each worker hears back once its own decision is committed.

Why a process of its own: with each worker writing its own groups to one database, the
workers took turns at the chain's lock (``flock`` and ``BEGIN IMMEDIATE`` on SQLite, the
``chain_head`` row on PostgreSQL). Every turn started on a page cache the other process had
just made stale, waited for the other's fsync, and the writing thread fought its own event
loop for the GIL while it held the lock. One writer keeps its cache, groups what all the
workers sent meanwhile, and holds the lock only for its own work.

Nothing is promised differently. The commit process is a ``DecisionStore`` like any other:
it takes the same locks, so a worker, a CLI command or another server writing directly is
still serialised with it. A worker whose commit process is gone (or answers an error)
writes the append itself, and the idempotency key decides: a decision the commit process
did commit before it died is found and answered, one it did not is written now.

The wire: frames of a 4-byte big-endian length and what it counts.
- request: a 4-byte length of a JSON header ``{"i": n, "k": key, "s": request_sha256,
  "n": [bytes of each part], ...Encoded.to_wire()}``, the header, then the record's three
  parts in UTF-8 as orjson wrote them (JSON inside JSON would escape every quote of the
  record, and unescape it again, at ~15 KB a record); the commit process joins and hashes
  them as bytes and decodes the whole once, for the database
- answer, a JSON object: ``{"i": n, "d": decision_id, "r": response, "y": replayed, "t": receipt|null}``,
  ``{"i": n, "e": "conflict"}`` (the key is stored with another body), or
  ``{"i": n, "x": message}`` (not written: the worker writes it itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import struct
import time
from typing import Any

import orjson
import sqlalchemy as sa
import structlog

from explanations.log import Receipt
from explanations.record import Chained, Encoded
from explanations.review import CASES
from explanations.store import DecisionStore, IdempotencyConflict, StoredDecision, _Pending

__all__ = ["CommitProcessClient", "CommitServer"]

log = structlog.get_logger("miaopi.committer")
_LENGTH = struct.Struct("!I")
MAX_FRAME = 64 << 20
"""A record is tens of KB; anything near this is not one of ours."""
RETRY_AFTER_S = 1.0
"""After a failed connection, the worker writes for itself this long before trying again."""


def frame(message: dict[str, Any]) -> bytes:
    payload = orjson.dumps(message)
    return _LENGTH.pack(len(payload)) + payload


class _Lost(Exception):
    """The connection to the commit process ended before the answer came."""


class CommitProcessClient:
    """A worker's side: one connection per event loop, answers matched by request number.

    ``append`` returns the stored decision, raises ``IdempotencyConflict``, or returns None
    when the commit process cannot take it (the caller then writes the append itself).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._down_until = 0.0
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def append(self, key: str, request_sha256: str, record: Encoded) -> StoredDecision | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection belongs to the loop that opened it
            self._loop, self._writer, self._reader, self._connecting = loop, None, None, None
            self._pending = {}
        writer = self._writer
        if writer is None or writer.is_closing():
            writer = await self._connect()
            if writer is None:
                return None
        self._next += 1
        number = self._next
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[number] = answer
        message = record.to_wire()
        parts = record.parts
        message["i"], message["k"], message["s"] = number, key, request_sha256
        message["n"] = [len(part) for part in parts]
        header = orjson.dumps(message)
        size = _LENGTH.size + len(header) + sum(message["n"])
        try:
            writer.write(b"".join((_LENGTH.pack(size), _LENGTH.pack(len(header)), header, *parts)))
            reply = await answer
        except (_Lost, OSError):
            return None
        finally:
            self._pending.pop(number, None)
        if "d" in reply:
            receipt = reply["t"]
            return StoredDecision(
                reply["d"],
                reply["r"],
                bool(reply["y"]),
                None if receipt is None else Receipt.model_validate(receipt),
            )
        if reply.get("e") == "conflict":
            raise IdempotencyConflict(key)
        log.warning("commit_process_refused", error=str(reply.get("x"))[:200])
        return None

    async def _connect(self) -> asyncio.StreamWriter | None:
        if time.monotonic() < self._down_until:
            return None
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_FRAME)
            except OSError as exc:
                self._down_until = time.monotonic() + RETRY_AFTER_S
                log.warning("commit_process_unreachable", path=self.path, error=str(exc))
                return None
            self._writer = writer
            self._reader = asyncio.get_running_loop().create_task(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                reply = orjson.loads(await reader.readexactly(size))
                waiting = self._pending.get(reply.get("i"))
                if waiting is not None and not waiting.done():
                    waiting.set_result(reply)
        except (asyncio.IncompleteReadError, OSError, orjson.JSONDecodeError) as exc:
            log.warning("commit_process_lost", error=type(exc).__name__)
        finally:
            if self._writer is writer:
                self._writer = None
                self._down_until = time.monotonic() + RETRY_AFTER_S
            writer.close()
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(_Lost())


def _open_case(conn: sa.Connection, record: Chained) -> None:
    """The commit process's ``on_stored``: the referral case the worker wrote down.

    The case goes as parameters of the one ``INSERT`` SQLAlchemy compiles once and caches;
    ``insert().values(**case)`` made a new statement for every referral (~0.3 ms more)."""
    if record.case is not None:
        conn.execute(CASES.insert(), record.case)


_Request = tuple[dict[str, Any], tuple[bytes, bytes, bytes]]
"""A request's header and its record's three parts."""


class _Peer:
    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[_Request]:
        """The complete requests received so far: each header and its record's parts
        (``ValueError`` on a malformed frame)."""
        found = []
        buf = self.buffer
        while len(buf) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buf)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes")
            end = _LENGTH.size + size
            if len(buf) < end:
                break
            frame_bytes = bytes(buf[_LENGTH.size : end])
            del buf[:end]
            (head,) = _LENGTH.unpack_from(frame_bytes)
            at = _LENGTH.size + head
            header = orjson.loads(frame_bytes[_LENGTH.size : at])
            lengths = header.get("n") if isinstance(header, dict) else None
            if not (isinstance(lengths, list) and len(lengths) == 3 and at + sum(lengths) == size):
                raise ValueError("the parts do not add up to the frame")
            parts = []
            for length in lengths:  # UTF-8 as sent: decoded once, joined, when sealed
                parts.append(frame_bytes[at : at + length])
                at += length
            found.append((header, (parts[0], parts[1], parts[2])))
        return found


class CommitServer:
    """The commit process's loop: read what every worker sent, write it as one group, answer.

    Single-threaded: while a group is being written, the next requests wait in the sockets,
    and the next group is all of them.
    """

    def __init__(self, store: DecisionStore, path: str, *, send_timeout_s: float = 10.0) -> None:
        self.store = store
        self.path = path
        self.send_timeout_s = send_timeout_s
        self._stop = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        old = os.umask(0o177)  # the socket is the server user's alone
        try:
            self._listener.bind(path)
        finally:
            os.umask(old)
        self._listener.listen(64)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)

    def stop(self) -> None:
        self._stop = True

    def serve(self, *, alive: Any = None) -> None:
        """Until ``stop()`` (or ``alive()`` turns false: the server that started us is gone)."""
        try:
            while not self._stop:
                requests: list[tuple[_Peer, _Request]] = []
                for key, _ in self._selector.select(timeout=1.0):
                    if key.data is None:
                        self._accept()
                    else:
                        self._receive(key.data, requests)
                if requests:
                    self._write(requests)
                elif alive is not None and not alive():
                    log.info("commit_process_orphaned")
                    return
        finally:
            self.close()

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accept(self) -> None:
        sock, _ = self._listener.accept()
        sock.settimeout(self.send_timeout_s)  # reads follow select(); only a send can wait
        self._selector.register(sock, selectors.EVENT_READ, _Peer(sock))

    def _drop(self, peer: _Peer) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        peer.sock.close()

    def _receive(self, peer: _Peer, into: list[tuple[_Peer, _Request]]) -> None:
        try:
            data = peer.sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        peer.buffer += data
        try:
            into.extend((peer, request) for request in peer.frames())
        except (ValueError, TypeError) as exc:  # not our protocol: nothing of it is written
            log.warning("commit_request_malformed", error=str(exc)[:200])
            self._drop(peer)

    def _write(self, requests: list[tuple[_Peer, _Request]]) -> None:
        items: list[tuple[_Peer, Any, _Pending]] = []
        for peer, (message, parts) in requests:
            try:
                record = Encoded.from_wire(message, parts)
                item = _Pending(
                    str(message["k"]),
                    str(message["s"]),
                    None,
                    record,
                    _open_case if record.case is not None else None,
                )
            except (KeyError, TypeError, ValueError) as exc:
                self._send(peer, {"i": message.get("i"), "x": f"malformed: {exc}"})
                continue
            items.append((peer, message.get("i"), item))
        if items:
            self.store.write_group([item for _, _, item in items])
        for peer, number, item in items:
            result = item.result
            if isinstance(result, StoredDecision):
                receipt = result.receipt
                answer: dict[str, Any] = {
                    "i": number,
                    "d": result.decision_id,
                    "r": result.response,
                    "y": result.replayed,
                    "t": None if receipt is None else receipt.model_dump(mode="json"),
                }
            elif isinstance(result, IdempotencyConflict):
                answer = {"i": number, "e": "conflict"}
            else:
                answer = {"i": number, "x": repr(result)[:500]}
            self._send(peer, answer)

    def _send(self, peer: _Peer, answer: dict[str, Any]) -> None:
        try:
            peer.sock.sendall(frame(answer))
        except OSError as exc:  # the worker is gone or stuck: it writes for itself
            log.warning("commit_answer_not_sent", error=type(exc).__name__)
            self._drop(peer)
