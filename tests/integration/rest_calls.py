"""REST calls against the real gateway: a tenant's httpx client, and reading AIP-193 errors."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from support import JWT_SECRET, new_tenant_id
from webhookd.auth.tokens import mint

WEBHOOKS = "/api/v1/integration/webhooks"
EVENTS = "/api/v1/integration/events"
TARGET_URL = "http://127.0.0.1:9/hook"  # never answers; delivery is not what these tests watch


class RestCaller(httpx.AsyncClient):
    """An httpx client on the gateway with one tenant's bearer token on every request."""

    def __init__(self, base_url: str, tenant_id: str, token: str) -> None:
        super().__init__(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        self.tenant_id = tenant_id
        self.token = token


def rest_caller(base_url: str, tenant_id: str | None = None, **claims: str) -> RestCaller:
    tenant = tenant_id or new_tenant_id()
    claims.setdefault("subject", "person_1")
    return RestCaller(base_url, tenant, mint(JWT_SECRET, tenant_id=tenant, **claims))


def webhook_body(**fields: Any) -> dict[str, Any]:
    return {"name": "orders", "url": TARGET_URL, "event_types": ["rfp.*"], **fields}


async def create(caller: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """Creates a webhook over REST; returns the response body ({"webhook": ..., "signing_secret": ...})."""
    response = await caller.post(WEBHOOKS, json=webhook_body(**fields))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The AIP-193 error object; fails when the body is not one."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "status", "details"}, error
    assert error["code"] == response.status_code
    return error


def detail_of(response: httpx.Response, type_suffix: str) -> dict[str, Any]:
    """The one detail whose @type ends with `type_suffix` (e.g. "BadRequest", "ErrorInfo")."""
    [detail] = [d for d in error_of(response)["details"] if d["@type"].endswith(type_suffix)]
    return detail


def violated_fields(response: httpx.Response) -> set[str]:
    return {v["field"] for v in detail_of(response, "BadRequest")["fieldViolations"]}


def reason_of(response: httpx.Response) -> str:
    reason: str = detail_of(response, "ErrorInfo")["reason"]
    return reason


def raw_follow_stream(port: int, token: str, media_type: str, *, receive_buffer: int | None = None) -> socket.socket:
    """A DeliveryLog follow stream on a raw socket, its request sent and nothing read yet: for tests of
    what the server does to the connection (with a small `receive_buffer`, soon full when never read)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            "GET /api/v1/integration/delivery-log?follow=true HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {token}\r\nAccept: {media_type}\r\n\r\n"
        ).encode()
    )
    return sock
