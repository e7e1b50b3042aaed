"""Load generator: one fan-out, timed once.

  --kind publish  one PublishEvent of type bench.fanout (on `--channels`, comma-separated, if given): the
                  service queues a delivery per subscribed webhook (`--count` expected); prints ms and
                  the event id
  --kind copy     the baseline: `--count` delivery-shaped rows in one COPY into `--table` (a bare copy
                  of the deliveries table: no index, no constraint) and a commit. The rows are those of
                  event `--event`'s first delivery (its non-null columns), each under a fresh id and
                  webhook id, built inside the timed part as a publisher builds them.

Connections are opened before the clock starts. Prints one JSON line: ms, event_id (publish).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psycopg
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import struct_pb2
from psycopg import sql
from ulid import ULID

from load.channels import close_channels, open_channels
from load.loop import emit

EVENT_TYPE = "bench.fanout"


async def publish(target: str, token: str, count: int, event_channels: list[str]) -> dict[str, object]:
    channels = await open_channels(target, 1)
    try:
        stub = rpc.WebhookServiceStub(channels[0])
        payload = struct_pb2.Struct()
        payload.update({"order": 7, "lines": ["x" * 40] * 4})
        request = pb.PublishEventRequest(event_type=EVENT_TYPE, payload=payload, channels=event_channels)
        started = time.perf_counter()
        response = await stub.PublishEvent(request, metadata=(("authorization", f"Bearer {token}"),), timeout=60)
        ms = (time.perf_counter() - started) * 1000
    finally:
        await close_channels(channels)
    if response.deliveries_queued != count:
        raise SystemExit(f"PublishEvent queued {response.deliveries_queued} deliveries, not {count}")
    return {"ms": ms, "event_id": response.event_id}


async def copy(database: str, table: str, event_id: str, count: int) -> dict[str, object]:
    async with await psycopg.AsyncConnection.connect(database) as connection:
        cursor = await connection.execute("SELECT * FROM deliveries WHERE event_id = %s LIMIT 1", (event_id,))
        template = await cursor.fetchone()
        if template is None or cursor.description is None:
            raise SystemExit(f"event {event_id} has no delivery to take the rows' shape from")
        shape = {
            column.name: value for column, value in zip(cursor.description, template, strict=True) if value is not None
        }
        await connection.commit()
        columns = list(shape)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        webhook_stem = str(shape["webhook_id"])[:-8]
        started = time.perf_counter()
        async with connection.cursor() as cursor, cursor.copy(statement) as rows:
            for n in range(count):
                shape["id"] = f"dlv_{ULID()}"
                shape["webhook_id"] = f"{webhook_stem}{n:08d}"
                await rows.write_row([shape[column] for column in columns])
        await connection.commit()
        ms = (time.perf_counter() - started) * 1000
    return {"ms": ms}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["publish", "copy"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--database", default="")
    parser.add_argument("--table", default="bench_copy")
    parser.add_argument("--event", default="")
    parser.add_argument("--channels", default="")
    args = parser.parse_args()
    if args.kind == "publish":
        emit(await publish(args.target, args.token, args.count, [c for c in args.channels.split(",") if c]))
    else:
        emit(await copy(args.database, args.table, args.event, args.count))


if __name__ == "__main__":
    asyncio.run(main())
