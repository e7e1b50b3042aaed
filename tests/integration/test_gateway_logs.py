"""Structured logs across the gateway and the gRPC service: one request id from the HTTP access
line to the gRPC call's line, echoed to the caller; and no token or secret in any line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from rest_calls import EVENTS, WEBHOOKS, rest_caller, webhook_body

from webhookd.logs import JsonFormatter

CREATE_RPC = "/cpod.integration.v1.WebhookService/CreateWebhook"


@pytest.fixture
def json_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog formatting as production does, at emit time, so each line has its own call's request id."""
    caplog.handler.setFormatter(JsonFormatter())
    # As logs.configure() sets them: these libraries' per-request lines (this test's own httpx
    # client, uvicorn's access log) are not webhookd's, and production keeps them at WARNING.
    for library in ("httpx", "uvicorn.access"):
        caplog.set_level(logging.WARNING, logger=library)
    caplog.set_level(logging.INFO)  # last: it also sets the capture handler's level
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")]


def with_request_id(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    return [line for line in lines(caplog) if line["request_id"] == request_id]


async def test_a_rest_create_logs_one_request_id_on_both_sides(gateway, json_logs) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.post(WEBHOOKS, json=webhook_body())

    request_id = response.headers["x-request-id"]
    assert request_id
    logged = with_request_id(json_logs, request_id)
    [access] = [line for line in logged if line["logger"] == "webhookd.gateway.access"]
    assert access["message"] == "http request"
    assert (access["http_method"], access["route"], access["status"]) == ("POST", WEBHOOKS, 200)
    assert access["duration_ms"] > 0
    [rpc] = [line for line in logged if line["logger"] == "webhookd.api"]
    assert (rpc["rpc"], rpc["code"]) == (CREATE_RPC, "OK")


async def test_the_callers_request_id_is_kept_and_echoed(gateway, json_logs) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.get(f"{WEBHOOKS}/whk_01J0000000000000000000000", headers={"X-Request-Id": "trace-42"})

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-42"
    logged = with_request_id(json_logs, "trace-42")
    assert {line["logger"] for line in logged} == {"webhookd.gateway.access", "webhookd.api"}
    [access] = [line for line in logged if line["logger"] == "webhookd.gateway.access"]
    assert (access["route"], access["status"]) == (f"{WEBHOOKS}/{{id}}", 404)
    [rpc] = [line for line in logged if line["logger"] == "webhookd.api"]
    assert rpc["code"] == "NOT_FOUND"


async def test_an_unusable_request_id_is_replaced(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        response = await rest.get(WEBHOOKS, headers={"X-Request-Id": 'has spaces; and "quotes"'})

    assert response.status_code == 200
    assert response.headers["x-request-id"] not in ("", 'has spaces; and "quotes"')


async def test_every_response_echoes_a_request_id(gateway) -> None:
    async with rest_caller(gateway.url) as rest:
        for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/no/such/route"):
            assert (await rest.get(path)).headers.get("x-request-id"), path


async def test_no_token_or_secret_reaches_the_logs(gateway, json_logs) -> None:
    chosen_secret = "whsec_" + "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQtMTIzNDU2Nzg5MA=="
    async with rest_caller(gateway.url) as rest:
        created = (await rest.post(WEBHOOKS, json=webhook_body())).json()
        webhook_id = created["webhook"]["id"]
        rotated = await rest.post(f"{WEBHOOKS}/{webhook_id}:rotateSecret", json={"signing_secret": chosen_secret})
        credential = {"header_name": "Authorization", "header_value": "Bearer credential-that-must-never-be-logged"}
        credentialed = await rest.post(f"{WEBHOOKS}/{webhook_id}:setCredential", json=credential)
        await rest.get(WEBHOOKS, params={"page_token": "secret-looking-page-token", "name": "x"})
        await rest.post(EVENTS, json={"event_type": "rfp.created", "payload": {"password": "hunter2"}})
        await rest.get(WEBHOOKS, headers={"Authorization": "Bearer not-a-real-token-but-still-private"})
        token = rest.token

    assert rotated.status_code == 200, rotated.text
    assert credentialed.status_code == 200, credentialed.text
    assert "credential-that-must-never-be-logged" not in credentialed.text
    text = json_logs.text
    assert lines(json_logs), "nothing was logged"
    for private in (
        token,
        "not-a-real-token-but-still-private",
        created["signing_secret"],
        chosen_secret,
        "credential-that-must-never-be-logged",
        "secret-looking-page-token",
        "hunter2",
    ):
        assert private not in text
