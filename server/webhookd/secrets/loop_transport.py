"""Vault requests sent from the event loop itself, on kept-alive HTTP/1.1 connections of its own.

For the one Vault call on CreateWebhook's path (the secret's write). Handed to one of the store's
threads and back (the thread woken, the GIL passed to and fro, the loop woken by the result), that
write cost the service about 150 µs more CPU per Create under load than sent from here (medians of
1,159 and 1,013 µs per Create in alternating runs), where the write's own work is about 120 µs.

hvac stays the client: `TwoPassSession` lets an hvac method build its request (path, headers, body)
and stop there; this module sends it; the same method then runs again over the response, so hvac's
error mapping and answer parsing apply unchanged. Responses are parsed as secrets/transport.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools

from webhookd.secrets.transport import (
    Reading,
    Response,
    TransportError,
    TransportKey,
    dropped,
    encode_body,
    new_tls_context,
    request_bytes,
)


@dataclass(frozen=True)
class Request:
    """What hvac asked to send, as it handed it to its session."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)  # the token
    body: bytes = field(repr=False)  # a secret
    timeout: float | None
    verify: bool | str | None
    cert: tuple[str, str] | str | None


class Prepared(Exception):
    """Not an error: where the first pass ends, carrying its request."""

    def __init__(self, request: Request) -> None:
        super().__init__("request prepared")
        self.request = request


class TwoPassSession:
    """What hvac sends through, in two passes: without a response to give it raises Prepared with the
    request; given one (`answer`), hands it to the next request and forgets it."""

    # Left unset so hvac passes its own TLS settings (VAULT_CACERT...) with each request.
    verify: bool | str | None = None
    cert: tuple[str, str] | None = None
    proxies: Any = None

    def __init__(self) -> None:
        self._response: Response | None = None

    def answer(self, response: Response) -> None:
        self._response = response

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        allow_redirects: bool = True,
        timeout: float | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        data: bytes | str | None = None,
        verify: bool | str | None = True,
        cert: tuple[str, str] | str | None = None,
        **_: Any,  # proxies: Vault is reached directly
    ) -> Response:
        if self._response is not None:
            response, self._response = self._response, None
            return response
        sent_headers = dict(headers or {})
        if json is not None:
            sent_headers["Content-Type"] = "application/json"
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        body = encode_body(json, data)
        raise Prepared(Request(method.upper(), url, sent_headers, body, timeout, verify, cert))


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response read by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.broken = False
        self._reading: Reading | None = None
        self._answered: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reading is None or self._answered is None:
            self._fail(TransportError("Vault sent bytes between responses"))  # out of step: never reused
            return
        try:
            self._reading.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"Vault sent a malformed response: {exc}"))
            return
        if self._reading.done and not self._answered.done():
            self._answered.set_result(None)

    def eof_received(self) -> bool:
        self._ended()
        return False  # close it

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def _ended(self) -> None:
        self.broken = True
        if self._answered is None or self._answered.done():
            return
        if self._reading is not None and self._reading.ends_at_close():
            self._answered.set_result(None)
        else:
            self._answered.set_exception(TransportError("Vault closed the connection before the response was complete"))

    def _fail(self, error: TransportError) -> None:
        self.broken = True
        if self._answered is not None and not self._answered.done():
            self._answered.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, message: bytes, *, head: bool) -> Response:
        assert self.transport is not None
        self._reading = reading = Reading(head=head)
        self._answered = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(message)
            await self._answered
        finally:
            self._reading, self._answered = None, None
        if not reading.keep_alive:
            self.broken = True
        return Response(reading.status, reading.headers, b"".join(reading.body))

    def usable(self) -> bool:
        """Open, and in step: nothing came since its last response (the server closing it), not even
        what the loop has yet to read."""
        if self.broken or self.transport is None or self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        return sock is not None and not dropped(sock)

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed already: so is the socket
                self.transport.close()


class LoopConnections:
    """Kept-alive connections to Vault, for one event loop, at most `limit` requests at a time."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._idle: list[tuple[TransportKey, _Connection]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tls: dict[tuple[bool | str | None, tuple[str, str] | str | None], ssl.SSLContext] = {}

    async def send(self, request: Request) -> Response:
        """`request`'s response; TimeoutError past its timeout, an OSError when it could not be sent
        or its response not read in full. A connection is kept only after a whole response."""
        target = urlsplit(request.url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise TransportError(f"not an http(s) URL: {target.scheme}://{target.hostname or ''}")
        port = target.port or (443 if target.scheme == "https" else 80)
        key: TransportKey = (target.scheme, target.hostname, port, request.verify, request.cert)
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        message = request_bytes(request.method, path, target.netloc, request.headers, request.body)
        async with self._slots_of_this_loop(), asyncio.timeout(request.timeout):
            connection = self._kept(key) or await self._connect(key, request)
            try:
                response = await connection.exchange(message, head=request.method == "HEAD")
            except BaseException:
                connection.close()
                raise
        if connection.broken:
            connection.close()
        else:
            self._idle.append((key, connection))
        return response

    def _slots_of_this_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self.close()  # connections of another loop (tests run one per test) cannot serve this one
            self._loop, self._slots = loop, asyncio.Semaphore(self._limit)
        return self._slots

    def _kept(self, key: TransportKey) -> _Connection | None:
        while self._idle:
            kept_key, connection = self._idle.pop()
            if kept_key == key and connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self, key: TransportKey, request: Request) -> _Connection:
        tls = None
        if key[0] == "https":
            tls = self._tls.get((request.verify, request.cert))
            if tls is None:
                tls = self._tls[(request.verify, request.cert)] = new_tls_context(request.verify, request.cert)
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection, key[1], key[2], ssl=tls, server_hostname=key[1] if tls is not None else None
        )
        return connection

    def close(self) -> None:
        for _, connection in self._idle:
            connection.close()
        self._idle.clear()
