"""The delivery HTTP step against real sockets: a loopback aiohttp receiver and a `HttpSender` posting to it.

Most tests allow private targets (the receiver is on 127.0.0.1); the refusal tests use the default policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from ports import closed_port
from webhookd.delivery.answers import NOT_RECORDED, RESPONSE_EXCERPT_BYTES, RESPONSE_HEADERS_CHARS, VALUE_CUT
from webhookd.delivery.http import HttpSender
from webhookd.delivery.ssrf import TargetPolicy
from webhookd.domain.credentials import Credential
from webhookd.domain.statuses import Outcome

BODY = json.dumps({"type": "rfp.created", "data": {"id": "rfp_1"}}).encode()
HEADERS = {
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,c2lnbmF0dXJl",
    "X-Static": "static value",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _build_routes(release: asyncio.Event) -> dict[str, Handler]:
    async def ok(request: web.Request) -> web.StreamResponse:
        response = web.Response(text='{"received":true}', content_type="application/json")
        response.set_cookie("session", "abc")
        return response

    async def error(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    async def echo(request: web.Request) -> web.StreamResponse:
        # As receivers that refuse a caller quote what it sent: whole, in part, and cut short.
        token = request.headers.get("Authorization", "")
        quoted = f"refused {token}; token {token.split()[-1]}; "
        text = quoted + "x" * (RESPONSE_EXCERPT_BYTES - len(quoted) - 20) + token  # the excerpt keeps 20 of it
        return web.Response(status=401, text=text, headers={"X-Seen": token})

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/landing")

    async def slow(request: web.Request) -> web.StreamResponse:
        # Held until the test ends (at most 5s), far beyond the sender's timeout.
        await asyncio.wait_for(release.wait(), timeout=5)
        return web.Response(text="late")

    async def throttled(request: web.Request) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "7"})

    async def unavailable(request: web.Request) -> web.StreamResponse:
        when = datetime.now(UTC) + timedelta(seconds=120)
        return web.Response(status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    async def gone(request: web.Request) -> web.StreamResponse:
        return web.Response(status=410, text="unsubscribed")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"a" * (200 * 1024))

    async def gzip_bomb(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(bytes(16 * 1024 * 1024)), headers={"Content-Encoding": "gzip"})

    async def big_headers(request: web.Request) -> web.StreamResponse:
        # ~1 MB of headers, within what aiohttp lets through.
        return web.Response(status=500, headers={f"X-Pad-{i}": f"{i}:" + "p" * 8100 for i in range(120)})

    async def close(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        request.transport.abort()
        return web.Response()

    async def empty_gzip_members(request: web.Request) -> web.StreamResponse:
        # Endless, and decoding to nothing: only a bound on what is read ends it.
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        await response.prepare(request)
        member = gzip.compress(b"")
        while not release.is_set():
            await response.write(member * 1000)
        return response

    return {
        "/empty-gzip-members": empty_gzip_members,
        "/ok": ok,
        "/error": error,
        "/echo": echo,
        "/redirect": redirect,
        "/slow": slow,
        "/throttled": throttled,
        "/unavailable": unavailable,
        "/gone": gone,
        "/big": big,
        "/gzip-bomb": gzip_bomb,
        "/big-headers": big_headers,
        "/close": close,
        "/reset": reset,
    }


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    release = asyncio.Event()
    routes = _build_routes(release)
    requests: list[Received] = []

    async def receive(request: web.Request) -> web.StreamResponse:
        requests.append(Received(request.path, await request.read(), dict(request.headers)))
        handler = routes.get(request.path)
        return await handler(request) if handler is not None else web.Response(text="landed")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Receiver(port=runner.addresses[0][1], requests=requests)
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[HttpSender]:
    async with HttpSender(TargetPolicy(allow_private=True), limit=8) as running:
        yield running


async def test_2xx_succeeds_and_delivers_the_exact_body_and_headers(receiver: Receiver, sender: HttpSender) -> None:
    headers = dict(HEADERS)
    result = await sender.send(receiver.url("/ok"), body=BODY, headers=headers, timeout_ms=5000)

    assert result.outcome is Outcome.SUCCEEDED
    assert result.http_status == 200
    assert result.error == ""
    assert result.response_excerpt == '{"received":true}'
    assert 0 <= result.latency_ms < 5000
    assert result.retry_after_seconds is None and not result.gone
    assert headers == HEADERS
    [received] = receiver.requests
    assert received.body == BODY
    for name, value in HEADERS.items():
        assert received.headers[name] == value
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"].startswith("webhookd/")


async def test_a_static_header_replacing_a_session_one_in_another_case_is_recorded_as_sent(
    receiver: Receiver, sender: HttpSender
) -> None:
    """A webhook may name its own User-Agent or Accept-Encoding: the receiver gets that one alone, and
    the attempt records what it got, not the session's value beside it."""
    static = {**HEADERS, "user-agent": "acme-relay/2", "ACCEPT-ENCODING": "identity"}

    result = await sender.send(receiver.url("/ok"), body=BODY, headers=static, timeout_ms=5000)

    [received] = receiver.requests
    assert (received.headers["User-Agent"], received.headers["Accept-Encoding"]) == ("acme-relay/2", "identity")
    recorded = [(name.lower(), value) for name, value in result.request_headers]
    assert [value for name, value in recorded if name == "user-agent"] == ["acme-relay/2"]
    assert [value for name, value in recorded if name == "accept-encoding"] == ["identity"]


