"""PostgreSQL LISTEN/NOTIFY: the one place notifications are sent, and the one place they are heard.

Sending: writers call `notify(topic)` after their transaction commits; a background task sends one
NOTIFY per topic per window on a connection of its own. NOTIFY inside the writers' transactions
would serialise their commits (PostgreSQL takes a global lock to queue notifications at commit),
and listeners only need to know that something is new, so a burst costs one notification.

Listening: one connection per topic and process LISTENs while anyone in the process subscribes to
the topic, and sets the subscribers' events; a worker process hears only about deliveries. After
each (re)connect the topic's subscribers are woken, since notifications sent while disconnected are
lost; subscribers re-read their source, so a spurious wake costs one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from webhookd.ports import Topic

log = logging.getLogger("webhookd.notifications")

# The window a topic's notifications are gathered over before one is sent. Publish-to-first-attempt
# latency waits on the deliveries window, so it is short; the others only pace followers.
DEFAULT_WINDOWS: Mapping[Topic, float] = {
    Topic.DELIVERIES: 0.001,
    Topic.ATTEMPTS: 0.02,
    Topic.INBOUND: 0.02,
}
RECONNECT_SECONDS = 1.0


def libpq_url(sqlalchemy_url: str) -> str:
    """The plain postgresql:// URL psycopg takes, from the SQLAlchemy one (drops `+psycopg`)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _notify_all(topics: list[Topic]) -> sql.SQL:
    """`NOTIFY a; NOTIFY b`: one round trip for every topic (the names are fixed identifiers)."""
    return sql.SQL("; ".join(f"NOTIFY {topic.value}" for topic in topics))


class PostgresNotifications:
    """Implements ports.Notifications over LISTEN/NOTIFY on `database_url`. `start()` it inside the
    event loop; `close()` sends what is still pending and closes both connections."""

    def __init__(
        self,
        database_url: str,
        *,
        windows: Mapping[Topic, float] = DEFAULT_WINDOWS,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self._windows = dict(windows)
        self._reconnect_seconds = reconnect_seconds
        self._pending: set[Topic] = set()
        self._wake_sender = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._send_connection: psycopg.AsyncConnection[object] | None = None
        self._subscribers: dict[Topic, set[asyncio.Event]] = {topic: set() for topic in Topic}
        self._listeners: dict[Topic, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------------------- sending

    def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name="notify-sender")

    def notify(self, topic: Topic) -> None:
        self._pending.add(topic)
        self._wake_sender.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake_sender.wait()
            await asyncio.sleep(min(self._windows.get(topic, 0.0) for topic in self._pending or Topic))
            self._wake_sender.clear()
            try:
                await self._send_pending()
            except (psycopg.Error, OSError) as error:
                log.warning("could not NOTIFY; retrying", extra={"error": type(error).__name__})
                await self._drop_send_connection()
                self._wake_sender.set()
                await asyncio.sleep(self._reconnect_seconds)

    async def _send_pending(self) -> None:
        if not self._pending:
            return
        topics, self._pending = sorted(self._pending), set()
        try:
            if self._send_connection is None or self._send_connection.closed:
                self._send_connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            await self._send_connection.execute(_notify_all(topics))
        except BaseException:
            self._pending.update(topics)
            raise

    async def _drop_send_connection(self) -> None:
        connection, self._send_connection = self._send_connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()

    # ----------------------------------------------------------------------------- listening

    def listening(self, topic: Topic) -> bool:
        return topic in self._listeners

    def subscribers(self, topic: Topic) -> int:
        return len(self._subscribers[topic])

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: Topic) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers[topic].add(event)
        if topic not in self._listeners:
            self._listeners[topic] = asyncio.create_task(self._listen(topic), name=f"listen-{topic.value}")
        try:
            yield event
        finally:
            self._subscribers[topic].discard(event)
            if not self._subscribers[topic] and topic in self._listeners:
                listener = self._listeners.pop(topic)
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    def _wake(self, topic: Topic) -> None:
        for event in self._subscribers[topic]:
            event.set()

    async def _listen(self, topic: Topic) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
                    await connection.execute(sql.SQL(f"LISTEN {topic.value}"))
                    self._wake(topic)
                    async for _ in connection.notifies():
                        self._wake(topic)
            except (psycopg.Error, OSError) as error:
                reason = {"topic": topic.value, "error": type(error).__name__}
                log.warning("listener connection lost; reconnecting", extra=reason)
                await asyncio.sleep(self._reconnect_seconds)

    # ------------------------------------------------------------------------------- closing

    async def close(self) -> None:
        """Stops listening and sending; what is pending is sent first (best effort)."""
        listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        if self._sender is not None:
            sender, self._sender = self._sender, None
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        try:
            await self._send_pending()
        except (psycopg.Error, OSError):
            log.warning("could not send the last notifications")
        await self._drop_send_connection()
