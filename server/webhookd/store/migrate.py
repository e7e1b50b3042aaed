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


class OlderSchema(RuntimeError):
    """The database is not yet at this release's newest revision: nothing has migrated it to it."""


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _alembic_upgrade(url: str, revision: str) -> None:
    # Alembic runs synchronously; psycopg 3 serves both modes under the same URL.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            config = _config(connection)
            _check_known(connection, ScriptDirectory.from_config(config))
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _check_newest(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            scripts = ScriptDirectory.from_config(_config(connection))
            current = _check_known(connection, scripts)
            head = scripts.get_current_head()
            if tuple(current) != (head,):
                raise OlderSchema(
                    f"the database is at revision {', '.join(current) or 'none'}, older than this webhookd's"
                    f" newest ({head}): run `webhookd migrate` with this release first"
                )
    finally:
        engine.dispose()


def _check_known(connection: sa.Connection, scripts: ScriptDirectory) -> tuple[str, ...]:
    """NewerSchema when the database is at a revision not among ours: Alembic would fail on it with a
    page of traceback, and the usual cause (a deploy rolled back after the newer release migrated)
    deserves its own line. Returns the database's revisions."""
    current = MigrationContext.configure(connection).get_current_heads()
    connection.commit()  # the migration takes its lock in a transaction of its own
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = [name for name in current if name not in known]
    if unknown:
        raise NewerSchema(
            f"the database is at revision {', '.join(unknown)}, which this webhookd does not know (its newest"
            f" is {scripts.get_current_head()}): a newer release migrated it; run that release or a later one"
        )
    return tuple(current)


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


async def check_newest(url: str) -> None:
    """For what starts without migrating (a worker alone): NewerSchema when a newer release migrated
    the database, OlderSchema when nothing migrated it to this release's newest revision yet."""
    await asyncio.to_thread(_check_newest, url)
