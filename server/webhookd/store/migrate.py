"""Bring a database's schema to the newest Alembic revision."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade_sync(url: str) -> None:
    # Alembic runs synchronously; psycopg 3 serves both modes under the same URL.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


async def upgrade(url: str) -> None:
    await asyncio.to_thread(upgrade_sync, url)
