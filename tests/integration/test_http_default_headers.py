"""Every answer of every HTTP server of ours carries the browser-facing defaults (nosniff, no framing,
no referrer, not stored), whoever wrote it: the gateway's routes, the inbound receiver, a worker's
/healthz /readyz /metrics, and the refusals the server writes before any app sees the request.

Raw sockets to servers on loopback, so what is checked is what a client reads; every read is
bounded by GUARD (a failure, not a measurement)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webhookd.http.operations import operations_app
from webhookd.http.request_bounds import RequestBounds
from webhookd.http.server import HttpServer
from webhookd.observability import Metrics
from webhookd.services.readiness import Readiness

EXPECTED = {
    "x-content-type-options": ["nosniff"],
    "content-security-policy": ["default-src 'none'; frame-ancestors 'none'"],
    "x-frame-options": ["DENY"],
    "referrer-policy": ["no-referrer"],
    "cache-control": ["no-store"],
}
GUARD = 15.0
KIB = 1024
UNKNOWN_INBOUND = "/api/v1/integration/inbound/whk_01HZZZZZZZZZZZZZZZZZZZZZZZ"


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, list[str]]]:
        """The next response's status and its headers (each name lower case, with every value it came with)."""
        async with asyncio.timeout(GUARD):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        return int(lines[0].split(" ", 2)[1]), headers

    def close(self) -> None:
        self.writer.close()


def request(method: str, path: str, *extra: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]).encode()


def defaults_of(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: headers.get(name, []) for name in EXPECTED}


@pytest.fixture
async def served() -> AsyncIterator[HttpServer]:
    """A server like every one of ours, around an app that sets none of these headers itself."""

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = HttpServer(
        Starlette(routes=[Route("/", hello)]),
        "127.0.0.1:0",
        bounds=RequestBounds(request_timeout_seconds=0.5, max_connections=1),
    )
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (request("GET", "/", "x-huge: " + "v" * (80 * KIB)), 431),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nx-half", 408),
    ],
    ids=["400-not-http", "431-head-too-large", "408-too-slow"],
)
async def test_the_refusals_written_before_any_app_carry_the_defaults(
    served: HttpServer, sent: bytes, status: int
) -> None:
    """They are written by the HTTP protocol itself (http/request_bounds.py), below every ASGI wrapper."""
    connection = await Connection.open(served.port)
    try:
        await connection.send(sent)
        answered, headers = await connection.head()
    finally:
        connection.close()

    assert answered == status
    assert defaults_of(headers) == EXPECTED


async def test_a_connection_past_the_limit_is_refused_with_the_defaults(served: HttpServer) -> None:
    held = await Connection.open(served.port)
    try:
        await held.send(request("GET", "/"))
        status, headers = await held.head()  # served and kept alive: the one connection allowed
        assert status == 200
        assert defaults_of(headers) == EXPECTED  # the app's own answer, through the server

        refused = await Connection.open(served.port)
        try:
            status, headers = await refused.head()
        finally:
            refused.close()
    finally:
        held.close()

    assert status == 503
    assert defaults_of(headers) == EXPECTED


@pytest.fixture
async def worker_server() -> AsyncIterator[HttpServer]:
    """What `webhookd worker` serves on WEBHOOKD_METRICS_ADDR."""
    server = HttpServer(operations_app(Readiness({}), Metrics()), "127.0.0.1:0")
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/readyz", 200), ("/metrics", 200), ("/nope", 404)])
async def test_a_workers_operational_answers_carry_the_defaults(
    worker_server: HttpServer, path: str, status: int
) -> None:
    connection = await Connection.open(worker_server.port)
    try:
        await connection.send(request("GET", path))
        answered, headers = await connection.head()
    finally:
        connection.close()

    assert answered == status
    assert defaults_of(headers) == EXPECTED


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("POST", UNKNOWN_INBOUND, 404),  # the inbound receiver
        ("GET", UNKNOWN_INBOUND + "?hub.mode=subscribe", 404),
    ],
)
async def test_the_gateways_operational_and_inbound_answers_carry_the_defaults(
    gateway, method: str, path: str, status: int
) -> None:
    connection = await Connection.open(int(gateway.url.rsplit(":", 1)[1]))
    try:
        await connection.send(request(method, path, "Content-Length: 0"))
        answered, headers = await connection.head()
    finally:
        connection.close()

    assert answered == status
    assert defaults_of(headers) == EXPECTED
