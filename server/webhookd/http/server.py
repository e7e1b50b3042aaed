"""Serving the gateway app with uvicorn inside the webhookd process, next to the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger("webhookd.gateway")
KEEP_ALIVE_SECONDS = 75


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the webhookd process owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn on a host:port (port 0 picks a free one), started and stopped as a task."""

    def __init__(self, app: ASGIApp, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        self._server = _EmbeddedUvicorn(
            uvicorn.Config(
                app,
                host=host,
                port=int(port),
                log_config=None,
                access_log=False,  # gateway/operations.py writes the access log, without query strings
                lifespan="off",
                # Longer than the idle timeout of the proxies in front (60 s is common): a server that
                # closes first races the proxy's next request on that connection, which then fails.
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="http-gateway")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up error (e.g. address in use)
                raise RuntimeError("HTTP gateway stopped during start-up")
            await asyncio.sleep(0.02)
        sockets = [sock for server in self._server.servers for sock in server.sockets]
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
