"""Reading DeliveryLog streams in tests: a stream read in the background, and bounded waiting."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

from cpod.integration.v1 import webhook_service_pb2 as pb


def unbound_cursor(txid: int, seq: int) -> str:
    """A log cursor as handed out before cursors were bound to their scope: `txid.seq`, base64."""
    return base64.urlsafe_b64encode(f"{txid}.{seq}".encode()).decode().rstrip("=")


async def positions(database: Any, tenant_id: str) -> list[tuple[int, int]]:
    """The (txid, seq) of a tenant's DeliveryLog entries, in log order."""
    rows = await database.rows(
        "SELECT txid, seq FROM attempts WHERE tenant_id = :tenant_id ORDER BY txid, seq", tenant_id=tenant_id
    )
    return [(row["txid"], row["seq"]) for row in rows]


class Tail:
    """A DeliveryLog call read in the background: `entries` grows as entries arrive."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.entries: list[pb.DeliveryLogEntry] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self.entries.append(response.entry)

    async def wait_for(self, count: int, within: float = 15.0) -> list[pb.DeliveryLogEntry]:
        """The entries once at least `count` arrived (bounded)."""
        deadline = time.monotonic() + within
        while len(self.entries) < count:
            if self._reader.done():
                self._reader.result()  # raises the stream's error, if it ended with one
                raise AssertionError(f"stream ended after {len(self.entries)} entries, expected {count}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.entries)} entries within {within}s, expected {count}")
            await asyncio.sleep(0.01)
        return list(self.entries)

    async def ended(self, within: float = 15.0) -> list[pb.DeliveryLogEntry]:
        """All entries of a stream without follow, once it has ended."""
        await asyncio.wait_for(self._reader, within)
        return list(self.entries)

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(0.01)
