"""The webhook receiver deliveries go to, for the service and for the bare sign-and-POST loop alike.

A bare aiohttp server: every POST under /hook/ is read, its Standard Webhooks signature checked with
the benchmarks' secret, counted, and answered 200 with a short body. The first arrival of each
`webhook-id` is noted on CLOCK_MONOTONIC, which every process on the machine shares, so a load
generator can compare it with its own call start. Control routes (not counted):
  GET  /stats     {"received", "verified", "unsigned", "bad", "body_bytes"} since start
  POST /arrivals  body: a JSON list of webhook-ids -> {id: monotonic seconds} for those that arrived

Run: `python -m servers.receiver` (from bench/); prints "listening on HOST:PORT", serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

from aiohttp import web

from harness import signing
from harness.lifetime import stop_event

HOST = "127.0.0.1"
ANSWER = b'{"status":"received"}'
MAX_ARRIVALS = 2_000_000  # bounded memory, whatever a benchmark sends


@dataclass
class Stats:
    received: int = 0
    verified: int = 0  # a signature that matches the benchmarks' secret
    unsigned: int = 0  # no Standard Webhooks headers at all
    bad: int = 0  # headers present, but no signature matches
    body_bytes: int = 0


class Receiver:
    def __init__(self) -> None:
        self.key = signing.key(signing.SECRET)
        self.stats = Stats()
        self.arrivals: dict[str, float] = {}

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = await request.read()
        stats = self.stats
        stats.received += 1
        stats.body_bytes += len(body)
        message_id = request.headers.get("webhook-id", "")
        if "webhook-signature" not in request.headers:
            stats.unsigned += 1
        elif signing.verify(self.key, request.headers, body):
            stats.verified += 1
        else:
            stats.bad += 1
        if message_id and len(self.arrivals) < MAX_ARRIVALS:
            self.arrivals.setdefault(message_id, arrived)
        return web.Response(body=ANSWER, content_type="application/json")

    async def stats_route(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def arrivals_route(self, request: web.Request) -> web.Response:
        wanted = await request.json()
        return web.json_response({key: self.arrivals[key] for key in wanted if key in self.arrivals})


async def main() -> None:
    stop = stop_event()
    receiver = Receiver()
    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/hook/{name}", receiver.hook)
    app.router.add_get("/stats", receiver.stats_route)
    app.router.add_post("/arrivals", receiver.arrivals_route)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=2048)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on {HOST}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
