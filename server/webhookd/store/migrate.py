"""Bring a database's schema to the newest Alembic revision, with the current time partitions in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from webhookd.store import partitions

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "head"


def _alembic_upgrade(url: str, revision: str) -> None:
    # Alembic runs synchronously; psycopg 3 serves both modes under the same URL.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def upgrade_sync(url: str, *, revision: str = HEAD) -> None:
    """Upgrades to `revision` (an older one only for tests of a migration); at the head, also
    creates this week's partitions and the next ones, so nothing that starts after it waits on them."""
    _alembic_upgrade(url, revision)
    if revision == HEAD:
        asyncio.run(partitions.ensure_at(url))


async def upgrade(url: str, *, revision: str = HEAD) -> None:
    await asyncio.to_thread(_alembic_upgrade, url, revision)
    if revision == HEAD:
        await partitions.ensure_at(url)
