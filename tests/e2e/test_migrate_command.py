"""`webhookd migrate` (and every command that migrates as it starts) on a database whose schema it
cannot bring up to date, as an operator meets it: one line saying why, exit 2, no traceback."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from webhookd.store import migrate
from webhookd.store.database import Database

pytestmark = pytest.mark.slow

WEBHOOKD = str(Path(sys.executable).parent / "webhookd")
# A revision no webhookd has yet: the schema a newer release left behind when its deploy is rolled back.
FUTURE_REVISION = "9999"


async def run(*args: str, env: dict[str, str], within: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def migrated_by_a_newer_release(url: str) -> None:
    await migrate.upgrade(url)
    database = Database(url)
    await database.open()
    try:
        await database.execute(f"UPDATE alembic_version SET version_num = '{FUTURE_REVISION}'")
    finally:
        await database.close()


async def test_migrate_says_in_one_line_that_a_newer_release_migrated_the_database(own_database) -> None:
    await migrated_by_a_newer_release(own_database)

    code, out, err = await run(WEBHOOKD, "migrate", env=os.environ | {"WEBHOOKD_DATABASE_URL": own_database})

    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("webhookd: cannot migrate: database schema: ") and FUTURE_REVISION in err, err


async def test_migrate_names_the_privilege_the_database_user_lacks(own_database) -> None:
    """A user that may not create tables: the line says so, not what a cleanup after it tripped on."""
    user = f"weak_{uuid.uuid4().hex[:12]}"
    database = Database(own_database)
    await database.open()
    try:
        await database.execute(f"CREATE ROLE {user} LOGIN")
        await database.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await database.close()
    weak = make_url(own_database).set(username=user).render_as_string(hide_password=False)

    try:
        code, _, err = await run(WEBHOOKD, "migrate", env=os.environ | {"WEBHOOKD_DATABASE_URL": weak})
    finally:
        database = Database(own_database)
        await database.open()
        try:
            await database.execute(f"DROP ROLE {user}")  # roles outlive the test's database
        finally:
            await database.close()

    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("webhookd: cannot migrate: database schema: ") and "permission denied" in err, err
