"""Bring a database's schema to the newest Alembic revision, with the current time partitions in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from webhookd.store import partitions

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "head"


class NewerSchema(RuntimeError):
    """The database is at a revision this release does not have: a newer one migrated it."""


def _alembic_upgrade(url: str, revision: str) -> None:
    # Alembic runs synchronously; psycopg 3 serves both modes under the same URL.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            _check_known(connection, ScriptDirectory.from_config(config))
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _check_known(connection: sa.Connection, scripts: ScriptDirectory) -> None:
    """NewerSchema when the database is at a revision not among ours: Alembic would fail on it with a
    page of traceback, and the usual cause (a deploy rolled back after the newer release migrated)
    deserves its own line."""
    current = MigrationContext.configure(connection).get_current_heads()
    connection.commit()  # the migration takes its lock in a transaction of its own
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = [name for name in current if name not in known]
    if unknown:
        raise NewerSchema(
            f"the database is at revision {', '.join(unknown)}, which this webhookd does not know (its newest"
            f" is {scripts.get_current_head()}): a newer release migrated it; run that release or a later one"
        )


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
