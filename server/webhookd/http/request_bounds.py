"""How much and how long an HTTP client may take to send a request, enforced where uvicorn reads it.

uvicorn with httptools buffers a request head without limit and has no timeout for a request that
is slow to arrive: its keep-alive timer runs only between requests, and any byte received stops it.
It has no setting for either (h11_max_incomplete_event_size is h11's, and answers 400), and ASGI
middleware runs only once the head is parsed. So the HTTP protocol is uvicorn's own, plus:
- a head (request line and headers) over `max_head_bytes` is answered 431;
- a request the parser refuses is answered 400 in the JSON error shape (uvicorn's is plain text);
- a request not received in full within `request_timeout_seconds` of its first byte (of the
  connection, for its first request) is answered 408; a connection that sends nothing is closed;
- each of these answers carries the default headers of every answer (http/response_headers.py) and
  ends the connection gracefully: sent, the write side shut, and what the client still
  sends read and dropped for a moment, so that it reads the answer rather than a reset;
- a client that shuts its side after sending a whole request still gets the answer;
- a connection past `max_connections` open at once is answered 503 as soon as it is accepted, before it
  sends anything, and closed. uvicorn's `limit_concurrency` is not used: it answers only requests whose
  head has come (a slow client is never refused, and holds its descriptor), in plain text, with a
  warning logged for each.
Idle keep-alive connections are closed after `keep_alive_seconds` (uvicorn's own timer).
Refusals are logged through a ThrottledLog: a client refused in a loop costs a line an interval per
kind (its status), not one a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from webhookd.http.errors import ApiError, head_too_large, malformed_request, request_timeout, too_many_connections
from webhookd.http.response_headers import DEFAULT_HEADERS
from webhookd.observability.log_throttle import ThrottledLog

log = logging.getLogger("webhookd.gateway")
KIB = 1024
# How long a refused client may go on sending (dropped) before its connection is closed regardless.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class RequestBounds:
    request_timeout_seconds: float = 60.0
    max_head_bytes: int = 64 * KIB
    # Longer than the idle timeout of the proxies in front (60 s is common): a server that closes
    # first races the proxy's next request on that connection, which then fails.
    keep_alive_seconds: float = 75.0
    # Open at once, per server process (WEBHOOKD_HTTP_MAX_CONNECTIONS): each slow client holds one for up
    # to the request timeout, and without a bound together they held every file descriptor.
    max_connections: int = 1000
    # Idle this long, a connection is probed by the kernel, and closed when the probes go unanswered
    # (WEBHOOKD_HTTP_TCP_KEEPALIVE_SECONDS): nothing else would find an idle stream's vanished client.
    tcp_keepalive_seconds: float = 30.0
    # A connection whose client takes nothing of its answer for this long is dropped, as nginx's
    # send_timeout does: a reader alive but not reading held it, and the task writing to it, for ever.
    write_stall_seconds: float = 65.0


def bounded_protocol(bounds: RequestBounds, *, refusals: ThrottledLog | None = None) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...): uvicorn makes one per connection, and they
    share `refusals` (one per server unless given)."""
    return type("BoundedHttpToolsProtocol", (_Bounded,), {"bounds": bounds, "refusals": refusals or ThrottledLog(log)})


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class _Bounded(HttpToolsProtocol):
    bounds: ClassVar[RequestBounds] = RequestBounds()
    # A flood of refused clients (or connections) is one line an interval per kind, not one each.
    refusals: ClassVar[ThrottledLog] = ThrottledLog(log)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True  # a head is awaited or arriving (not a body)
        self._in_request = False  # a request's first byte has come and its last not yet
        self._head_bytes = 0  # received while the head is incomplete
        self._head_size = 0  # of the current head, as parsed
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None  # set while the client takes nothing

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counted in server_state.connections until connection_lost
        if len(self.connections) > self.bounds.max_connections:
            limit = self.bounds.max_connections
            self.refusals.warning("max connections", "http connection refused", {"max_connections": limit})
            self._refuse(too_many_connections(limit), logged=False)
            return
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        for timer in (self._linger, self._write_stall):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client is taking nothing. Only then is a timer set."""
        super().pause_writing()
        if self._write_stall is None:
            self._write_stall = self.loop.call_later(self.bounds.write_stall_seconds, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None
        super().resume_writing()

    def _write_stalled(self) -> None:
        self._write_stall = None
        stall = self.bounds.write_stall_seconds
        self.refusals.warning("write stalled", "http connection dropped: its client took nothing", {"seconds": stall})
        self.transport.abort()  # close() would wait for the buffer to drain, which it never will

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped while the refusal lingers
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still incomplete: everything since it began is head (httptools holds a header it is
        # reading in memory until it ends).
        if self._in_head and self._head_bytes > self.bounds.max_head_bytes and not self._refused:
            self._refuse(head_too_large(self.bounds.max_head_bytes))

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol allows a bool
        """The client shut its side. uvicorn then closed at once, dropping the answer to a request it
        had sent in full (whose receipt was stored all the same): that answer is sent, then we close."""
        cycle = self.cycle
        if self._refused or self._in_request or cycle is None or cycle.response_complete:
            return None  # nothing to answer: asyncio closes the connection
        cycle.keep_alive = False
        return True

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: answered in the error shape of every other HTTP error."""
        if not self._refused:  # else the parse error is ours (_Refused), and the client has its answer
            self._refuse(malformed_request())

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request = True
        self._head_size = 0
        if self._deadline is None:
            self._start_deadline()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        if self._head_size > self.bounds.max_head_bytes:
            self._refuse(head_too_large(self.bounds.max_head_bytes))
            raise _Refused  # the app never sees the request
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()
        if self.pipeline:
            # Queued behind a request in progress, with reading paused: the wait is ours, not the client's.
            self._cancel_deadline()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request = False
        self._in_head = True
        self._head_bytes = 0
        self._cancel_deadline()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        super()._start_asgi_task(cycle, app)
        if self._in_request and self._deadline is None:  # a queued request's turn: its body may come again
            self._start_deadline()

    # -- the deadline and the refusals

    def _start_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.bounds.request_timeout_seconds, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        if not self._in_request or self._answering():
            # Nothing asked (an idle new connection), or an answer already under way that a 408 cannot follow.
            self.transport.close()
            return
        self._refuse(request_timeout(self.bounds.request_timeout_seconds))

    def _answering(self) -> bool:
        """Whether a response has started on this connection that is not a finished earlier one."""
        cycle = self.cycle
        if cycle is None:
            return False
        return not cycle.response_complete if self._in_head else cycle.response_started

    def _refuse(self, error: ApiError, *, logged: bool = True) -> None:
        """Answers `error` and closes the connection, unless a response is being written (then only closes)."""
        self._refused = True
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        if logged:
            extra = {"status": error.http_status, "reason": error.message}
            self.refusals.info(error.http_status, "http request refused", extra)  # a kind per status
        if self._answering():
            self.transport.close()
            return
        if not self._in_head and self.cycle is not None:
            # The app may be reading this request's body: it reads a disconnect, and what it answers is dropped.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        body = json.dumps(error.body()).encode()
        head = [STATUS_LINE[error.http_status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        # Below every ASGI wrapper, so the defaults DefaultHeaders gives every app's answer are added here.
        headers = {**DEFAULT_HEADERS, **error.headers}
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then end of stream
        self.flow.resume_reading()  # what it still sends is read and dropped, so closing sends no reset
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)
