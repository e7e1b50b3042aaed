"""The Playground's routes over HTTP: no token needed, strict headers, a dev token only when given."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from webhookd.auth.tokens import TokenVerifier
from webhookd.cli import DEV_TENANT, dev_token_source
from webhookd.config import Settings
from webhookd.gateway.app import create_gateway_app
from webhookd.gateway.playground import CONTENT_SECURITY_POLICY, local_hosts, playground_routes
from webhookd.http.response_headers import DefaultHeaders

EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSETS = {
    "/playground": "text/html",
    "/playground/static/playground.css": "text/css",
    "/playground/static/playground.js": "text/javascript",
}


LOCAL_ADDRESS = "127.0.0.1:8080"  # where the dev server is configured to listen


async def client_for(dev_token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    # The channel is never called: these routes answer without gRPC.
    async with grpc.aio.insecure_channel("127.0.0.1:9") as channel:
        source = (lambda: dev_token) if dev_token is not None else None
        routes = playground_routes(dev_token=source, dev_token_hosts=lambda: local_hosts(LOCAL_ADDRESS))
        app = create_gateway_app(channel, extra_routes=routes)
        transport = httpx.ASGITransport(app=DefaultHeaders(app))  # as http/server.py serves every app
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{LOCAL_ADDRESS}") as client:
            yield client


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for():
        yield client


@pytest.fixture
async def dev_http() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(dev_token="dev.token.value"):
        yield client


async def test_manifest_needs_no_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/manifest")
    assert response.status_code == 200
    body = response.json()
    assert body["resources"][0]["name"] == "Webhook"
    assert body["openapi"] == "/api/v1/openapi.json"


@pytest.mark.parametrize(("path", "media_type"), ASSETS.items())
async def test_page_and_assets_are_served_with_a_strict_policy(
    http: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["content-security-policy"] == EXPECTED_CSP == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    etag = response.headers["etag"]
    again = await http.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["content-security-policy"] == EXPECTED_CSP


async def test_only_the_pages_own_files_are_served(http: httpx.AsyncClient) -> None:
    for name in ("nope.js", "playground.html", "..%2Fplayground.py", "%2E%2E%2Fmanifest.py"):
        response = await http.get(f"/playground/static/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]["status"] == "NOT_FOUND"


async def test_the_page_loads_nothing_inline_and_nothing_from_elsewhere(http: httpx.AsyncClient) -> None:
    html = (await http.get("/playground")).text
    assert "Loading manifest…" in html
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "data:,",
        "/playground/static/playground.css",
        "/playground/static/playground.js",
        "/api/v1/openapi.json",
    ]
    assert "<style" not in html and " style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None  # no inline script
    script = (await http.get("/playground/static/playground.js")).text
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert unsafe not in script, unsafe
    assert "localStorage" not in script


async def test_serve_offers_no_dev_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/playground/config")).json() == {"manifest": "/api/v1/manifest", "dev_token": False}
    response = await http.get("/playground/dev-token")
    assert response.status_code == 404


async def test_dev_offers_its_token_to_the_page_only(dev_http: httpx.AsyncClient) -> None:
    assert (await dev_http.get("/playground/config")).json()["dev_token"] is True
    response = await dev_http.get("/playground/dev-token", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200
    assert response.json() == {"token": "dev.token.value"}
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers
    refused = await dev_http.get("/playground/dev-token", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert "dev.token.value" not in refused.text


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8080", "127.0.0.1:9999", ""])
async def test_the_dev_token_is_refused_unless_the_host_is_the_local_address(
    dev_http: httpx.AsyncClient, host: str
) -> None:
    # DNS rebinding: an attacker's name resolves to 127.0.0.1, so the browser calls it same-origin.
    headers = {"Host": host, "Sec-Fetch-Site": "same-origin"}

    refused = await dev_http.get("/playground/dev-token", headers=headers)

    assert refused.status_code == 403
    assert "dev.token.value" not in refused.text


@pytest.mark.parametrize("host", ["rebind.attacker.example", "192.168.1.20:8080", "127.0.0.1:9999"])
async def test_the_page_is_not_offered_a_dev_token_where_it_would_be_refused(
    dev_http: httpx.AsyncClient, host: str
) -> None:
    # A page opened by another name (a LAN address, a rebinding name) would show "Use dev token" and
    # get a 403 for it: the page is told there is none.
    config = await dev_http.get("/playground/config", headers={"Host": host})

    assert config.json()["dev_token"] is False


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"])
async def test_the_dev_token_is_given_on_the_local_address_by_either_name(dev_http: httpx.AsyncClient, host) -> None:
    response = await dev_http.get("/playground/dev-token", headers={"Host": host})

    assert response.status_code == 200
    assert response.json() == {"token": "dev.token.value"}


def test_local_hosts_are_the_configured_address_and_its_loopback_names() -> None:
    assert local_hosts("127.0.0.1:8080") == {"127.0.0.1:8080", "localhost:8080"}
    assert local_hosts("[::1]:8080") == {"[::1]:8080", "localhost:8080"}
    assert local_hosts("0.0.0.0:80") == {"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}
    assert local_hosts("dev.internal:8443") == {"dev.internal:8443"}


def test_webhookd_devs_token_is_valid_for_the_dev_tenant(settings: Settings) -> None:
    mint = dev_token_source(settings)
    claims = TokenVerifier(settings).verify(mint())
    assert claims.tenant_id == DEV_TENANT


@pytest.mark.parametrize(
    ("path", "media_type"), [("/api/v1/manifest", "application/json"), ("/playground", "text/html")]
)
async def test_the_openapi_document_describes_the_manifest_and_the_page(
    http: httpx.AsyncClient, path: str, media_type: str
) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    served = await http.get(path, headers={"Authorization": ""})

    item = document["paths"][path]
    assert set(item) == {"get", "head"}
    assert item["get"]["security"] == []  # no token, as served
    assert served.status_code == 200 and served.headers["content-type"].startswith(media_type)
    assert media_type in item["get"]["responses"]["200"]["content"]
