"""The HTTP server against clients that send too much head or too little request: raw sockets to a
gateway on loopback (with its inbound receiver), whose request timeout is short for the test.

A head over 64 KiB is answered 431 and the connection closed, however it is cut into headers; a
request (head or body) not complete within WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS is answered 408 and
its connection closed; a connection that sends nothing is closed. Every read is bounded by GUARD
(a failure, not a measurement)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from webhookd.app import Gateway, Service
from webhookd.config import Settings
from webhookd.http.request_bounds import RequestBounds
from webhookd.http.server import HttpServer
from webhookd.observability.log_throttle import INTERVAL_SECONDS, ThrottledLog

PUBLIC_URL = "http://127.0.0.1:8080"  # the session settings' public_url: callback urls start with it
REQUEST_TIMEOUT_SECONDS = 0.5
GUARD = 15.0  # seconds any one answer may take before the test fails
UNKNOWN = "/api/v1/integration/inbound/whk_01HZZZZZZZZZZZZZZZZZZZZZZZ"
KIB = 1024


@pytest.fixture(scope="module")
async def impatient(settings: Settings, service: Service) -> AsyncIterator[int]:
    """The port of a gateway like the session's, whose request timeout is REQUEST_TIMEOUT_SECONDS."""
    short = settings.with_overrides(http_request_timeout_seconds=REQUEST_TIMEOUT_SECONDS)
    running = Gateway(short, service.local_channel(), extra_routes=service.http_routes(), metrics=service.metrics)
    await running.start()
    yield running.port
    await running.stop()


def port_of(gateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


async def inbound_path(caller) -> str:
    webhook = wpb.Webhook(name="bounds", direction=wpb.DIRECTION_INBOUND)
    created = await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))
    return created.webhook.url.removeprefix(PUBLIC_URL)


class Connection:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self) -> int:
        """The status of the next response, once its head has come."""
        async with asyncio.timeout(GUARD):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1])

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(GUARD):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split(" ", 2)[1]), headers, body

    async def closed_by_server(self) -> bool:
        """True once the server has closed the connection (EOF), with nothing more sent on it."""
        async with asyncio.timeout(GUARD):
            rest = await self.reader.read()
        return rest == b""

    def close(self) -> None:
        self.writer.close()


def head(path: str, headers: list[tuple[str, str]], *, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- 431: heads over 64 KiB ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [(f"x-filler-{n}", "v" * 1000) for n in range(70)],  # many headers
        [("x-huge", "v" * (80 * KIB))],  # one huge header
    ],
    ids=["many", "one-huge"],
)
async def test_a_head_over_64_kib_is_answered_431_and_the_connection_closed(
    gateway, headers: list[tuple[str, str]]
) -> None:
    connection = await Connection.open(port_of(gateway))
    try:
        await connection.send(head(UNKNOWN, [*headers, ("content-length", "0")]))
        status, answered, body = await connection.response()
        assert status == 431
        assert answered["connection"] == "close"
        assert b"64 KiB" in body
        assert await connection.closed_by_server()
    finally:
        connection.close()


async def test_a_head_that_never_ends_is_answered_431_before_it_is_all_read(gateway) -> None:
    connection = await Connection.open(port_of(gateway))
    try:
        # 1 MiB of headers and no blank line: without a limit the server buffers it all and waits for more.
        await connection.send(f"POST {UNKNOWN} HTTP/1.1\r\nx-more: ".encode())
        for _ in range(KIB):
            await connection.send(b"v" * KIB)
        status, _, _ = await connection.response()
        assert status == 431
        assert await connection.closed_by_server()
    finally:
        connection.close()


async def test_a_head_just_under_64_kib_is_served(gateway) -> None:
    connection = await Connection.open(port_of(gateway))
    try:
        fillers = [(f"x-filler-{n}", "v" * 1000) for n in range(60)]
        await connection.send(head(UNKNOWN, [*fillers, ("content-length", "0")]))
        status, _, _ = await connection.response()
        assert status == 404  # the webhook id is unknown: the request reached the receiver
    finally:
        connection.close()


