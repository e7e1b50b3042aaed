"""What a REST caller gets for requests that go wrong before or at the door: no token, a body that
is too large, not JSON or not JSON at all; another tenant's ids; paths and methods that do not exist.
Every error is AIP-193 JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from rest_calls import EVENTS, WEBHOOKS, RestCaller, create, error_of, reason_of, rest_caller, webhook_body

from webhookd.auth.tokens import mint

UNKNOWN_ID = "whk_01J0000000000000000000000"


@pytest.fixture
async def rest(gateway) -> AsyncIterator[RestCaller]:
    async with rest_caller(gateway.url) as caller:
        yield caller


@pytest.fixture
async def anonymous(gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
        yield client


# -- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", WEBHOOKS),
        ("GET", f"{WEBHOOKS}/{UNKNOWN_ID}"),
        ("POST", WEBHOOKS),
        ("PATCH", f"{WEBHOOKS}/{UNKNOWN_ID}"),
        ("DELETE", f"{WEBHOOKS}/{UNKNOWN_ID}"),
        ("POST", f"{WEBHOOKS}/{UNKNOWN_ID}:undelete"),
        ("POST", f"{WEBHOOKS}/{UNKNOWN_ID}:rotateSecret"),
        ("POST", f"{WEBHOOKS}/{UNKNOWN_ID}:resume"),
        ("POST", EVENTS),
    ],
)
async def test_no_token_is_401_with_www_authenticate(anonymous, method, path) -> None:
    body = webhook_body() if path == WEBHOOKS else {"event_type": "a.b"} if path == EVENTS else None
    response = await anonymous.request(method, path, json=body)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["status"] == "UNAUTHENTICATED"


async def test_a_token_signed_with_another_secret_is_401(anonymous) -> None:
    forged = mint("another-secret-another-secret-another!", tenant_id="tnt_forged")

    response = await anonymous.get(WEBHOOKS, headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_non_bearer_authorization_is_401(anonymous) -> None:
    response = await anonymous.get(WEBHOOKS, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


async def test_operational_routes_need_no_token(anonymous) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        assert (await anonymous.get(path)).status_code == 200, path


# -- bodies ----------------------------------------------------------------------------------------


async def test_a_body_over_one_mib_is_413(rest) -> None:
    huge = webhook_body(name="x" * (1024 * 1024))

    response = await rest.post(WEBHOOKS, json=huge)

    assert response.status_code == 413
    assert reason_of(response) == "REQUEST_TOO_LARGE"


async def test_a_chunked_body_over_one_mib_is_413(rest) -> None:
    async def chunks():  # no Content-Length: the limit is counted while reading
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = await rest.post(WEBHOOKS, content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413


async def test_a_body_that_is_not_json_content_type_is_415(rest) -> None:
    response = await rest.post(WEBHOOKS, content=b"name=orders", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert reason_of(response) == "UNSUPPORTED_MEDIA_TYPE"


async def test_malformed_json_is_400(rest) -> None:
    response = await rest.post(WEBHOOKS, content=b'{"name": ', headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert reason_of(response) == "MALFORMED_JSON"


async def test_a_json_body_of_the_wrong_type_is_400(rest) -> None:
    response = await rest.post(WEBHOOKS, json=["not", "an", "object"])

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"


async def test_an_unknown_field_is_400(rest) -> None:
    response = await rest.post(EVENTS, json={"event_type": "a.b", "priority": "high"})

    assert response.status_code == 400
    assert error_of(response)["status"] == "INVALID_ARGUMENT"


# -- tenant isolation ------------------------------------------------------------------------------


async def test_another_tenants_webhook_is_404_on_every_route(gateway, rest) -> None:
    theirs = (await create(rest))["webhook"]["id"]

    async with rest_caller(gateway.url) as other:
        attempts = [
            other.get(f"{WEBHOOKS}/{theirs}"),
            other.patch(f"{WEBHOOKS}/{theirs}", json={"name": "mine now"}),
            other.delete(f"{WEBHOOKS}/{theirs}"),
            other.post(f"{WEBHOOKS}/{theirs}:undelete"),
            other.post(f"{WEBHOOKS}/{theirs}:rotateSecret", json={}),
            other.post(f"{WEBHOOKS}/{theirs}:resume"),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status_code == 404, response.request.method + " " + response.request.url.path
            assert error_of(response)["status"] == "NOT_FOUND"
        assert (await other.get(WEBHOOKS)).json()["webhooks"] == []

    untouched = (await rest.get(f"{WEBHOOKS}/{theirs}")).json()
    assert (untouched["name"], untouched["version"], untouched["is_deleted"]) == ("orders", 1, False)


async def test_an_event_published_by_another_tenant_reaches_none_of_mine(gateway, rest) -> None:
    await create(rest, event_types=["*"])

    async with rest_caller(gateway.url) as other:
        published = (await other.post(EVENTS, json={"event_type": "rfp.created"})).json()

    assert published["deliveries_queued"] == 0


# -- routing ---------------------------------------------------------------------------------------


async def test_an_unknown_path_is_404_in_the_aip_shape(rest) -> None:
    response = await rest.get("/api/v1/integration/widgets")

    assert response.status_code == 404
    assert reason_of(response) == "ROUTE_NOT_FOUND"


async def test_a_wrong_method_is_405_with_allow(rest) -> None:
    response = await rest.put(f"{WEBHOOKS}/{UNKNOWN_ID}", json={})

    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert error_of(response)["status"] == "UNIMPLEMENTED"
