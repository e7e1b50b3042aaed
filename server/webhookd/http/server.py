"""Serving an HTTP app with uvicorn inside the webhookd process: the gateway next to the gRPC
server, or a worker's operational routes. Every app is served inside `DefaultHeaders` and
`UnexpectedErrors` (an exception no handler took is our JSON 500), and its clients bounded
(http/request_bounds.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from webhookd.http.request_bounds import RequestBounds, bounded_protocol
from webhookd.http.response_headers import DefaultHeaders
from webhookd.http.unexpected_errors import UnexpectedErrors
from webhookd.observability.log_throttle import ThrottledLog

log = logging.getLogger("webhookd.gateway")
DEFAULT_BOUNDS = RequestBounds()
# Unanswered keepalive probes before a connection is taken for dead: one lost probe is not a dead host.
KEEPALIVE_PROBES = 3


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the webhookd process owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(addr: str, *, reuse_port: bool = False, bounds: RequestBounds = DEFAULT_BOUNDS) -> socket.socket:
    """A TCP socket bound to host:port (port 0 picks a free one); OSError when it cannot be. The
    connections it accepts find a vanished client within `bounds` (`_find_vanished_clients`).

    Bound here rather than by uvicorn, which exits the process when it cannot bind; with
    `reuse_port` several processes share the port and the kernel spreads connections over them.
    """
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle's algorithm off only on sockets whose proto says
    # TCP, and a socket made with proto 0 (and every connection it accepts) does not. With Nagle on,
    # a keep-alive connection's second response waited for the client's delayed ACK: 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections
        _find_vanished_clients(sock, bounds)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port)))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _find_vanished_clients(sock: socket.socket, bounds: RequestBounds) -> None:
    """Every connection `sock` accepts (Linux copies these options to them) is closed once its client's
    host is found gone (no FIN, no RST: power lost, network cut); uvicorn then sees the connection
    lost, and Starlette ends its stream, which gives its place back.

    Idle: TCP keepalive. A connection idle `tcp_keepalive_seconds` is probed three times over as long
    again, and closed when no probe is answered. An idle NDJSON stream writes nothing, so without
    probes it held its place until the server stopped. Probes rather than a heartbeat line: the kernel
    answers them and they change no byte of the documented stream, nor of any other answer.

    Writing: TCP_USER_TIMEOUT. Keepalive probes only a connection with nothing in flight, and an SSE
    stream's heartbeats (or a flowing stream's entries) always have some, unacknowledged; they are too
    small to fill the transport's buffer, which starts the write stall timer. So only the kernel's
    retransmissions (~15 min, net.ipv4.tcp_retries2) ended it. Data unacknowledged as long as keepalive
    takes to find an idle peer dead (as the keepalive-derived user timeouts of gRPC and of
    Cloudflare's advice) now ends it. Linux applies the same bound to a window the client keeps shut
    (a live reader that reads nothing), so it is never below the write stall bound: that one, with its
    setting, decides how long a slow reader may take.
    """
    idle = max(1, round(bounds.tcp_keepalive_seconds))
    interval = max(1, idle // KEEPALIVE_PROBES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    unacknowledged_seconds = max(idle + interval * KEEPALIVE_PROBES, bounds.write_stall_seconds)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, math.ceil(unacknowledged_seconds * 1000))


class HttpServer:
    """uvicorn on a host:port (port 0 picks a free one), started and stopped as a task; every answer
    carries the default headers (http/response_headers.py)."""

    def __init__(
        self,
        app: ASGIApp,
        addr: str,
        *,
        bounds: RequestBounds = DEFAULT_BOUNDS,
        reuse_port: bool = False,
        shutdown_grace_seconds: float | None = None,
        refusals: ThrottledLog | None = None,
        listening: socket.socket | None = None,
    ) -> None:
        """shutdown_grace_seconds: how long `stop` lets requests in flight finish before it ends them;
        None waits for every one, which a following stream never is. refusals: what logs the clients
        the bounds refuse (http/request_bounds.py), a line an interval per kind; a new one by default.
        listening: a socket `listening_socket` made for `addr` already, served instead of a new one."""
        self._addr = addr
        self._listening = listening
        self._reuse_port = reuse_port
        self._bounds = bounds
        self._server = _EmbeddedUvicorn(
            uvicorn.Config(
                DefaultHeaders(UnexpectedErrors(app)),
                log_config=None,
                access_log=False,  # gateway/operations.py writes the access log, without query strings
                lifespan="off",
                http=bounded_protocol(bounds, refusals=refusals),  # heads and slow requests bounded
                timeout_keep_alive=bounds.keep_alive_seconds,  # type: ignore[arg-type]  # call_later takes a float
                # uvicorn counts it in whole seconds.
                timeout_graceful_shutdown=None if shutdown_grace_seconds is None else math.ceil(shutdown_grace_seconds),
            )
        )
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        """Binds (OSError when the address is taken) and serves."""
        sock = self._listening or listening_socket(self._addr, reuse_port=self._reuse_port, bounds=self._bounds)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