# -- 400: requests that are not HTTP -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",  # no request line
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nbad header\r\n\r\n",  # a header without a colon
        b"POST " + UNKNOWN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: x\r\n\r\n",
        b"POST " + UNKNOWN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["request-line", "header", "content-length", "chunk-size"],
)
async def test_a_request_that_is_not_http_is_answered_400_in_the_error_shape(gateway, request_bytes: bytes) -> None:
    connection = await Connection.open(port_of(gateway))
    try:
        await connection.send(request_bytes)
        status, answered, body = await connection.response()
        assert status == 400
        assert answered["content-type"] == "application/json"
        assert answered["connection"] == "close"
        error = json.loads(body)["error"]
        assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
        assert error["details"][0]["reason"] == "MALFORMED_REQUEST"
        assert await connection.closed_by_server()
    finally:
        connection.close()


# -- 408: requests that do not finish in time ----------------------------------------------------------------


async def test_a_head_that_stops_coming_is_answered_408(impatient: int) -> None:
    connection = await Connection.open(impatient)
    try:
        await connection.send(f"POST {UNKNOWN} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-half".encode())
        status, answered, _ = await connection.response()
        assert status == 408
        assert answered["connection"] == "close"
        assert await connection.closed_by_server()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("framing", "partial_body"),
    [
        ([("content-type", "application/json"), ("content-length", "100")], b'{"type": "a"'),
        ([("content-type", "application/json"), ("transfer-encoding", "chunked")], b'5\r\n{"a":\r\n'),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_body_that_stops_coming_is_answered_408(
    impatient: int, caller, framing: list[tuple[str, str]], partial_body: bytes
) -> None:
    path = await inbound_path(caller)
    connection = await Connection.open(impatient)
    try:
        await connection.send(head(path, framing) + partial_body)
        status, _, body = await connection.response()
        assert status == 408
        assert b"REQUEST_TIMEOUT" in body
        assert await connection.closed_by_server()
    finally:
        connection.close()


async def test_a_body_trickled_slower_than_the_timeout_is_answered_408(impatient: int, caller) -> None:
    """Each byte keeps the connection busy; the request as a whole still has its bound."""
    path = await inbound_path(caller)
    connection = await Connection.open(impatient)
    try:
        await connection.send(head(path, [("content-type", "application/json"), ("content-length", "1000")]))
        answered = asyncio.create_task(connection.status())
        for _ in range(1000):
            if answered.done():
                break
            await connection.send(b" ")
            await asyncio.sleep(REQUEST_TIMEOUT_SECONDS / 10)
        assert await answered == 408
    finally:
        connection.close()


async def test_a_connection_that_sends_nothing_is_closed(impatient: int) -> None:
    connection = await Connection.open(impatient)
    try:
        assert await connection.closed_by_server()
    finally:
        connection.close()


async def test_a_request_in_time_is_served_and_its_connection_kept(impatient: int) -> None:
    connection = await Connection.open(impatient)
    try:
        for _ in range(2):
            await connection.send(head(UNKNOWN, [("content-length", "2")]) + b"{}")
            status, answered, _ = await connection.response()
            assert status == 404
            assert answered.get("connection") != "close"
    finally:
        connection.close()


# -- a client that shuts its side once it has sent the request ------------------------------------------------


async def test_a_request_sent_before_the_client_shuts_its_side_is_still_answered(gateway, caller) -> None:
    """As `printf ... | nc -N` does: the answer must not be lost (the receipt is stored all the same)."""
    path = await inbound_path(caller)
    connection = await Connection.open(port_of(gateway))
    try:
        await connection.send(head(path, [("content-type", "application/json"), ("content-length", "2")]) + b"{}")
        connection.writer.write_eof()
        status, answered, _ = await connection.response()
        assert status == 401  # not signed: the request was read and judged
        assert answered["connection"] == "close"
        assert await connection.closed_by_server()
    finally:
        connection.close()


# -- idle keep-alive connections -----------------------------------------------------------------------------


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = HttpServer(
        Starlette(routes=[Route("/", hello)]), "127.0.0.1:0", bounds=RequestBounds(keep_alive_seconds=0.2)
    )
    await server.start()
    try:
        connection = await Connection.open(server.port)
        try:
            await connection.send(head("/", [], method="GET"))
            status, _, body = await connection.response()
            assert (status, body) == (200, b"hello")
            assert await connection.closed_by_server()
        finally:
            connection.close()
    finally:
        await server.stop()


# -- a client that takes nothing of its answer ---------------------------------------------------------------


async def test_a_connection_whose_client_takes_nothing_of_a_long_answer_is_dropped() -> None:
    """A client alive but not reading (its receive window full): before, its connection and the task
    writing to it stayed until the client read or went away, however long the answer waited."""
    ended = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            for _ in range(100_000):  # 6 GiB: far past every buffer between here and the client
                yield b"x" * (64 * KIB)
        finally:
            ended.set()  # the response was given up: the connection is gone

    async def stream(_: object) -> StreamingResponse:
        return StreamingResponse(endless(), media_type="application/octet-stream")

    server = HttpServer(
        Starlette(routes=[Route("/", stream)]), "127.0.0.1:0", bounds=RequestBounds(write_stall_seconds=0.3)
    )
    await server.start()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * KIB)  # fills at once; never read below
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        try:
            await asyncio.get_running_loop().sock_sendall(sock, head("/", [], method="GET"))
            await asyncio.wait_for(ended.wait(), GUARD)
        finally:
            sock.close()
    finally:
        await server.stop()


