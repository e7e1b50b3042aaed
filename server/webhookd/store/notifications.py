"""PostgreSQL LISTEN/NOTIFY: a dedicated connection per channel, shared by every local subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("webhookd.notifications")

# The channels: workers wake on new deliveries, log followers on attempts (and inbound receipts),
# inbound consumers on accepted receipts.
DELIVERIES_CHANNEL = "webhookd_deliveries"
ATTEMPTS_CHANNEL = "webhookd_attempts"
INBOUND_CHANNEL = "webhookd_inbound"


def libpq_url(sqlalchemy_url: str) -> str:
    """The plain postgresql:// URL psycopg takes, from the SQLAlchemy one (drops `+psycopg`)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(
    database_url: str, channel: str, on_notify: Callable[[], None], *, reconnect_seconds: float = 1.0
) -> None:
    """Calls `on_notify` for every notification until cancelled. It also calls it after each
    (re)connect, since notifications sent while disconnected are lost."""
    conninfo = libpq_url(database_url)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                await connection.execute(f"LISTEN {channel}")
                on_notify()
                async for _ in connection.notifies():
                    on_notify()
        except psycopg.Error as error:
            log.warning("listener connection lost; reconnecting", extra={"channel": channel, "error": str(error)})
            await asyncio.sleep(reconnect_seconds)


class NotificationHub:
    """One LISTEN connection for any number of local subscribers, open only while there are some."""

    def __init__(self, database_url: str, channel: str) -> None:
        self._database_url = database_url
        self._channel = channel
        self._subscribers: set[asyncio.Event] = set()
        self._listener: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def _notify_all(self) -> None:
        for event in self._subscribers:
            event.set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Event]:
        """An event set on every notification (and once at the start) for as long as the block runs."""
        event = asyncio.Event()
        self._subscribers.add(event)
        if self._listener is None:
            self._listener = asyncio.create_task(listen(self._database_url, self._channel, self._notify_all))
        try:
            yield event
        finally:
            self._subscribers.discard(event)
            if not self._subscribers and self._listener is not None:
                listener, self._listener = self._listener, None
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def close(self) -> None:
        self._subscribers.clear()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None


class CoalescingNotifier:
    """NOTIFY outside the writers' transactions, at most once per `window`.

    PostgreSQL serialises the commits of transactions that NOTIFY; the delivery path records many
    attempts a second, and its listeners only need to know "something new", so one notification
    for a burst is enough (they also re-check on a timer).
    """

    def __init__(self, engine: AsyncEngine, channel: str, *, window_seconds: float = 0.02) -> None:
        self._engine = engine
        self._channel = channel
        self._window_seconds = window_seconds
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._pending.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notify-{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._pending.is_set():
            await self._send()

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self._window_seconds)
            self._pending.clear()
            try:
                await self._send()
            except Exception:
                log.warning("could not NOTIFY", extra={"channel": self._channel}, exc_info=True)

    async def _send(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text(f"NOTIFY {self._channel}"))
            await connection.commit()