async def test_the_credential_is_sent_once_in_place_of_a_header_of_its_name_and_recorded_redacted(
    receiver: Receiver, sender: HttpSender
) -> None:
    static = {**HEADERS, "x-api-key": "public"}  # an update may add one named like it, in another case

    result = await sender.send(
        receiver.url("/ok"), body=BODY, headers=static, timeout_ms=5000, credential=Credential("X-Api-Key", "k-1")
    )

    [received] = receiver.requests
    assert [value for name, value in received.headers.items() if name.lower() == "x-api-key"] == ["k-1"]
    recorded = dict(result.request_headers)
    assert recorded["X-Api-Key"] == "[redacted]" and "x-api-key" not in recorded
    assert "k-1" not in recorded.values()


async def test_a_receiver_quoting_the_credential_back_is_recorded_with_it_hidden(
    receiver: Receiver, sender: HttpSender
) -> None:
    """Whoever may read attempts need not be able to read the credential."""
    token = "Bearer rcv-4e1d9c7b2a6f8e0d3c5b"

    result = await sender.send(
        receiver.url("/echo"),
        body=BODY,
        headers=HEADERS,
        timeout_ms=5000,
        credential=Credential("Authorization", token),
    )

    assert result.http_status == 401
    assert result.response_excerpt.startswith("refused [redacted]; token [redacted]; xxx")
    assert result.response_excerpt.endswith("x[redacted]")  # the excerpt ends inside the token
    assert dict(result.response_headers)["X-Seen"] == "[redacted]"
    assert "rcv-4e1d" not in f"{result.response_excerpt} {result.response_headers} {result.error}"