# -- 503: connections past WEBHOOKD_HTTP_MAX_CONNECTIONS ------------------------------------------------------


async def test_a_connection_past_the_limit_is_answered_503_at_once_and_closed() -> None:
    """Before, every connection was accepted and held (slow clients bounded only by the file descriptors)."""

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = HttpServer(Starlette(routes=[Route("/", hello)]), "127.0.0.1:0", bounds=RequestBounds(max_connections=2))
    await server.start()
    held: list[Connection] = []
    try:
        for _ in range(2):  # served, and kept alive: both count
            held.append(await Connection.open(server.port))
            await held[-1].send(head("/", [], method="GET"))
            assert (await held[-1].response())[0] == 200

        refused = await Connection.open(server.port)
        held.append(refused)
        status, headers, body = await refused.response()  # without sending a byte: a slow client is refused too

        assert status == 503
        assert int(headers["retry-after"]) >= 1
        assert headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
        assert "2 connections" in error["message"]
        assert error["details"][0]["reason"] == "TOO_MANY_CONNECTIONS"
        assert await refused.closed_by_server()

        held.pop(0).close()  # a slot frees: a new connection is served once the server has seen it close
        for _ in range(200):
            retry = await Connection.open(server.port)
            try:
                await retry.send(head("/", [], method="GET"))
                if (await retry.response())[0] == 200:
                    break
            finally:
                retry.close()
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no connection was served after one closed")
    finally:
        for connection in held:
            connection.close()
        await server.stop()


# -- what refusals log ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def refused_status(port: int, request_bytes: bytes) -> int:
    connection = await Connection.open(port)
    try:
        await connection.send(request_bytes)
        return (await connection.response())[0]
    finally:
        connection.close()


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[object, object]]:
    """(status, suppressed) of each "http request refused" line, in order."""
    return [
        (getattr(record, "status", None), getattr(record, "suppressed", None))
        for record in caplog.records
        if record.getMessage() == "http request refused"
    ]


async def test_a_flood_of_refused_requests_logs_a_line_a_kind_an_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Before, every refused request logged a line of its own, so a hostile client could flood the log."""

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    clock = FakeClock()  # the throttle's window passes only when the test says so
    refusals = ThrottledLog(logging.getLogger("webhookd.gateway"), clock=clock)
    server = HttpServer(Starlette(routes=[Route("/", hello)]), "127.0.0.1:0", refusals=refusals)
    caplog.set_level(logging.INFO, "webhookd.gateway")
    await server.start()
    try:
        for _ in range(5):
            assert await refused_status(server.port, b"GARBAGE\r\n\r\n") == 400
        # Another kind is not held back by the first: its first line is logged at once.
        huge = head("/", [("x-huge", "v" * (80 * KIB))], method="GET")
        assert await refused_status(server.port, huge) == 431
        assert refusal_lines(caplog) == [(400, 0), (431, 0)]

        clock.now += INTERVAL_SECONDS
        assert await refused_status(server.port, b"GARBAGE\r\n\r\n") == 400
        assert refusal_lines(caplog) == [(400, 0), (431, 0), (400, 4)]  # the four left out, counted
    finally:
        await server.stop()
