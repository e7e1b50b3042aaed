"""Headers every gateway response carries, whatever answered it: a JSON body is never sniffed into
HTML (an error echoes the path it was asked for), no answer may be framed by another site, and none
is kept by a cache. The app is wrapped as http/server.py serves every app
(tests/integration/test_http_default_headers.py checks the servers themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from webhookd.gateway.app import create_gateway_app
from webhookd.gateway.playground import CONTENT_SECURITY_POLICY, playground_routes
from webhookd.http.response_headers import DefaultHeaders

API_POLICY = "default-src 'none'; frame-ancestors 'none'"


async def _fails(_: Request) -> None:
    raise RuntimeError("a bug")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Nothing listens on port 9: an RPC route answers 503 without a server.
    async with grpc.aio.insecure_channel("127.0.0.1:9") as channel:
        routes = [*playground_routes(), Route("/fails", _fails)]
        app = create_gateway_app(channel, extra_routes=routes, unary_timeout_seconds=2)
        transport = httpx.ASGITransport(app=DefaultHeaders(app), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
            yield client


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/openapi.json",
        "/healthz",
        "/api/v1/manifest",
        "/no-such-route/<script>alert(1)</script>",  # the 404 names the path it was asked for
        "/api/v1/integration/webhooks",  # an RPC route, its server unreachable: 503
        "/fails",  # an unexpected error: 500
    ],
)
async def test_api_responses_are_not_sniffed_framed_referred_or_stored(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)

    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == API_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_the_playground_keeps_its_own_policy_and_is_not_framed_by_older_browsers(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/playground")

    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"  # its own: revalidated by ETag
