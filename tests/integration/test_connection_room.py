"""A server process whose pool alone cannot fit in the database's max_connections does not start:
with WEBHOOKD_DATABASE_POOL_SIZE=1000 against PostgreSQL's default 100 it started, said it was ready,
and held every connection the database had, so its own workers and every other client were told
"too many clients already"."""

from __future__ import annotations

import pytest

from webhookd.app import SERVER_CONNECTIONS_BESIDE_POOL, Backends
from webhookd.config import Settings
from webhookd.runners import StartError, check_connection_room, check_fleet_connection_room
from webhookd.store.database import Database


async def max_connections(url: str) -> int:
    database = Database(url, size=1)
    await database.open()
    try:
        row = await database.fetch_one("SELECT current_setting('max_connections')::int")
        assert row is not None
        return int(row[0])
    finally:
        await database.close()


async def test_a_pool_larger_than_the_database_allows_stops_start_up_naming_the_setting(
    settings: Settings, backends: Backends
) -> None:
    allowed = await max_connections(backends.database_url)

    with pytest.raises(StartError) as refused:
        await check_connection_room(settings.with_overrides(database_pool_size=allowed), backends)

    assert str(refused.value).startswith("WEBHOOKD_DATABASE_POOL_SIZE")
    assert f"max_connections is {allowed}" in str(refused.value)


async def test_a_pool_that_fits_starts(settings: Settings, backends: Backends) -> None:
    allowed = await max_connections(backends.database_url)

    await check_connection_room(
        settings.with_overrides(database_pool_size=allowed - SERVER_CONNECTIONS_BESIDE_POOL), backends
    )


async def test_serve_refuses_processes_that_together_need_more_connections_than_the_database_allows(
    settings: Settings, backends: Backends
) -> None:
    """Each server fits, but WEBHOOKD_SERVER_PROCESSES of them and the workers do not: every one would
    start and they would take turns being told "too many clients"."""
    allowed = await max_connections(backends.database_url)
    many = settings.with_overrides(database_pool_size=10, server_processes=allowed // 15 + 1, worker_processes=1)

    with pytest.raises(StartError) as refused:
        await check_fleet_connection_room(many, backends)

    assert str(refused.value).startswith("WEBHOOKD_SERVER_PROCESSES")
    assert f"max_connections is {allowed}" in str(refused.value)


async def test_the_default_fleet_fits(settings: Settings, backends: Backends) -> None:
    await check_fleet_connection_room(
        settings.with_overrides(database_pool_size=10, server_processes=2, worker_processes=2), backends
    )
