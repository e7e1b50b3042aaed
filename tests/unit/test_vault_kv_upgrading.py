"""A KV v2 engine just mounted answers HTTP 400 while it upgrades its storage: start-up asks again,
as it does a sealed Vault, against a scripted HTTP/1.1 server on loopback (tests/scripted_http.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from scripted_http import Scripted, scripted_servers
from webhookd.domain.errors import Unavailable
from webhookd.secrets.vault import START_ATTEMPTS, VaultSecretStore

UPGRADING = (
    "Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period"
    " and will resume service shortly."
)


def answer(status: int, body: object) -> tuple[bytes, bool]:
    """One answer, on a connection closed after it: the store's calls come on connections of two
    transports (the token's lookup and the reads), and the scripted server serves one at a time."""
    text = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(text)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + text, True


TOKEN_TAKEN = answer(200, {"data": {"ttl": 0, "renewable": False}})
NEVER_WRITTEN = answer(404, {"errors": []})


def upgrading(words: str = UPGRADING) -> tuple[bytes, bool]:
    return answer(400, {"errors": [words]})


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    with scripted_servers() as start:
        yield start


async def start_up(server: Scripted, serve: Callable[..., str]) -> tuple[str | None, list[float]]:
    """ping_at_start against `server`: what it failed with (None: it passed), and the waits it asked for."""
    store = VaultSecretStore(serve(server), "t0k")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    try:
        await store.ping_at_start(sleep=sleep)
    except Unavailable as error:
        return error.message, waits
    finally:
        store.close()
    return None, waits


async def test_start_up_asks_again_while_the_kv_engine_upgrades_its_storage(serve: Callable[..., str]) -> None:
    standby = "Waiting for the primary to upgrade from non-versioned to versioned data. This backend will be"
    server = Scripted([TOKEN_TAKEN, upgrading(), TOKEN_TAKEN, upgrading(standby), TOKEN_TAKEN, NEVER_WRITTEN])

    failed, waits = await start_up(server, serve)

    assert failed is None
    assert len(waits) == 2 and len(server.seen) == 6
    assert server.seen[-1].head.startswith("GET /v1/secret/data/webhookd/")


async def test_start_up_gives_up_on_an_upgrade_that_does_not_end_and_says_so(serve: Callable[..., str]) -> None:
    failed, waits = await start_up(Scripted([TOKEN_TAKEN, upgrading()] * START_ATTEMPTS), serve)

    assert failed == "vault unreachable: the KV v2 engine is upgrading its storage (HTTP 400)"
    assert len(waits) == START_ATTEMPTS - 1


async def test_another_request_vault_rejects_stops_start_up_at_once(serve: Callable[..., str]) -> None:
    failed, waits = await start_up(Scripted([TOKEN_TAKEN, answer(400, {"errors": ["missing client token"]})]), serve)

    assert failed == "vault unreachable: request rejected (HTTP 400)"
    assert waits == []
