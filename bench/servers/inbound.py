"""Baseline: a bare Starlette inbound handler on uvicorn, configured as the service's HTTP server is.

It answers the service's inbound route: reads the body, verifies its Standard Webhooks signature
(HMAC-SHA256, 5 minutes' tolerance) with the secret it is given, and answers 200 accepted, or 401.
No database, no rate limit, no duplicate check.

Run: `python -m servers.inbound --secret whsec_...` (from bench/); prints "listening on HOST:PORT".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness import signing
from harness.lifetime import stop_event

HOST = "127.0.0.1"
ACCEPTED = b'{"status":"accepted"}'
REJECTED = b'{"status":"rejected"}'


def app(secret: str) -> Starlette:
    signing_key = signing.key(secret)

    async def inbound(request: Request) -> Response:
        body = await request.body()
        if not signing.verify(signing_key, request.headers, body):
            return Response(REJECTED, status_code=401, media_type="application/json")
        return Response(ACCEPTED, media_type="application/json")

    return Starlette(routes=[Route("/api/v1/integration/inbound/{webhook_id}", inbound, methods=["POST"])])


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: this process stops it on SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    stop = stop_event()
    # The service's HTTP server settings (webhookd.http.server), on the same default asyncio loop.
    config = uvicorn.Config(app(args.secret), log_config=None, access_log=False, lifespan="off", timeout_keep_alive=75)
    server = _Server(config)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.02)
    print(f"listening on {HOST}:{sock.getsockname()[1]}", flush=True)
    await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await serving


if __name__ == "__main__":
    asyncio.run(main())
