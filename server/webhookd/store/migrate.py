"""Bring a database's schema to the newest Alembic revision, with the current time partitions in place."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from webhookd.domain.errors import Unavailable
from webhookd.store import partitions
from webhookd.store.database import Database

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
            current = MigrationContext.configure(connection).get_current_heads()
            changed = Revisions.of(scripts).unlike(current)
            if changed is not None:
                raise changed
    finally:
        engine.dispose()


def _check_known(connection: sa.Connection, scripts: ScriptDirectory) -> tuple[str, ...]:
    """NewerSchema when the database is at a revision not among ours: Alembic would fail on it with a
    page of traceback, and the usual cause (a deploy rolled back after the newer release migrated)
    deserves its own line. Returns the database's revisions."""
    current = MigrationContext.configure(connection).get_current_heads()
    connection.commit()  # the migration takes its lock in a transaction of its own
    newer = Revisions.of(scripts).newer(current)
    if newer is not None:
        raise newer
    return tuple(current)


@dataclass(frozen=True)
class Revisions:
    """This release's migrations: the revisions it knows and its newest. What is said of a database at
    other revisions is said here, for a process starting and one already running alike."""

    known: frozenset[str]
    head: str

    @classmethod
    def of(cls, scripts: ScriptDirectory) -> Revisions:
        head = scripts.get_current_head()
        assert head is not None  # the migrations ship with the release
        return cls(frozenset(script.revision for script in scripts.walk_revisions()), head)

    def newer(self, current: Sequence[str]) -> NewerSchema | None:
        unknown = [name for name in current if name not in self.known]
        if not unknown:
            return None
        return NewerSchema(
            f"the database is at revision {', '.join(unknown)}, which this webhookd does not know (its newest"
            f" is {self.head}): a newer release migrated it; run that release or a later one"
        )

    def unlike(self, current: Sequence[str]) -> NewerSchema | OlderSchema | None:
        """Why the database at `current` is not at this release's newest revision, or None when it is."""
        newer = self.newer(current)
        if newer is not None:
            return newer
        if tuple(current) != (self.head,):
            return OlderSchema(
                f"the database is at revision {', '.join(current) or 'none'}, older than this webhookd's"
                f" newest ({self.head}): run `webhookd migrate` with this release first"
            )
        return None


@functools.cache
def this_release() -> Revisions:
    """This release's revisions, read from its migration scripts (blocking: a few files)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return Revisions.of(ScriptDirectory.from_config(config))


async def schema_unlike(database: Database, revisions: Revisions) -> NewerSchema | OlderSchema | None:
    """Why the database's schema is not `revisions`' newest (a newer release migrated it while this
    process ran), or None: one read of Alembic's one-row table. Unavailable when the database is."""
    return revisions.unlike(await current_revision(database))


async def current_revision(database: Database) -> list[str]:
    """The database's schema revision (Alembic's one-row table); Unavailable when the database is."""
    rows = await database.fetch_all("SELECT version_num FROM alembic_version")
    return [str(row[0]) for row in rows]


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


async def until_schema_changes(database: Database, revisions: Revisions, *, every_seconds: float) -> str:
    """Reads the revision every `every_seconds` until the schema is no longer `revisions`' newest, and
    returns why: a process whose queries are written for one schema must not go on against another.
    A round the database does not answer is skipped (readiness names that outage)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            changed = await schema_unlike(database, revisions)
        except Unavailable:
            continue
        if changed is not None:
            return str(changed)
