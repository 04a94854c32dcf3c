"""The HTTP protocol ``miaopi serve`` runs: uvicorn's, with each answer sent in one write.

A real uvicorn server on a real socket, serving a small ASGI app with the answers a service
gives (plain, streamed with pauses, large, a closed connection), read by a raw socket and by
httpx; and the transport wrapper on a real connection, its writes counted.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from api.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport

from .conftest import free_port

BIG = b"x" * 300_000  # far beyond a socket's buffer: the transport must queue and drain it


async def _plain(_: Request) -> Response:
    return PlainTextResponse("好的 ok", headers={"X-Test": "1"})


async def _streamed(_: Request) -> Response:
    async def chunks() -> Any:
        for i in range(3):
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(0.05)

    return StreamingResponse(chunks(), media_type="text/plain")


async def _big(_: Request) -> Response:
    return Response(BIG, media_type="application/octet-stream")


async def _closing(_: Request) -> Response:
    return PlainTextResponse("bye", headers={"Connection": "close"})


APP = Starlette(
    routes=[
        Route("/plain", _plain),
        Route("/streamed", _streamed),
        Route("/big", _big),
        Route("/closing", _closing),
    ]
)


WRITES: list[bytes] = []
"""Every write the server made on a connection's socket, in order."""


class _CountingTransport:
    """The socket's transport, its writes recorded (under the coalescing one)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: Any) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Counted(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CountingTransport(transport))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        APP,
        host="127.0.0.1",
        port=port,
        http=_Counted,
        loop="uvloop",
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _raw_get(base_url: str, path: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


def test_an_answer_leaves_in_one_write(base_url: str) -> None:
    """Head and body go to the socket together (uvicorn alone writes them one by one)."""
    body = "好的 ok".encode()
    for _ in range(5):
        WRITES.clear()
        with _raw_get(base_url, "/plain") as sock:
            received = b""
            while not received.endswith(body):
                more = sock.recv(65536)
                assert more, "the connection closed before the body"
                received += more
        assert WRITES == [received]
        head = received.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 200") and b"x-test: 1" in head.lower()


def test_keep_alive_streams_large_bodies_and_close_all_answer_as_before(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for _ in range(5):  # one connection, several answers in turn
            r = client.get("/plain")
            assert (r.status_code, r.text, r.headers["x-test"]) == (200, "好的 ok", "1")
        streamed = client.get("/streamed")
        assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
        big = client.get("/big")
        assert big.content == BIG
        closing = client.get("/closing")
        assert (closing.status_code, closing.text) == (200, "bye")
        assert client.get("/plain").text == "好的 ok"  # a new connection after the close


def test_a_streamed_answer_is_not_held_back_until_it_ends(base_url: str) -> None:
    """A lone write (a streamed answer's head and first chunk, then each chunk) goes out on
    the loop's next turn, not when the stream ends."""
    with _raw_get(base_url, "/streamed") as sock:
        started = time.monotonic()
        first = sock.recv(65536)
        waited = time.monotonic() - started
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            more = sock.recv(65536)
            assert more, "the connection closed before the last chunk"
            rest += more
    assert first.startswith(b"HTTP/1.1 200")
    assert b"chunk 0" in first and b"chunk 2" not in first
    assert waited < 0.1  # the whole stream takes 0.15 s
    assert b"chunk 2" in rest


class _Counting(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()


def test_the_transport_joins_two_writes_and_flushes_a_lone_one_on_the_next_turn() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server_sock, client_sock = socket.socketpair()
        receiver = _Counting()
        receiver.data_received = receiver.received.extend  # type: ignore[method-assign]
        await loop.connect_accepted_socket(lambda: receiver, server_sock)
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, client_sock)
        writes: list[bytes] = []
        real_write = transport.write

        def counted(data: Any) -> None:
            writes.append(bytes(data))
            real_write(data)

        transport.write = counted  # type: ignore[method-assign]
        wrapped = CoalescingTransport(transport, loop)  # type: ignore[arg-type]

        wrapped.write(b"head|")
        assert writes == [] and wrapped.get_write_buffer_size() == len(b"head|")
        wrapped.write(b"body")
        assert writes == [b"head|body"]  # one write, at once

        wrapped.write(bytearray(b"lone"))
        assert writes == [b"head|body"]
        await asyncio.sleep(0)  # the loop's next turn
        await asyncio.sleep(0)
        assert writes == [b"head|body", b"lone"]

        wrapped.write(b"last")
        wrapped.close()  # what is held goes before the connection closes
        assert writes[-1] == b"last"
        for _ in range(100):
            if receiver.received == b"head|bodylonelast":
                break
            await asyncio.sleep(0.01)
        assert receiver.received == b"head|bodylonelast"

    asyncio.run(scenario())


def test_abort_drops_what_is_held_and_sends_nothing_later() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        wrapped = CoalescingTransport(transport, loop)  # type: ignore[arg-type]
        wrapped.write(b"never")
        wrapped.abort()
        await asyncio.sleep(0.01)
        b.setblocking(False)
        try:
            got = b.recv(100)
        except BlockingIOError:
            got = b""
        assert got == b""
        b.close()

    asyncio.run(scenario())
