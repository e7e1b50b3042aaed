"""Every pooled connection prepares a statement the first time it runs it, so a quiet service does
not plan its claim (2-3 ms over every partition) and its publish again on each of the first runs on
each connection (psycopg's default prepares a statement at its fifth run on a connection)."""

from __future__ import annotations

from webhookd.store.database import Connection, Database

QUERY = "SELECT 1 + %s"


async def _prepared_here(connection: Connection) -> int:
    # Sent unprepared itself, so that it is not one of the statements it counts.
    cursor = await connection.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", ["SELECT 1 + $1"], prepare=False
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_statement_is_prepared_on_its_first_run(own_database: str) -> None:
    database = Database(own_database, size=1)
    await database.open()
    try:
        assert await database.run(_prepared_here) == 0
        assert await database.fetch_one(QUERY, [1]) == (2,)
        assert await database.run(_prepared_here) == 1
    finally:
        await database.close()
