"""Browser apps on the origins an operator allowed (WEBHOOKD_CORS_ORIGINS) may call the REST API: a
preflight from such an origin is answered with what the API takes, and its calls' answers name it.
Any other origin, the inbound receiver's callbacks and a gateway with no origins set get no CORS
header at all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rest_calls import WEBHOOKS, rest_caller

from webhookd.app import Gateway, Service
from webhookd.config import Settings

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
UNKNOWN_INBOUND = "/api/v1/integration/inbound/whk_01HZZZZZZZZZZZZZZZZZZZZZZZ"


async def _gateway(settings: Settings, service: Service, origins: tuple[str, ...]) -> Gateway:
    running = Gateway(
        settings.with_overrides(cors_origins=origins),
        service.local_channel(),
        extra_routes=service.http_routes(),
        metrics=service.metrics,
    )
    await running.start()
    return running


@pytest.fixture
async def cors_url(settings: Settings, service: Service) -> AsyncIterator[str]:
    running = await _gateway(settings, service, (ALLOWED,))
    yield f"http://127.0.0.1:{running.port}"
    await running.stop()


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


async def test_preflight_from_an_allowed_origin_is_answered_with_what_the_api_takes(cors_url: str) -> None:
    async with httpx.AsyncClient(base_url=cors_url, timeout=10.0) as client:
        response = await client.options(WEBHOOKS, headers=_preflight(ALLOWED))

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "if-match", "last-event-id"} <= allowed_headers
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens, never cookies


async def test_preflight_from_another_origin_gets_no_cors_headers(cors_url: str) -> None:
    async with httpx.AsyncClient(base_url=cors_url, timeout=10.0) as client:
        response = await client.options(WEBHOOKS, headers=_preflight(OTHER))

    assert _cors_headers(response) == {}
    assert response.status_code == 405  # the API's own answer to OPTIONS, in its error shape
    assert response.json()["error"]["status"] == "UNIMPLEMENTED"


async def test_a_call_from_an_allowed_origin_names_it_and_exposes_the_headers_clients_read(cors_url: str) -> None:
    async with rest_caller(cors_url) as caller:
        response = await caller.get(WEBHOOKS, headers={"Origin": ALLOWED})

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in response.headers["vary"]
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "etag", "retry-after"} <= exposed


async def test_a_call_from_another_origin_gets_no_cors_headers(cors_url: str) -> None:
    async with rest_caller(cors_url) as caller:
        response = await caller.get(WEBHOOKS, headers={"Origin": OTHER})

    assert response.status_code == 200, response.text
    assert _cors_headers(response) == {}


async def test_the_inbound_receiver_gets_no_cors_headers(cors_url: str) -> None:
    async with httpx.AsyncClient(base_url=cors_url, timeout=10.0) as client:
        preflight = await client.options(UNKNOWN_INBOUND, headers=_preflight(ALLOWED))
        post = await client.post(UNKNOWN_INBOUND, headers={"Origin": ALLOWED}, content=b"{}")

    assert _cors_headers(preflight) == {}
    assert _cors_headers(post) == {}


async def test_no_origins_set_means_no_cors_headers(settings: Settings, service: Service) -> None:
    running = await _gateway(settings, service, ())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}", timeout=10.0) as client:
            response = await client.options(WEBHOOKS, headers=_preflight(ALLOWED))
    finally:
        await running.stop()

    assert _cors_headers(response) == {}


async def test_any_origin_is_answered_with_a_wildcard(settings: Settings, service: Service) -> None:
    running = await _gateway(settings, service, ("*",))
    try:
        async with rest_caller(f"http://127.0.0.1:{running.port}") as caller:
            preflight = await caller.options(WEBHOOKS, headers=_preflight(OTHER))
            response = await caller.get(WEBHOOKS, headers={"Origin": OTHER})
    finally:
        await running.stop()

    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
