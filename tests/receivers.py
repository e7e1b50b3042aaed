"""Real HTTP receivers on loopback for delivery tests: they record every request they get."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ports import closed_port

Respond = Callable[[web.Request, int], Awaitable[web.StreamResponse]]
# A 200 whose X-Note header holds bytes that are not UTF-8 (for raw_answer).
NOT_UTF8_HEADER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Note: caf\xe9 \xff\r\nConnection: close\r\n\r\nok"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived_at: float = 0.0  # time.monotonic() when the request reached the receiver


async def ok(request: web.Request, count: int) -> web.StreamResponse:
    return web.Response(text="ok")


@dataclass
class Receiver:
    """Answers with `respond(request, n)` (n = 1 for the first request) and keeps what it got."""

    respond: Respond = ok
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    tls: ssl.SSLContext | None = None  # serve https with this context
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived_at = time.monotonic()
        body = await request.read()
        async with self.arrived:
            self.received.append(Received(request.path, dict(request.headers), body, arrived_at))
            count = len(self.received)
            self.arrived.notify_all()
        return await self.respond(request, count)

    async def wait_for(self, count: int, within: float = 15.0) -> list[Received]:
        """Waits (bounded) until at least `count` requests arrived."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.received) >= count), within)
        return list(self.received)


# -- ways to answer, for `Receiver(respond=...)` or `receiver.respond = ...` ------------------------------


def status(code: int, headers: dict[str, str] | None = None) -> Respond:
    """Always answers `code` (with `headers`)."""

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, text=f"status {code}")

    return respond


def failing_first(failures: int, code: int = 500) -> Respond:
    """Answers `code` to the first `failures` requests, then 200."""

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=code if count <= failures else 200, text="ok")

    return respond


def slow(seconds: float) -> Respond:
    """Answers 200 after `seconds`."""

    async def respond(request: web.Request, count: int) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="ok")

    return respond


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    return f"http://127.0.0.1:{closed_port()}/hook"


@contextlib.asynccontextmanager
async def raw_answer(answer: bytes) -> AsyncIterator[str]:
    """A loopback URL whose server answers every request with `answer`, bytes as given (aiohttp's
    server would not send a header that is not UTF-8), then closes the connection."""

    async def answer_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_raw, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"


@dataclass
class HoldingReceiver:
    url: str
    released: asyncio.Event  # set as the context exits: until then every connection is held open


@contextlib.asynccontextmanager
async def raw_answer_then_hold(answer: bytes) -> AsyncIterator[HoldingReceiver]:
    """A loopback URL whose server answers every request with `answer`, bytes as given, and then keeps
    the connection open (never closing it first) until the context exits."""
    released = asyncio.Event()

    async def answer_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            await released.wait()
        writer.close()

    server = await asyncio.start_server(answer_raw, "127.0.0.1", 0)
    async with server:
        try:
            yield HoldingReceiver(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", released)
        finally:
            released.set()
