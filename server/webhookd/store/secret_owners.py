"""Which webhooks own the secrets found in Vault, for the orphan-secret reconciler
(services/orphan_secrets.py)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa

from webhookd.store.database import Connection, Database
from webhookd.store.sql import TEXT_ARRAY, compiled, param
from webhookd.store.tables import server_keys, webhooks

# One process reconciles at a time; the others skip the round (the batch's check runs under it).
ORPHAN_SECRETS_LOCK_ID = 7_202_611_31
_LOCK = f"SELECT pg_try_advisory_xact_lock({ORPHAN_SECRETS_LOCK_ID})"
# Deleted webhooks count: a soft-deleted webhook keeps its secret so that undelete restores it.
_OWNERS = compiled(
    sa.select(webhooks.c.tenant_id, webhooks.c.id).where(webhooks.c.id == sa.func.any(param("ids", TEXT_ARRAY)))
)

# The deployment's id: random, made by the first process to ask, kept with the database (a restore
# of it is the same deployment).
_MAKE_DEPLOYMENT_ID = compiled(
    sa.text("INSERT INTO server_keys (name, key) VALUES ('deployment', :key) ON CONFLICT (name) DO NOTHING")
)
_DEPLOYMENT_ID = compiled(sa.select(server_keys.c.key).where(server_keys.c.name == "deployment"))


class SecretOwners:
    """ports.SecretOwners in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def owned(self, candidates: Sequence[tuple[str, str]]) -> set[tuple[str, str]] | None:
        """The (tenant_id, webhook_id) pairs among `candidates` that have a webhook row, or None while
        another process holds the reconciler's lock."""

        async def check(connection: Connection) -> set[tuple[str, str]] | None:
            locked = await (await connection.execute(_LOCK)).fetchone()
            if not (locked and locked[0]):
                return None
            ids = [webhook_id for _, webhook_id in candidates]
            rows = await (await connection.execute(_OWNERS, {"ids": ids})).fetchall()
            return {(row[0], row[1]) for row in rows} & set(candidates)

        return await self._db.transaction(check)

    async def deployment_id(self) -> str:
        async def made(connection: Connection) -> str:
            await connection.execute(_MAKE_DEPLOYMENT_ID, {"key": secrets.token_bytes(16)})
            row = await (await connection.execute(_DEPLOYMENT_ID)).fetchone()
            assert row is not None  # inserted just now, or before
            return "dep_" + bytes(row[0]).hex()

        return await self._db.transaction(made)
