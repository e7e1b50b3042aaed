"""A readiness round asks the database one question: the schema's revision, which is also the proof that
the database answers. Each round reads it again, so a schema a newer release migrated (or one put back)
is seen by the next round."""

from __future__ import annotations

import asyncio
from typing import Any

from webhookd.app import _readiness_checks
from webhookd.domain.errors import Unavailable
from webhookd.services.readiness import Readiness
from webhookd.store import migrate

HEAD = migrate.this_release().head


class CountingDatabase:
    """The statements a round sends, answered as a database at `revision` would (or Unavailable)."""

    def __init__(self) -> None:
        self.revision = HEAD
        self.down = False
        self.statements: list[str] = []

    async def _answer(self, sql: str) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        await asyncio.sleep(0)  # answered later, as a real one is: checks asked together overlap
        if self.down:
            raise Unavailable("database unavailable: no answer in time", dependency="database")
        return [(self.revision,)] if "alembic_version" in sql else [(1,)]

    async def fetch_one(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        return (await self._answer(sql))[0]

    async def fetch_all(self, sql: str, params: Any = None, **_: Any) -> list[tuple[Any, ...]]:
        return await self._answer(sql)


class Vault:
    async def ping(self) -> None:
        return None


def _readiness(database: CountingDatabase) -> Readiness:
    return Readiness(_readiness_checks(database, Vault(), migrate.this_release()))  # type: ignore[arg-type]


async def test_a_round_sends_the_database_one_statement() -> None:
    database = CountingDatabase()
    readiness = _readiness(database)

    report = await readiness.probe()

    assert report.checks == {"database": "ok", "vault": "ok", "schema": "ok"}
    assert len(database.statements) == 1


async def test_each_round_reads_the_revision_again_so_a_change_either_way_is_seen() -> None:
    database = CountingDatabase()
    readiness = _readiness(database)
    await readiness.probe()

    database.revision = "9999"  # a newer release migrated it
    migrated = await readiness.probe()
    database.revision = HEAD  # and it was put back
    back = await readiness.probe()

    assert migrated.checks["database"] == "ok"
    assert migrated.checks["schema"].startswith("database schema: the database is at revision 9999")
    assert back.checks == {"database": "ok", "vault": "ok", "schema": "ok"}
    assert len(database.statements) == 3


async def test_a_database_that_does_not_answer_is_named_by_both_checks() -> None:
    database = CountingDatabase()
    database.down = True
    readiness = _readiness(database)

    report = await readiness.probe()

    reason = "database unavailable: no answer in time"
    assert report.checks == {"database": reason, "vault": "ok", "schema": reason}
    assert len(database.statements) == 1
