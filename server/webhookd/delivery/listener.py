"""LISTEN on a PostgreSQL channel with a dedicated connection, reconnecting when it drops."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("webhookd.listener")


def libpq_url(sqlalchemy_url: str) -> str:
    """The plain postgresql:// URL psycopg takes, from the SQLAlchemy one (drops `+psycopg`)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(database_url: str, channel: str, wake: asyncio.Event, *, reconnect_seconds: float = 1.0) -> None:
    """Sets `wake` on every notification until cancelled. After a reconnect it wakes once too, since
    notifications sent while disconnected are lost."""
    conninfo = libpq_url(database_url)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                await connection.execute(f"LISTEN {channel}")
                wake.set()
                async for _ in connection.notifies():
                    wake.set()
        except psycopg.Error as error:
            log.warning("listener connection lost; reconnecting", extra={"channel": channel, "error": str(error)})
            await asyncio.sleep(reconnect_seconds)
