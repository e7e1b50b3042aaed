"""The OpenAPI document the real gateway serves, checked by third-party tools: openapi-spec-validator
finds it valid OpenAPI 3.1, and openapi-core validates every request and response of a scripted
session over every REST route a caller uses, successes and errors alike."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from contract_session import API, CheckedSession, served_document, stream_items, strict_openapi, tenant_token
from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts
from openapi_spec_validator.versions.shortcuts import get_spec_version
from standardwebhooks.webhooks import Webhook as StandardWebhook

from webhookd.domain.inbound import INBOUND_PATH_PREFIX
from webhookd.gateway.routes import parse_template

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="


async def test_the_served_document_is_valid_openapi_3_1(gateway) -> None:
    document = await asyncio.to_thread(served_document, gateway.url)

    validate(document)
    assert get_spec_version(document) == consts.OPENAPIV31


async def test_every_exchange_of_a_session_is_one_the_document_describes(gateway, workers, receiver) -> None:
    document = await asyncio.to_thread(served_document, gateway.url)
    session = CheckedSession(gateway.url, strict_openapi(document), tenant_token(), document)

    exchanges = await asyncio.to_thread(run_session, session, receiver.url)

    statuses = {status for _, _, status in exchanges}
    assert {200, 304, 400, 401, 404, 406, 409, 412, 415} <= statuses
    described = {(verb.upper(), path) for path, item in document["paths"].items() for verb in item}
    templates = {path: parse_template(path) for path in document["paths"]}
    called = {
        (method, template)
        for method, path, _ in exchanges
        for template, parsed in templates.items()
        if parsed.match(path) is not None and (method, template) in described
    }
    assert called == described, sorted(described - called)
    # Every field of a response is required by the document, and these real bodies had them all.
    checked = {
        template for path in session.bodies for template, parsed in templates.items() if parsed.match(path) is not None
    }
    assert {f"{API}/webhooks", f"{API}/webhooks/{{id}}", f"{API}/deliveries/{{id}}", f"{API}/events"} <= checked


def run_session(session: CheckedSession, receiver_url: str) -> list[tuple[str, str, int]]:
    """Blocking (the gateway shares the test's event loop): run it in a thread."""
    call = session.call
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/manifest", "/playground"):
        assert call("GET", path).status_code == 200, path
        assert call("HEAD", path).status_code == 200, path

    # -- webhooks: create, read, list, conditional writes ------------------------------------------
    created = call(
        "POST",
        f"{API}/webhooks",
        json={"name": "contract", "url": receiver_url, "event_types": ["contract.*"], "tags": ["a"]},
        headers={"Webhook-Signing-Secret": SECRET},
    )
    assert created.status_code == 200, created.text
    webhook = created.json()["webhook"]
    url = f"{API}/webhooks/{webhook['id']}"
    got = call("GET", url)
    head = call("HEAD", url)
    assert (head.status_code, head.content, head.headers["ETag"]) == (200, b"", got.headers["ETag"])
    assert call("HEAD", f"{API}/webhooks", params={"page_size": 1}).status_code == 200
    assert call("GET", url, headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    assert call("GET", f"{API}/webhooks", params={"direction": "outbound", "page_size": 10}).status_code == 200
    assert call("GET", f"{API}/webhooks", params={"show_deleted": "true", "tag": "a"}).status_code == 200
    patched = call("PATCH", url, json={"name": "renamed"}, headers={"If-Match": got.headers["ETag"]})
    assert patched.status_code == 200, patched.text
    assert call("PATCH", url, json={"name": "x"}, headers={"If-Match": got.headers["ETag"]}).status_code == 412
    assert call("PATCH", url, json={"name": "x", "version": 1}).status_code == 409
    assert call("PATCH", f"{url}?update_mask=tags", json={"tags": ["b"]}).status_code == 200
    assert call("POST", f"{API}/webhooks", json={"name": "no url"}).status_code == 400
    assert call("GET", f"{API}/webhooks/whk_01J0000000000000000000000").status_code == 404
    not_json = call(
        "POST", f"{API}/webhooks", data="name=x", headers={"Content-Type": "text/plain"}, valid_request=False
    )
    assert not_json.status_code == 415
    assert call("GET", url, headers={"Accept": "text/html"}).status_code == 406
    anonymous = call("GET", f"{API}/webhooks", headers={"Authorization": ""}, valid_request=False)
    assert anonymous.status_code == 401

    # -- events and their deliveries --------------------------------------------------------------
    published = call(
        "POST",
        f"{API}/events",
        json={"event_type": "contract.created", "payload": {"id": 9007199254740993, "amount": 0.1}},
        headers={"Idempotency-Key": "contract-1"},
    )
    assert published.status_code == 200, published.text
    nan = '{"event_type": "contract.created", "payload": {"a": NaN}}'
    bad = call("POST", f"{API}/events", data=nan, headers={"Content-Type": "application/json"}, valid_request=False)
    assert bad.status_code == 400
    delivery = wait_for_delivery(session, webhook["id"])
    assert call("GET", f"{API}/deliveries/{delivery['id']}").status_code == 200
    assert call("HEAD", f"{API}/deliveries/{delivery['id']}").status_code == 200
    assert call("HEAD", f"{API}/deliveries", params={"webhook_id": webhook["id"]}).status_code == 200
    assert call("POST", f"{API}/deliveries/{delivery['id']}:redeliver", json={}).status_code == 200
    log = call("GET", f"{API}/delivery-log", params={"webhook_id": webhook["id"], "follow": "false"})
    assert log.status_code == 200 and log.headers["content-type"].startswith("application/x-ndjson")
    assert stream_items(log)  # the delivery's attempt (its redelivery may still run), each validated
    events = call("GET", f"{API}/delivery-log", params={"follow": "false"}, headers={"Accept": "text/event-stream"})
    assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert call("POST", f"{url}:recover", json={"since": since}).status_code == 200
    assert call("POST", f"{url}:rotateSecret", json={"overlap": "0s"}).status_code == 200
    credential = {"header_name": "Authorization", "header_value": "Bearer contract-token"}
    credentialed = call("POST", f"{url}:setCredential", json=credential)
    assert credentialed.status_code == 200 and credentialed.json()["webhook"]["credential_header"] == "Authorization"
    assert call("POST", f"{url}:setCredential", json={"header_name": "", "header_value": ""}).status_code == 200
    assert call("POST", f"{url}:resume", json={}).status_code in (200, 400)
    assert call("POST", f"{url}:resume", json={"discard_held": True}).status_code == 200

    # -- operations: events read back, a test event, the log's kinds and consumers -----------------------
    event_id = published.json()["event_id"]
    read_back = call("GET", f"{API}/events/{event_id}")
    assert read_back.status_code == 200 and "9007199254740993" in read_back.json()["event"]["payload_json"]
    assert call("GET", f"{API}/events/evt_01J0000000000000000000000").status_code == 404
    assert call("HEAD", f"{API}/events/{event_id}").status_code == 200
    assert call("HEAD", f"{API}/events", params={"page_size": 1}).status_code == 200
    listed_events = call("GET", f"{API}/events", params={"event_type": "contract.*", "page_size": 1})
    assert listed_events.status_code == 200 and listed_events.json()["events"]
    assert call("GET", f"{API}/events", params={"page_token": "forged"}).status_code == 400
    tested = call("POST", f"{url}:sendTestEvent", json={"event_type": "contract.created"})
    assert tested.status_code == 200 and tested.json()["outcome"] == "succeeded", tested.text
    lifecycle = call("GET", f"{API}/delivery-log", params={"consumer": "contract", "kinds": "webhook.secret_rotated"})
    [rotated] = stream_items(lifecycle)
    assert rotated["entry"]["kind"] == "webhook.secret_rotated"
    acked = call("POST", f"{API}/delivery-log-consumers/contract:ack", json={"cursor": rotated["entry"]["cursor"]})
    assert acked.status_code == 200

    # -- delete and undelete ----------------------------------------------------------------------
    current = call("GET", url).headers["ETag"]
    assert call("DELETE", url, headers={"If-Match": current}).status_code == 200
    assert call("POST", f"{url}:undelete").status_code == 200
    assert call("POST", f"{url}:undelete", json={}).status_code == 409
    assert call("DELETE", url, params={"version": 1}).status_code == 409

    # -- the event type catalog, and publishing against it -----------------------------------------
    schema = {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}}, "required": ["amount"]}
    entry = call(
        "POST",
        f"{API}/event-types",
        json={"name": "contract.paid", "description": "paid", "schema": schema, "example": {"amount": 1}},
    )
    assert entry.status_code == 200, entry.text
    entry_url = f"{API}/event-types/{entry.json()['id']}"
    assert call("POST", f"{API}/event-types", json={"name": "contract.paid"}).status_code == 409
    assert call("POST", f"{API}/event-types", json={"name": "x", "schema": {"type": 3}}).status_code == 400
    entry_tag = call("GET", entry_url).headers["ETag"]
    assert call("HEAD", entry_url).headers["ETag"] == entry_tag
    assert call("HEAD", f"{API}/event-types").status_code == 200
    assert call("GET", f"{API}/event-types", params={"name_prefix": "contract.", "page_size": 5}).status_code == 200
    assert call("PATCH", entry_url, json={"deprecated": True}, headers={"If-Match": entry_tag}).status_code == 200
    assert call("PATCH", entry_url, json={"description": "x"}, headers={"If-Match": entry_tag}).status_code == 412
    mismatch = call("POST", f"{API}/events", json={"event_type": "contract.paid", "payload": {"amount": -1}})
    assert mismatch.status_code == 400, mismatch.text
    on_channel = {"event_type": "contract.paid", "payload": {"amount": 2}, "channels": ["eu"]}
    assert call("POST", f"{API}/events", json=on_channel).status_code == 200
    assert call("DELETE", entry_url).status_code == 200
    assert call("GET", entry_url).status_code == 404

    # -- routing settings and an ed25519 webhook's public key ------------------------------------------
    routed = {"channels": ["eu"], "rate_limit_per_second": 5, "ordering": "fifo", "signature_scheme": "ed25519"}
    signed = call("POST", f"{API}/webhooks", json={"name": "signed", "url": receiver_url, **routed})
    assert signed.status_code == 200, signed.text
    assert signed.json()["public_key"].startswith("whpk_") and signed.json()["signing_secret"] == ""
    key = call("GET", f"{API}/webhooks/{signed.json()['webhook']['id']}/public-key")
    assert key.status_code == 200 and key.json()["public_key"] == signed.json()["public_key"]
    assert call("GET", f"{url}/public-key").status_code == 400  # a shared-secret webhook has none
    assert call("HEAD", f"{API}/webhooks/{signed.json()['webhook']['id']}/public-key").status_code == 200

    # -- inbound: a signed request, then the stream and a consumer's ack ----------------------------
    inbound = call("POST", f"{API}/webhooks", json={"name": "inbound", "direction": "inbound"}).json()
    body = b'{"type": "partner.updated", "id": 9007199254740993}'
    headers = signed_headers(inbound["signing_secret"], body)
    receipt = call("POST", INBOUND_PATH_PREFIX + inbound["webhook"]["id"], data=body, headers=headers)
    assert receipt.status_code == 200, receipt.text
    assert call("POST", INBOUND_PATH_PREFIX + inbound["webhook"]["id"], data=body).status_code == 401
    # Zoom's URL validation is answered with the two fields Zoom reads, the document's other 200 shape.
    zoom_token = "q4Xw9LmT2vRb7NcK1sYp0A"
    zoom = call(
        "POST",
        f"{API}/webhooks",
        json={"name": "zoom", "direction": "inbound", "signature_scheme": "zoom"},
        headers={"Webhook-Signing-Secret": zoom_token},
    ).json()
    validation = b'{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event":"endpoint.url_validation"}'
    answer = call(
        "POST",
        INBOUND_PATH_PREFIX + zoom["webhook"]["id"],
        data=validation,
        headers=zoom_headers(zoom_token, validation),
    )
    assert answer.status_code == 200 and set(answer.json()) == {"plainToken", "encryptedToken"}, answer.text
    # Meta's check of a callback URL is a GET answered with its challenge, as text.
    meta = call(
        "POST",
        f"{API}/webhooks",
        json={"name": "meta", "direction": "inbound", "signature_scheme": "meta"},
        headers={"Webhook-Signing-Secret": "6f1d2c3b4a5e6f708192a3b4c5d6e7f8"},
    ).json()
    check = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": meta["webhook"]["id"]}
    confirmed = call("GET", INBOUND_PATH_PREFIX + meta["webhook"]["id"], params=check)
    assert (confirmed.status_code, confirmed.text) == (200, "1158201444")
    assert call("HEAD", INBOUND_PATH_PREFIX + meta["webhook"]["id"], params=check).status_code == 200
    mistaken = call("GET", INBOUND_PATH_PREFIX + meta["webhook"]["id"], params=check | {"hub.verify_token": "x"})
    assert mistaken.status_code == 403
    stream = call("GET", f"{API}/inbound-events", params={"consumer": "contract", "follow": "false"})
    cursor = stream_items(stream)[-1]["event"]["cursor"]
    assert call("POST", f"{API}/inbound-consumers/contract:ack", json={"cursor": cursor}).status_code == 200
    return session.exchanges


def zoom_headers(token: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(token.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-zm-signature": f"v0={digest}", "x-zm-request-timestamp": timestamp, "content-type": "application/json"}


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    message_id, now = "msg_contract_1", datetime.now(UTC)
    signature = StandardWebhook(secret).sign(message_id, now, body.decode())
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def wait_for_delivery(session: CheckedSession, webhook_id: str) -> dict[str, object]:
    """The webhook's one delivery once it has succeeded (bounded polling, each poll validated)."""
    deadline = time.monotonic() + 15
    while True:
        listed = session.call("GET", f"{API}/deliveries", params={"webhook_id": webhook_id}).json()["deliveries"]
        if listed and listed[0]["status"] == "succeeded":
            delivery: dict[str, object] = listed[0]
            return delivery
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
