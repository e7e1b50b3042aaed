"""Load generator: end-to-end deliveries, from the first PublishEvent to the last 2xx attempt recorded.

Publishes `--events` events of type bench.created (each fanned out by the service to every webhook
subscribed to it), `--concurrency` calls in flight (with `--rate`, event n published no sooner than
n / rate s after the first: a paced load), then every POLL seconds reads the attempts the
`--tenant`'s log gained since the last read, until each delivery of those events has a 2xx attempt
recorded, or `--limit` seconds have passed since the first publish. Touches `--started-file` (if
given) just before the first publish, so a latency probe can start with the load.

The reads follow the log as DeliveryLog does: in (txid, seq) order on its index, up to the oldest
transaction still running, so no row committed late is skipped and each read touches only new rows.
Counting the turn's attempts afresh on each read (attempts has no index by event, so a scan of the
table for the turn's events) took 15-30 ms a read under the load, a query in flight for about half
the drain on the machine being measured; a read of the new rows takes 2-3 ms.

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
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import struct_pb2

from harness.lifetime import stop_event
from load.channels import close_channels, open_channels
from load.loop import emit
from webhookd.store.sql import SETTLED_TXID

POLL = 0.02
EVENT_TYPE = "bench.created"
# Where the log stands before the first publish: every attempt of the turn is written later, by a
# transaction at least this old.
LOG_START = f"SELECT {SETTLED_TXID}"
# The tenant's attempts after (txid, seq), as far as the log is settled (as DeliveryLog reads it),
# with whether each is a 2xx.
NEW_ATTEMPTS = f"""
SELECT txid, seq, event_id, delivery_id, occurred_at, http_status BETWEEN 200 AND 299 FROM attempts
WHERE tenant_id = %(tenant)s AND (txid, seq) > (%(txid)s, %(seq)s) AND txid < {SETTLED_TXID}
ORDER BY txid, seq
"""


def event(n: int, payload_bytes: int) -> pb.PublishEventRequest:
    payload = struct_pb2.Struct()
    payload.update({"n": n, "pad": "x" * payload_bytes})
    return pb.PublishEventRequest(event_type=EVENT_TYPE, payload=payload)


class Log:
    """The tenant's attempts log as read so far: the deliveries with a 2xx attempt, and the latest
    such attempt's occurred_at."""

    def __init__(self, tenant: str, txid: int) -> None:
        self.tenant = tenant
        self.after = (txid, 0)  # (txid, seq) of the last row read: seq counts from 1
        self.recorded: set[str] = set()
        self.last: datetime | None = None

    async def read(self, database: psycopg.AsyncConnection[Any], events: set[str]) -> None:
        txid, seq = self.after
        cursor = await database.execute(NEW_ATTEMPTS, {"tenant": self.tenant, "txid": txid, "seq": seq})
        rows = await cursor.fetchall()
        if rows:
            self.after = (rows[-1][0], rows[-1][1])
        # The probe's attempts share the tenant: only the turn's events count.
        for _, _, event_id, delivery_id, occurred_at, succeeded in rows:
            if succeeded and event_id in events:
                self.recorded.add(delivery_id)
                self.last = occurred_at if self.last is None else max(self.last, occurred_at)


async def _log_start(database: psycopg.AsyncConnection[Any]) -> int:
    row = await (await database.execute(LOG_START)).fetchone()
    return int(row[0]) if row else 0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database", required=True, help="libpq URL, for reading the attempts table")
    parser.add_argument("--tenant", required=True, help="the token's tenant, whose log holds the attempts")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--hooks", type=int, required=True, help="webhooks subscribed to bench.created")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--started-file", default="")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s to publish at; 0: as fast as the calls go")
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
            if args.rate > 0:  # event n is due n / rate seconds after the first
                await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
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
            log = Log(args.tenant, await _log_start(database))
            if args.started_file:
                await asyncio.to_thread(Path(args.started_file).touch)
            wall_start = time.time()
            started = seen = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(args.concurrency))), args.limit)
            published = time.monotonic() - started
            ours = set(event_ids)
            while not stop.is_set():
                await log.read(database, ours)
                seen = time.monotonic()
                if len(log.recorded) >= queued or seen - started > args.limit:
                    break
                await asyncio.sleep(POLL)
            recorded, last = len(log.recorded), log.last
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
