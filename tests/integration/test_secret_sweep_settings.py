"""The workers' secret sweep (services/ended_overlaps.py) runs at WEBHOOKD_SECRET_SWEEP_SECONDS and claims at
most WEBHOOKD_SECRET_SWEEP_BATCH due rows a round, on a database of its own (no other rows are due there).

The rows' records are not in Vault, so the round that claims one settles its mark (NULL): a settled mark
shows the round reached that row."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from history_rows import opened, webhook

from webhookd.app import Backends, DeliveryWorkers
from webhookd.store import migrate

DUE = "UPDATE webhooks SET secret_overlap_ends_at = now() - interval '1 minute' WHERE id = ANY(%(ids)s)"
MARKED = "SELECT count(*) FROM webhooks WHERE secret_overlap_ends_at IS NOT NULL"
# Bounds of the wait for the workers' own rounds, in tries of 50 ms: 20 s in all.
TRIES = 400


@contextlib.asynccontextmanager
async def workers_with(settings, backends, own_database: str, **overrides: Any) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """Two due rows on `own_database`, and the workers running on it with `overrides`; the pool to read it."""
    await migrate.upgrade(own_database)
    async with opened(own_database) as db:
        rows = [await webhook(db, "tnt_sweep_settings") for _ in range(2)]
        await db.execute(DUE, {"ids": rows})
        workers = DeliveryWorkers(
            settings.with_overrides(workers=1, **overrides),
            Backends(own_database, backends.vault_addr, backends.vault_token),
        )
        await workers.start()
        try:
            yield workers, db
        finally:
            await workers.stop()


async def marked(db) -> int:  # type: ignore[no-untyped-def]
    row = await db.fetch_one(MARKED, {})
    return int(row[0])


async def test_the_workers_sweep_every_secret_sweep_seconds(settings, backends, own_database) -> None:
    async with workers_with(settings, backends, own_database, secret_sweep_seconds=1.0) as (_, db):
        left = await marked(db)
        for _ in range(TRIES):  # the first round comes after one period
            if left == 0:
                break
            await asyncio.sleep(0.05)
            left = await marked(db)

    assert left == 0


async def test_a_round_claims_at_most_secret_sweep_batch_rows(settings, backends, own_database) -> None:
    # A period far off: only the round this test runs sweeps.
    async with workers_with(settings, backends, own_database, secret_sweep_seconds=3600.0, secret_sweep_batch=1) as (
        workers,
        db,
    ):
        await workers.ended_overlaps.sweep()
        left_after_one = await marked(db)
        await workers.ended_overlaps.sweep()
        left_after_two = await marked(db)

    assert (left_after_one, left_after_two) == (1, 0)
