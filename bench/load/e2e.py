"""Load generator: end-to-end deliveries, from the first PublishEvent to the last 2xx attempt recorded.

Publishes `--events` events of type bench.created (each fanned out by the service to every webhook
subscribed to it), `--concurrency` calls in flight, then reads the attempts table every POLL seconds
until each delivery of those events has a 2xx attempt recorded, or `--limit` seconds have passed since
the first publish. Touches `--started-file` (if given) just before the first publish, so a latency
probe can start with the load.

Prints one JSON line:
  events, expected (events x --hooks), queued (what the service said it queued), recorded (deliveries
  with a 2xx attempt), errors, first_error,
  seconds          first publish call start -> the poll that saw the last 2xx attempt (at most POLL late),
  db_seconds       first publish call start (wall clock) -> the latest occurred_at among those attempts: the
                   worker's clock when its POST returned, before it recorded it (a lower bound),
  publish_seconds  first publish call start -> last publish call returned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from pathlib import Path

import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import struct_pb2

from harness.lifetime import stop_event
from load.channels import close_channels, open_channels
from load.loop import emit

POLL = 0.02
EVENT_TYPE = "bench.created"
RECORDED = """
SELECT count(DISTINCT delivery_id), max(occurred_at) FROM attempts
WHERE event_id = ANY(%s) AND http_status BETWEEN 200 AND 299
"""


def event(n: int, payload_bytes: int) -> pb.PublishEventRequest:
    payload = struct_pb2.Struct()
    payload.update({"n": n, "pad": "x" * payload_bytes})
    return pb.PublishEventRequest(event_type=EVENT_TYPE, payload=payload)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database", required=True, help="libpq URL, for reading the attempts table")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--hooks", type=int, required=True, help="webhooks subscribed to bench.created")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--started-file", default="")
    args = parser.parse_args()
    stop = stop_event()
    metadata = (("authorization", f"Bearer {args.token}"),)
    event_ids: list[str] = []
    queued = errors = 0
    first_error = ""
    numbers = itertools.count()
    channels = await open_channels(args.target, 4)
    stubs = itertools.cycle([rpc.WebhookServiceStub(channel) for channel in channels])

    async def lane() -> None:
        nonlocal queued, errors, first_error
        while not stop.is_set() and (n := next(numbers)) < args.events:
            try:
                response = await next(stubs).PublishEvent(event(n, args.payload_bytes), metadata=metadata)
            except Exception as error:  # noqa: BLE001 - reported; the orchestrator fails the run
                errors += 1
                first_error = first_error or f"{type(error).__name__}: {error}"[:500]
                continue
            event_ids.append(response.event_id)
            queued += response.deliveries_queued

    try:
        async with await psycopg.AsyncConnection.connect(args.database, autocommit=True) as database:
            if args.started_file:
                await asyncio.to_thread(Path(args.started_file).touch)
            wall_start = time.time()
            started = seen = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(args.concurrency))), args.limit)
            published = time.monotonic() - started
            recorded, last = 0, None
            while not stop.is_set():
                cursor = await database.execute(RECORDED, (event_ids,))
                row = await cursor.fetchone()
                recorded, last = (int(row[0]), row[1]) if row else (0, None)
                seen = time.monotonic()
                if recorded >= queued or seen - started > args.limit:
                    break
                await asyncio.sleep(POLL)
    finally:
        await close_channels(channels)
    emit(
        {
            "events": args.events,
            "published": len(event_ids),
            "expected": args.events * args.hooks,
            "queued": queued,
            "recorded": recorded,
            "errors": errors,
            "first_error": first_error,
            "seconds": seen - started,
            "db_seconds": last.timestamp() - wall_start if last else None,
            "publish_seconds": published,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
