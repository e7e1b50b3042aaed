"""Deliveries as strict receivers check them: the official `standardwebhooks` and `svix` libraries
verify a Standard Webhooks delivery, GitHub's documented check verifies an `hmac-sha256` one, and a
payload with 9007199254740993 and 0.1 arrives byte for byte as the REST caller sent it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest
import requests
from contract_session import API, tenant_token
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

from receivers import Received

pytestmark = pytest.mark.slow

EXACT_PAYLOAD = '{"snowflake": 9007199254740993, "amount": 0.1, "note": "as sent, spaces included"}'


def post(base_url: str, token: str, path: str, body: str, **headers: str) -> dict[str, Any]:
    """Blocking (the gateway shares the test's event loop): run it in a thread."""
    response = requests.post(
        base_url + path,
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def deliver(gateway, receiver, *, webhook: dict[str, Any], payload: str, **headers: str) -> tuple[str, Received]:
    """Creates the webhook (bare resource) and publishes `payload` to it; returns its secret and what arrived."""
    token = tenant_token()
    created = await asyncio.to_thread(post, gateway.url, token, f"{API}/webhooks", json.dumps(webhook), **headers)
    event = '{"event_type": "contract.delivered", "payload": ' + payload + "}"
    await asyncio.to_thread(post, gateway.url, token, f"{API}/events", event)
    [delivered] = await receiver.wait_for(1)
    return created["signing_secret"], delivered


async def test_standard_webhooks_and_svix_verify_a_delivery_that_carries_the_payload_byte_for_byte(
    gateway, workers, receiver
) -> None:
    webhook = {"name": "strict", "url": receiver.url, "event_types": ["contract.*"]}

    secret, delivered = await deliver(gateway, receiver, webhook=webhook, payload=EXACT_PAYLOAD)

    envelope = StandardWebhook(secret).verify(delivered.body, delivered.headers)
    SvixWebhook(secret).verify(delivered.body, delivered.headers)  # raises when it does not verify
    assert envelope["type"] == "contract.delivered" and envelope["data"]["snowflake"] == 9007199254740993
    head = json.dumps({"type": envelope["type"], "timestamp": envelope["timestamp"]}, separators=(",", ":"))
    assert delivered.body == (head[:-1] + ',"data":' + EXACT_PAYLOAD + "}").encode()


async def test_githubs_documented_check_verifies_an_hmac_sha256_delivery(gateway, workers, receiver) -> None:
    secret = "a-github-style-secret-of-enough-length"
    webhook = {"name": "github", "url": receiver.url, "event_types": ["contract.*"], "signature_scheme": "hmac-sha256"}

    _, delivered = await deliver(
        gateway, receiver, webhook=webhook, payload='{"id": 9007199254740993}', **{"Webhook-Signing-Secret": secret}
    )

    # docs.github.com, "Validating webhook deliveries", Python example.
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), msg=delivered.body, digestmod=hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, delivered.headers["X-Hub-Signature-256"])
    assert delivered.body.endswith(b',"data":{"id": 9007199254740993}}')
