"""A server process stays up when a newer release migrates its database (its calls in flight finish),
but /readyz is 503 naming the schema, so balancers drain it; it is ready again if the schema is put back."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from support import Database
from webhookd.app import Backends, Core
from webhookd.config import Settings
from webhookd.observability import Metrics
from webhookd.store import migrate

FUTURE_REVISION = "9999"  # a revision no release of this one's line has


async def test_a_schema_migrated_by_a_newer_release_is_not_ready_and_names_the_revision(
    settings: Settings, backends: Backends, own_database: str
) -> None:
    await migrate.upgrade(own_database)
    head = migrate.this_release().head
    core = Core(settings, Backends(own_database, backends.vault_addr, backends.vault_token), metrics=Metrics())
    await core.start()
    database = Database(own_database)
    app = Starlette(routes=core.http_routes())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            ready = await http.get("/readyz")
            await database.execute(f"UPDATE alembic_version SET version_num = '{FUTURE_REVISION}'")
            migrated = await http.get("/readyz")
            await database.execute(f"UPDATE alembic_version SET version_num = '{head}'")
            back = await http.get("/readyz")
    finally:
        await database.close()
        await core.close()

    assert (ready.status_code, ready.json()["checks"]["schema"]) == (200, "ok")
    assert migrated.status_code == 503
    assert migrated.json()["checks"] == {
        "database": "ok",
        "vault": "ok",
        "schema": f"database schema: the database is at revision {FUTURE_REVISION}, which this webhookd does not"
        f" know (its newest is {head}): a newer release migrated it; run that release or a later one",
    }
    assert back.status_code == 200
