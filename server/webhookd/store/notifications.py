"""PostgreSQL LISTEN/NOTIFY: how notifications are sent, and the one place they are heard.

Sending: writers call `notify(topic)` (or `notify(topic, payload)`) after their transaction commits;
a background task sends what is pending on a connection of its own, one NOTIFY per topic for a
burst, the payloads of a burst joined by spaces. NOTIFY inside the writers' transactions would
serialise their commits (PostgreSQL takes a global lock to queue notifications at commit), and
listeners only need to know that something is new. A payload names whose write it was (a tenant
for the log's topics), so a keyed subscriber wakes only for its own; a burst in which some writer
named nobody also sends an empty payload, which wakes every subscriber. One writer sends its own:
a publish's NOTIFY follows its COMMIT on the same connection, in the same round trip
(store/events.py), since the time from publish to first attempt waits on it and a hop through the
sender task cost ~0.7 ms idle.

Listening: one connection per topic and process LISTENs while anyone in the process subscribes to
or follows the topic; a worker process hears only about deliveries. After each (re)connect the
topic's listeners are told (subscribers woken, followers handed None), since notifications sent
while disconnected are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import psycopg

from webhookd.domain.topics import Topic
from webhookd.store.conninfo import conninfo

log = logging.getLogger("webhookd.notifications")

# How long a topic's notifications gather before they are sent. Deliveries go at once (while one is
# in flight the next ones gather anyway): publish-to-first-attempt latency waits on them. Webhook
# changes (webhooks, event types) gather a few milliseconds: other processes' caches may lag a write by that much.
DEFAULT_WINDOWS: Mapping[Topic, float] = {
    Topic.DELIVERIES: 0.0,
    Topic.ATTEMPTS: 0.02,
    Topic.INBOUND: 0.02,
    Topic.WEBHOOKS: 0.005,
    Topic.EVENT_TYPES: 0.005,
}
RECONNECT_SECONDS = 1.0
# PostgreSQL refuses payloads of 8000 bytes and more.
MAX_PAYLOAD_BYTES = 7000
# In a transaction of its own (autocommit, or after COMMIT), so no writer's commit waits on the queue's lock.
NOTIFY = "SELECT pg_notify(%s, %s)"
Follower = Callable[[str | None], None]


def _payload_chunks(payloads: set[str]) -> list[str]:
    """The named payloads joined into NOTIFYs under PostgreSQL's limit, and an empty one if any writer
    named nobody (or none named anybody)."""
    chunks: list[str] = []
    current = ""
    for payload in sorted(payloads - {""}):
        if current and len(current) + 1 + len(payload) > MAX_PAYLOAD_BYTES:
            chunks.append(current)
            current = ""
        current = f"{current} {payload}" if current else payload
    named = [*chunks, current] if current else chunks
    return [*named, ""] if "" in payloads or not named else named


class PostgresNotifications:
    """Implements ports.Notifications over LISTEN/NOTIFY on `database_url`. `start()` it inside the
    event loop; `close()` sends what is still pending and closes its connections."""

    def __init__(
        self,
        database_url: str,
        *,
        windows: Mapping[Topic, float] = DEFAULT_WINDOWS,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self._conninfo = conninfo(database_url)
        self._windows = dict(windows)
        self._reconnect_seconds = reconnect_seconds
        self._pending: dict[Topic, set[str]] = {}
        self._wake_sender = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._send_connection: psycopg.AsyncConnection[object] | None = None
        # Each subscriber's event, with the key its notifications must name (None: any notification).
        self._subscribers: dict[Topic, dict[asyncio.Event, str | None]] = {topic: {} for topic in Topic}
        self._followers: dict[Topic, list[Follower]] = {topic: [] for topic in Topic}
        self._listeners: dict[Topic, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------------------- sending

    def start(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_loop(), name="notify-sender")

    def notify(self, topic: Topic, payload: str = "") -> None:
        self._pending.setdefault(topic, set()).add(payload)
        self._wake_sender.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake_sender.wait()
            window = min((self._windows.get(topic, 0.0) for topic in self._pending), default=0.0)
            if window > 0:
                await asyncio.sleep(window)
            self._wake_sender.clear()
            try:
                await self._send_pending()
            except (psycopg.Error, OSError) as error:
                log.warning("could not send notifications; retrying", extra={"error": type(error).__name__})
                await self._drop_send_connection()
                self._wake_sender.set()
                await asyncio.sleep(self._reconnect_seconds)

    async def _send_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            if self._send_connection is None or self._send_connection.closed:
                self._send_connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            async with self._send_connection.pipeline():
                for topic, payloads in sorted(pending.items()):
                    for chunk in _payload_chunks(payloads):
                        await self._send_connection.execute(NOTIFY, (topic.value, chunk))
        except BaseException:
            for topic, payloads in pending.items():
                self._pending.setdefault(topic, set()).update(payloads)
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
    async def subscribe(self, topic: Topic, key: str | None = None) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._subscribers[topic][event] = key
        self._listen_to(topic)
        try:
            yield event
        finally:
            del self._subscribers[topic][event]
            await self._stop_listening_unless_heard(topic)

    @contextlib.asynccontextmanager
    async def follow(self, topic: Topic, on_payload: Follower) -> AsyncIterator[None]:
        self._followers[topic].append(on_payload)
        self._listen_to(topic)
        try:
            yield
        finally:
            self._followers[topic].remove(on_payload)
            await self._stop_listening_unless_heard(topic)

    def _listen_to(self, topic: Topic) -> None:
        if topic not in self._listeners:
            self._listeners[topic] = asyncio.create_task(self._listen(topic), name=f"listen-{topic.value}")

    async def _stop_listening_unless_heard(self, topic: Topic) -> None:
        if not self._subscribers[topic] and not self._followers[topic] and topic in self._listeners:
            listener = self._listeners.pop(topic)
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    def _heard(self, topic: Topic, payload: str | None) -> None:
        names = None if payload is None else set(payload.split())
        for event, key in self._subscribers[topic].items():
            if key is None or not names or key in names:
                event.set()
        if self._followers[topic]:
            for part in [None] if payload is None else payload.split():
                for follower in list(self._followers[topic]):
                    follower(part)

    async def _listen(self, topic: Topic) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {topic.value}")
                    self._heard(topic, None)
                    async for notice in connection.notifies():
                        self._heard(topic, notice.payload)
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
