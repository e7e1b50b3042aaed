"""The inbound receiver while PostgreSQL cannot be reached: the real receiver, store and connection pool
(pointed at a loopback port nothing listens on) behind the real HTTP server.

A sender is told 503 "temporarily unavailable: retry later" with a Retry-After of at least a second,
and nothing of the reason (the database, its address, libpq's words), which is logged instead."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from ulid import ULID

from fakes import FakeNotifications, FakeSecrets, FakeStreamLeases, FakeWebhooks
from ports import closed_port
from webhookd.http.receiver import inbound_route
from webhookd.http.server import HttpServer
from webhookd.observability.log_throttle import ThrottledLog
from webhookd.services.inbound import Inbound
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.tailing import StreamSlots
from webhookd.store.database import Database
from webhookd.store.inbound import InboundStore


class FakeClock:
    """The clock the receiver's rate-limited warnings read: each test moves it on past their interval."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
HOUR = 3600.0


@pytest.fixture(scope="module")
async def unreachable() -> AsyncIterator[tuple[str, int]]:
    """The URL of a receiver whose database does not answer, and the database's port."""
    port = closed_port()
    database = Database(f"postgresql://webhookd@127.0.0.1:{port}/webhookd", size=1, timeout_seconds=1.0)
    await database.open()
    inbound = Inbound(
        InboundStore(database),
        SigningSecrets(FakeSecrets()),
        FakeWebhooks(),
        FakeNotifications(),
        rate_per_second=1.0,
        burst=1,
        stream_slots=StreamSlots(FakeStreamLeases(), 1),
        max_body_bytes=1024,
    )
    failures = ThrottledLog(logging.getLogger("webhookd.inbound"), clock=CLOCK)
    server = HttpServer(Starlette(routes=[inbound_route(inbound, failures=failures)]), "127.0.0.1:0")
    await server.start()
    yield f"http://127.0.0.1:{server.port}", port
    await server.stop()
    await database.close()


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_sender_is_told_to_retry_later_and_nothing_of_why(
    unreachable: tuple[str, int], method: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, database_port = unreachable
    CLOCK.now += HOUR
    caplog.set_level(logging.WARNING)

    async with httpx.AsyncClient(timeout=30.0) as http:
        response = await http.request(method, f"{url}/api/v1/integration/inbound/whk_{ULID()}", content=b"{}")

    assert response.status_code == 503
    assert response.json()["error"]["message"] == "temporarily unavailable: retry later"
    assert int(response.headers["retry-after"]) >= 1
    assert "database" not in response.text.lower()
    assert str(database_port) not in response.text
    logged = [record for record in caplog.records if "database" in str(getattr(record, "reason", ""))]
    assert logged, [record.getMessage() for record in caplog.records]


async def test_an_outage_logs_a_line_an_interval_not_one_a_request(
    unreachable: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Before, every request logged its own warning: thousands a second under an outage."""
    url, _ = unreachable
    CLOCK.now += HOUR
    caplog.set_level(logging.WARNING)

    async def post() -> None:
        async with httpx.AsyncClient(timeout=30.0) as http:
            response = await http.post(f"{url}/api/v1/integration/inbound/whk_{ULID()}", content=b"{}")
        assert response.status_code == 503

    for _ in range(3):
        await post()
    CLOCK.now += HOUR
    await post()

    logged = [record for record in caplog.records if record.getMessage() == "inbound request unavailable"]
    assert [record.__dict__["suppressed"] for record in logged] == [0, 2]
