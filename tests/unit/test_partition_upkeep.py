"""The loop every writing process runs to keep the weeks ahead created: a round at once, then one per
interval, and a failed round does not end it."""

from __future__ import annotations

import asyncio

from fakes import until
from webhookd.domain.errors import Unavailable
from webhookd.store import partitions


async def test_rounds_go_on_after_a_failed_one_and_the_database_being_away(monkeypatch) -> None:
    rounds: list[object] = []
    outcomes: list[BaseException | None] = [RuntimeError("table busy"), Unavailable("database unreachable"), None]

    async def ensure(database: object) -> list[str]:
        rounds.append(database)
        failure = outcomes[min(len(rounds), len(outcomes)) - 1]
        if failure is not None:
            raise failure
        return []

    monkeypatch.setattr(partitions, "ensure", ensure)
    monkeypatch.setattr(partitions, "UPKEEP_SECONDS", 0.001)
    database = object()
    loop = asyncio.create_task(partitions.keep_created_ahead(database))
    try:
        await until(lambda: len(rounds) >= 4)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    assert rounds[:4] == [database] * 4
