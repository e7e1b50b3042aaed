"""Open streams counted per tenant across every process (ports.StreamLeases in PostgreSQL).

A lease is a row that lives LEASE_SECONDS and is renewed while its stream is open, so the places of
a process that dies come back when its leases run out. Taking one is a transaction that locks the
tenant (an advisory lock on its name), counts the live leases and inserts one if there is room,
pipelined into one round trip; the insert runs after the lock, so its snapshot counts every lease
taken before.

A lease whose release fails (the database did not answer as its stream ended, or its delete kept
conflicting with other transactions after store/database.py ran it again), or whose acquire ended
without an answer (its caller cancelled, the database silent), is deleted at the next chance,
by the next acquire and by the renewal loop: once the database answers, the place is free again
rather than held until the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from webhookd.domain import ids
from webhookd.domain.errors import TransactionConflict, Unavailable
from webhookd.store.database import BEGIN, COMMIT, Connection, Database, rollback
from webhookd.store.sql import TEXT_ARRAY, compiled, param
from webhookd.store.tables import stream_leases

log = logging.getLogger("webhookd.streams")
LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0
LEASE_PREFIX = "stl_"

_LOCK_TENANT = "SELECT pg_advisory_xact_lock(hashtextextended('webhookd streams ' || %(tenant_id)s, 0))"
_TAKE = compiled(
    sa.text(
        """
INSERT INTO stream_leases (id, tenant_id, expires_at)
SELECT :id, :tenant_id, now() + make_interval(secs => :seconds)
WHERE (SELECT count(*) FROM stream_leases WHERE tenant_id = :tenant_id AND expires_at > now()) < :limit
RETURNING id
"""
    )
)
_RELEASE = compiled(stream_leases.delete().where(stream_leases.c.id == param("id")))
_RELEASE_UNRELEASED = compiled(
    stream_leases.delete().where(stream_leases.c.id == sa.func.any(param("unreleased", TEXT_ARRAY)))
)
_RENEW = compiled(
    sa.text("UPDATE stream_leases SET expires_at = now() + make_interval(secs => :seconds) WHERE id = ANY(:ids)")
)
# Leases of processes that died, long expired: nothing counts them any more.
_FORGET_EXPIRED = compiled(stream_leases.delete().where(stream_leases.c.expires_at < sa.func.now()))


class PostgresStreamLeases:
    def __init__(self, database: Database, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._db = database
        self._lease_seconds = lease_seconds
        self._held: set[str] = set()
        self._unreleased: set[str] = set()  # released while the database did not answer
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_while_running(), name="stream-leases")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None

    async def acquire(self, tenant_id: str, limit: int) -> str | None:
        lease_id = ids.new_id(LEASE_PREFIX)
        unreleased = list(self._unreleased)
        values = {
            "id": lease_id,
            "tenant_id": tenant_id,
            "limit": limit,
            "seconds": self._lease_seconds,
            "unreleased": unreleased,
        }

        async def take(connection: Connection) -> bool:
            try:
                async with connection.pipeline():
                    await connection.execute(BEGIN)
                    if unreleased:
                        await connection.execute(_RELEASE_UNRELEASED, values)
                    await connection.execute(_LOCK_TENANT, values)
                    taken = await connection.execute(_TAKE, values)
                    await connection.execute(COMMIT)
                return await taken.fetchone() is not None
            except BaseException:
                await rollback(connection)
                raise

        try:
            taken = await self._db.run(take)
        except BaseException:
            # The caller went away (a deadline, a cancel) or the database did not answer, perhaps after
            # the COMMIT was sent: a lease taken then has no stream to release it.
            self._unreleased.add(lease_id)
            raise
        self._unreleased.difference_update(unreleased)
        if not taken:
            return None
        self._held.add(lease_id)
        return lease_id

    async def release(self, lease_id: str) -> None:
        self._held.discard(lease_id)
        try:
            await self._db.execute(_RELEASE, {"id": lease_id})
        except (Unavailable, TransactionConflict) as error:
            self._unreleased.add(lease_id)
            log.warning(
                "could not release a stream lease; releasing it again at the next chance",
                extra={"reason": error.message},
            )

    async def _renew_while_running(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._renew()
            except Unavailable:
                pass  # the database is away: the next round tries again
            except TransactionConflict as conflict:
                # Conflicting in each run store/database.py gave it: expected, and the next round renews.
                log.warning(
                    "renewing stream leases conflicted; the next round renews them", extra={"reason": conflict.message}
                )
            except Exception:
                # Any other failure too (a read-only server after a failover): a renewer that stopped
                # would let every open stream's lease run out, and the tenants' caps with them.
                log.exception("renewing stream leases failed")

    async def _renew(self) -> None:
        if self._held:
            await self._db.execute(_RENEW, {"ids": list(self._held), "seconds": self._lease_seconds})
        if self._unreleased:
            unreleased = list(self._unreleased)
            await self._db.execute(_RELEASE_UNRELEASED, {"unreleased": unreleased})
            self._unreleased.difference_update(unreleased)
        await self._db.execute(_FORGET_EXPIRED)
