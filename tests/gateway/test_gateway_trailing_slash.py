"""A path that differs from a route's only by a trailing slash is redirected to the route with a
Location that is a path, never a URL built from the request's scheme and Host: behind a proxy that
ends TLS, the request the app sees is plain http and its Host is whatever the client sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from webhookd.gateway.app import create_gateway_app
from webhookd.gateway.playground import playground_routes
from webhookd.http.operations import operations_app
from webhookd.observability import Metrics
from webhookd.services.readiness import Readiness

# As a TLS-ending proxy passes a request on: plain http inside, the public name in Host.
BEHIND_A_PROXY = {"host": "webhooks.example.com", "x-forwarded-proto": "https"}


@pytest.fixture
async def gateway_http() -> AsyncIterator[httpx.AsyncClient]:
    # Nothing listens on port 9: no request here reaches an RPC.
    async with grpc.aio.insecure_channel("127.0.0.1:9") as channel:
        app = create_gateway_app(channel, extra_routes=playground_routes())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
            yield client


@pytest.mark.parametrize(
    ("asked", "location"),
    [
        ("/playground/", "/playground"),
        ("/healthz/", "/healthz"),
        ("/api/v1/openapi.json/", "/api/v1/openapi.json"),
        ("/api/v1/manifest/?v=1", "/api/v1/manifest?v=1"),
        ("/playground/static/a%20b/", "/playground/static/a%20b"),
        ("/playground/static/a%3Fb%2525/", "/playground/static/a%3Fb%2525"),  # decoded `?` and `%` stay the path's
    ],
)
async def test_a_trailing_slash_is_redirected_by_path_not_by_a_url_from_the_host_header(
    gateway_http: httpx.AsyncClient, asked: str, location: str
) -> None:
    response = await gateway_http.get(asked, headers=BEHIND_A_PROXY)

    assert response.status_code == 307
    assert response.headers["location"] == location


async def test_the_playground_asked_with_a_slash_is_reached_on_the_origin_it_was_asked_on(
    gateway_http: httpx.AsyncClient,
) -> None:
    first = await gateway_http.get("/playground/", headers=BEHIND_A_PROXY)
    followed = await gateway_http.get(first.headers["location"], headers=BEHIND_A_PROXY)

    assert followed.status_code == 200
    assert followed.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "asked",
    [
        "/playground/nothing/",  # no route, with or without its slash
        "/api/v1/integration/webhooks/",  # RPC routes match the path as sent: the API has no slash redirects
    ],
)
async def test_a_path_no_route_takes_as_it_was_sent_is_not_found(gateway_http: httpx.AsyncClient, asked: str) -> None:
    response = await gateway_http.get(asked, headers=BEHIND_A_PROXY)

    assert response.status_code == 404
    assert "location" not in response.headers


async def test_a_workers_operational_routes_redirect_by_path_too() -> None:
    app = operations_app(Readiness({}), Metrics())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9464") as client:
        response = await client.get("/metrics/", headers=BEHIND_A_PROXY)

    assert response.status_code == 307
    assert response.headers["location"] == "/metrics"