async def test_cookies_from_a_receiver_are_not_sent_back(receiver: Receiver, sender: HttpSender) -> None:
    for _ in range(2):
        await sender.send(receiver.url("/ok"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert [r.headers.get("Cookie") for r in receiver.requests] == [None, None]


async def test_proxy_environment_is_ignored(
    receiver: Receiver, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would make the connection for us and bypass the SSRF guard.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    result = await sender.send(receiver.url("/ok"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.SUCCEEDED


async def test_500_fails_with_the_response_excerpt(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/error"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.FAILED
    assert result.http_status == 500
    assert result.response_excerpt == "boom"
    assert result.error == "HTTP 500"


async def test_redirect_is_a_failure_and_is_not_followed(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/redirect"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.FAILED
    assert result.http_status == 302
    assert [r.path for r in receiver.requests] == ["/redirect"]


async def test_slow_receiver_times_out(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/slow"), body=BODY, headers=HEADERS, timeout_ms=200)
    assert result.outcome is Outcome.TIMED_OUT
    assert result.http_status is None
    assert 150 <= result.latency_ms < 2000
    assert result.error == "timed out after 200 ms"


async def test_429_retry_after_seconds(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/throttled"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.FAILED
    assert result.http_status == 429
    assert result.retry_after_seconds == 7.0


async def test_503_retry_after_http_date(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/unavailable"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.FAILED
    assert result.http_status == 503
    assert result.retry_after_seconds is not None
    assert 110 <= result.retry_after_seconds <= 120  # the date has one-second resolution


async def test_410_means_gone(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/gone"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.FAILED
    assert result.gone is True
    assert result.retry_after_seconds is None


async def test_closed_port_is_a_connection_error(sender: HttpSender) -> None:
    result = await sender.send(f"http://127.0.0.1:{closed_port()}/hook", body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.CONNECTION_ERROR
    assert result.http_status is None
    assert result.error == "connection refused"


@pytest.mark.parametrize(
    ("host", "error"),
    [("127.0.0.1", "target refused: 127.0.0.1 is loopback"), ("localhost", "target refused: localhost is loopback")],
)
async def test_default_policy_refuses_loopback_without_sending(receiver: Receiver, host: str, error: str) -> None:
    async with HttpSender() as guarded:
        result = await guarded.send(receiver.url("/ok", host=host), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.REFUSED
    assert result.http_status is None
    assert result.error == error
    assert receiver.requests == []


@pytest.mark.parametrize("zone", ["%25", "%25lo", "%251"])
async def test_a_url_with_an_ipv6_zone_id_is_refused_without_sending(sender: HttpSender, zone: str) -> None:
    """Stored before such URLs were refused: the zone, looked up as written, names no interface it meant."""
    result = await sender.send(f"http://[::1{zone}]:9/hook", body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.REFUSED
    assert result.error == "target refused: the URL's IPv6 address carries a zone id"


async def test_excerpt_is_capped_at_64_kib(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/big"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.response_excerpt == "a" * RESPONSE_EXCERPT_BYTES


async def test_response_headers_are_recorded_cut_and_bounded(receiver: Receiver, sender: HttpSender) -> None:
    """GetDelivery returns every attempt in one message: ~1 MB of headers each outgrew gRPC's 4 MB."""
    result = await sender.send(receiver.url("/big-headers"), body=BODY, headers=HEADERS, timeout_ms=5000)

    assert result.http_status == 500
    recorded = dict(result.response_headers)
    assert recorded["X-Pad-0"] == "0:" + "p" * 1022 + VALUE_CUT
    assert sum(len(name) + len(value) for name, value in result.response_headers) <= RESPONSE_HEADERS_CHARS + 30
    kept = [name for name in recorded if name.startswith("X-Pad-")]
    assert 10 <= len(kept) < 120
    dropped, _ = recorded[NOT_RECORDED].split(" more headers")
    assert int(dropped) >= 120 - len(kept)


@pytest.mark.parametrize(
    ("path", "error"), [("/close", "server disconnected"), ("/reset", "connection reset")], ids=["close", "reset"]
)
async def test_dropped_connection_is_a_connection_error(
    receiver: Receiver, sender: HttpSender, path: str, error: str
) -> None:
    result = await sender.send(receiver.url(path), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.CONNECTION_ERROR
    assert result.http_status is None
    assert result.error == error


@dataclass
class RawReceiver:
    """A receiver written on the socket: one answer per request, then (when `stale`) a second one
    nobody asked for, as a buggy receiver's error handler may write."""

    stale: bool
    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set once the last answer is written

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.bodies.append(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if self.stale:
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nstale")
                await writer.drain()
                self.answered.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sender closed the connection
        finally:
            writer.close()


@pytest.fixture
async def raw_receivers() -> AsyncIterator[Callable[[bool], Awaitable[RawReceiver]]]:
    servers: list[asyncio.Server] = []

    async def start(stale: bool) -> RawReceiver:
        receiver = RawReceiver(stale)
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        servers.append(server)
        receiver.port = server.sockets[0].getsockname()[1]
        return receiver

    yield start
    for server in servers:
        server.close()


async def _send_three(receiver: RawReceiver, sender: HttpSender) -> list[tuple[int | None, str]]:
    answers = []
    for n in range(3):
        receiver.answered.clear()
        result = await sender.send(
            f"http://127.0.0.1:{receiver.port}/hook", body=b'{"n":%d}' % n, headers=HEADERS, timeout_ms=5000
        )
        answers.append((result.http_status, result.response_excerpt))
        with contextlib.suppress(TimeoutError):  # never set when the request was not sent
            await asyncio.wait_for(receiver.answered.wait(), timeout=1)
        await asyncio.sleep(0.05)  # for the sender to read what the receiver wrote last
    return answers


async def test_an_answer_nobody_asked_for_is_never_taken_for_the_next_delivery(
    raw_receivers: Callable[[bool], Awaitable[RawReceiver]], sender: HttpSender
) -> None:
    """A receiver that answers a request twice: the idle connection holding the second answer is
    not reused, so each delivery is sent and gets its own answer."""
    receiver = await raw_receivers(True)

    answers = await _send_three(receiver, sender)

    assert receiver.bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert answers == [(200, '{"n":0}'), (200, '{"n":1}'), (200, '{"n":2}')]


async def test_a_receiver_that_answers_once_keeps_its_connection(
    raw_receivers: Callable[[bool], Awaitable[RawReceiver]], sender: HttpSender
) -> None:
    receiver = await raw_receivers(False)

    answers = await _send_three(receiver, sender)

    assert answers == [(200, '{"n":0}'), (200, '{"n":1}'), (200, '{"n":2}')]
    assert receiver.connections == 1


def _deflated(data: bytes, window_bits: int) -> bytes:
    compressor = zlib.compressobj(wbits=window_bits)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("status", "coding", "body", "outcome", "excerpt"),
    [
        (200, "gzip", gzip.compress(b"thanks"), Outcome.SUCCEEDED, "thanks"),
        (200, "deflate", _deflated(b"thanks", zlib.MAX_WBITS), Outcome.SUCCEEDED, "thanks"),
        (200, "deflate", _deflated(b"thanks", -zlib.MAX_WBITS), Outcome.SUCCEEDED, "thanks"),
        (200, "identity", b"thanks", Outcome.SUCCEEDED, "thanks"),
        (
            200,
            "br",
            b"\x0b\x02\x80thanks\x03",
            Outcome.SUCCEEDED,
            "[body not shown: its Content-Encoding 'br' is not decoded]",
        ),
        (200, "zstd", b"(\xb5/\xfd", Outcome.SUCCEEDED, "[body not shown: its Content-Encoding 'zstd' is not decoded]"),
        (
            500,
            "br",
            b"\x0b\x02\x80oops\x03",
            Outcome.FAILED,
            "[body not shown: its Content-Encoding 'br' is not decoded]",
        ),
        (200, "gzip", b"not gzip at all", Outcome.SUCCEEDED, "[body not shown: it is not valid gzip]"),
    ],
    ids=["gzip", "deflate", "raw-deflate", "identity", "br", "zstd", "br-500", "broken-gzip"],
)
async def test_the_status_decides_the_outcome_whatever_the_body_s_encoding(
    sender: HttpSender, status: int, coding: str, body: bytes, outcome: Outcome, excerpt: str
) -> None:
    """The body is only an excerpt: one webhookd cannot decode must not turn a 2xx into a retry."""
    async with _answering(web.Response(status=status, body=body, headers={"Content-Encoding": coding})) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=5000)

    assert (result.outcome, result.http_status, result.response_excerpt) == (outcome, status, excerpt)


async def test_410_is_gone_whatever_the_body_s_encoding(sender: HttpSender) -> None:
    async with _answering(
        web.Response(status=410, body=b"\x0b\x02\x80bye\x03", headers={"Content-Encoding": "br"})
    ) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=5000)

    assert (result.outcome, result.http_status, result.gone) == (Outcome.FAILED, 410, True)


async def test_a_compressed_excerpt_is_capped_at_64_kib(receiver: Receiver, sender: HttpSender) -> None:
    result = await sender.send(receiver.url("/gzip-bomb"), body=BODY, headers=HEADERS, timeout_ms=5000)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.response_excerpt == "\0" * RESPONSE_EXCERPT_BYTES


async def test_a_compressed_body_that_decodes_to_nothing_is_read_no_further_than_a_bound(
    receiver: Receiver, sender: HttpSender
) -> None:
    result = await sender.send(receiver.url("/empty-gzip-members"), body=BODY, headers=HEADERS, timeout_ms=3000)
    assert (result.outcome, result.response_excerpt) == (Outcome.SUCCEEDED, "")


@contextlib.asynccontextmanager
async def _answering(response: web.Response) -> AsyncIterator[str]:
    """The URL of a receiver that answers every request with `response`, its body sent as it is."""

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        return response

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _answering_then(head: bytes, then: str) -> AsyncIterator[str]:
    """The URL of a receiver that writes `head` (a status line, headers and the start of a body that
    Content-Length says is longer), then holds the connection open (`stall`) or closes it (`close`)."""
    release = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await writer.drain()
            if then == "stall":
                await release.wait()
        writer.close()

    async with _raw_receiver(answer) as url:
        try:
            yield url
        finally:
            release.set()


@pytest.mark.parametrize("then", ["stall", "close"])
@pytest.mark.parametrize(
    ("status_line", "outcome", "retry_after", "gone"),
    [
        (b"HTTP/1.1 200 OK\r\n", Outcome.SUCCEEDED, None, False),
        (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n", Outcome.FAILED, 7.0, False),
        (b"HTTP/1.1 410 Gone\r\n", Outcome.FAILED, None, True),
    ],
    ids=["200", "429", "410"],
)
async def test_the_status_decides_the_outcome_when_the_body_stalls_or_breaks_off(
    sender: HttpSender, status_line: bytes, outcome: Outcome, retry_after: float | None, gone: bool, then: str
) -> None:
    """A receiver that answered has answered: a 2xx whose body never ends was accepted (retrying it
    would deliver the event again and count a failure towards the auto-pause), and a 410 or a 429's
    Retry-After holds. The excerpt keeps what came, and says the rest did not."""
    head = status_line + b"Content-Length: 1000\r\n\r\naccepted"
    async with _answering_then(head, then) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=300)

    status = int(status_line.split()[1])
    assert (result.outcome, result.http_status, result.retry_after_seconds, result.gone) == (
        outcome,
        status,
        retry_after,
        gone,
    )
    assert result.response_excerpt.startswith("accepted")
    assert "cut short" in result.response_excerpt


@pytest.mark.parametrize(
    ("answer", "outcome", "status", "excerpt", "gone"),
    [
        # Content-Length counted in characters, not bytes: "Reçu" is 5 bytes.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nRe\xc3\xa7u", Outcome.SUCCEEDED, 200, "Re\u00e7", False),
        (b"HTTP/1.1 204 No Content\r\n\r\nthanks", Outcome.SUCCEEDED, 204, "", False),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nthanks\r\nzz\r\n",
            Outcome.SUCCEEDED,
            200,
            "thanks",
            False,
        ),
        (
            b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbye\r\n0\r\n\r\n",
            Outcome.FAILED,
            410,
            "",
            True,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
            Outcome.SUCCEEDED,
            200,
            "ok",
            False,
        ),
    ],
    ids=["content-length-too-short", "204-with-a-body", "broken-chunk", "410-broken-chunk", "100-then-overlong"],
)
async def test_a_body_that_breaks_its_framing_in_the_same_read_as_the_head_keeps_the_status(
    sender: HttpSender, answer: bytes, outcome: Outcome, status: int, excerpt: str, gone: bool
) -> None:
    """The head and a short body come in one read: a fault in the body (bytes past its length, a
    chunk size that is not one) made aiohttp's parser drop the head it had parsed with it, and a 2xx
    was a connection error (retried, counted towards the auto-pause) while the same answer in two
    reads kept its status. The excerpt keeps what came of the body."""
    async with _answering_then(answer, "stall") as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=2000)

    came = result.response_excerpt.split("…[body cut short")[0]
    assert (result.outcome, result.http_status, came, result.gone) == (
        outcome,
        status,
        excerpt,
        gone,
    )


@contextlib.asynccontextmanager
async def _chunks_then_holding(head: bytes, body: bytes, dropped: asyncio.Event) -> AsyncIterator[str]:
    """The URL of a receiver that writes `head`, then `body` in a write of its own, and then holds the
    connection open until the test ends, setting `dropped` when the sender closes its side."""
    release = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await writer.drain()
            writer.write(body)
            await writer.drain()
            await reader.read()  # returns at end of stream: the sender let the connection go
            dropped.set()
            await release.wait()
        writer.close()

    async with _raw_receiver(answer) as url:
        try:
            yield url
        finally:
            release.set()


@pytest.mark.parametrize("reads", ["one", "two"])
@pytest.mark.parametrize(
    ("fault", "came"),
    [(b"zz\r\nmore\r\n", "hello"), (b"6\r\nthanksXX", "hellothanks"), (b"3;\x01\r\nabc\r\n", "hello")],
    ids=["size-not-hex", "no-crlf-after-data", "bad-extension"],
)
async def test_a_chunk_that_breaks_its_framing_ends_the_attempt_at_once(
    sender: HttpSender, fault: bytes, came: str, reads: str
) -> None:
    """A 2xx head with a chunked body, then a chunk that is not one, from a receiver that keeps the
    connection open: the parser had stopped, but the body it was reading was never told, so the worker
    waited for the webhook's whole timeout (60 s here). The attempt ends on the fault, while the
    receiver still holds the connection, with the status and what came of the body."""
    dropped = asyncio.Event()
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5\r\nhello\r\n" + fault
    if reads == "one":
        head, body = head + body, b""
    async with _chunks_then_holding(head, body, dropped) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=60_000)
        await dropped.wait()  # the connection was closed by the sender, not by the receiver

    assert (result.outcome, result.http_status) == (Outcome.SUCCEEDED, 200)
    assert result.response_excerpt == came + "…[body cut short: its framing is broken]"


@pytest.mark.parametrize(
    ("answer", "then", "outcome", "status"),
    [
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
            "stall",
            Outcome.SUCCEEDED,
            202,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "stall", Outcome.TIMED_OUT, None),
        (b"HTTP/1.0 200 OK\r\n\r\nok", "close", Outcome.SUCCEEDED, 200),
        (b"ok", "close", Outcome.CONNECTION_ERROR, None),
        (b"HTTP/1.1 200 OK\r\n", "close", Outcome.CONNECTION_ERROR, None),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "stall",
            Outcome.CONNECTION_ERROR,
            None,
        ),
        (
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n",
            "stall",
            Outcome.FAILED,
            307,
        ),
        # Not an HTTP status (RFC 9110: 100-599), though the parser takes any three digits: stored as
        # 0 it read as "no response" with a `failed` outcome, and 999 as a status no client knows.
        (b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", "stall", Outcome.CONNECTION_ERROR, None),
        (b"HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n", "stall", Outcome.CONNECTION_ERROR, None),
    ],
    ids=[
        "1xx-then-202",
        "only-1xx",
        "http-1.0",
        "http-0.9",
        "head-cut-off",
        "chunked-and-length",
        "redirect-inward",
        "status-000",
        "status-999",
    ],
)
async def test_odd_answers_end_as_their_status_says_or_as_a_connection_error(
    sender: HttpSender, answer: bytes, then: str, outcome: Outcome, status: int | None
) -> None:
    """Interim answers are skipped for the final one, a 1.0 body ends with the connection, and what
    is not HTTP/1.x (no status line, a head cut off, a head framed two ways) is no answer at all."""
    async with _answering_then(answer, then) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=1000)

    assert (result.outcome, result.http_status) == (outcome, status)


@contextlib.asynccontextmanager
async def _trickling(head: bytes, trickle: bytes) -> AsyncIterator[str]:
    """The URL of a receiver that writes `head`, then `trickle` every 20 ms, never ending the head."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            for _ in range(500):
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(trickle)
        writer.close()

    async with _raw_receiver(answer) as url:
        yield url


@contextlib.asynccontextmanager
async def _raw_receiver(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """The URL of a receiver that answers each connection with `answer`, below HTTP."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("head", "trickle"), [(b"HTTP/1.1 200 O", b"K"), (b"HTTP/1.1 200 OK\r\nX-More: ", b"x")], ids=["status", "headers"]
)
async def test_a_head_that_trickles_without_end_times_out(sender: HttpSender, head: bytes, trickle: bytes) -> None:
    """Slowloris on the sender: bytes that keep coming do not keep the attempt alive past its timeout."""
    async with _trickling(head, trickle) as url:
        result = await sender.send(url, body=BODY, headers=HEADERS, timeout_ms=500)

    assert (result.outcome, result.http_status, result.error) == (Outcome.TIMED_OUT, None, "timed out after 500 ms")
