"""The inbound callback route over real HTTP: what is accepted, what is refused, and what is recorded.

Requests are signed with the official `standardwebhooks` library or Slack's SDK, or (hmac-sha256,
stripe, shopify, zoom) with `hmac` directly (Stripe's headers checked by Stripe's own library), never with
webhookd's own signing code. Each test makes its own tenant and inbound webhook; what a test
checks is what a sender sees (status, body, headers), what a consumer reads over gRPC, the webhook's
DeliveryLog and the `inbound_events` rows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import grpc
import httpx
import hvac
import pytest
import stripe
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook
from twilio.request_validator import RequestValidator
from ulid import ULID

from support import make_caller
from webhookd.app import Gateway, open_service

JSON = "application/json"
STRIPE_SECRET = "whsec_" + "0123456789abcdef" * 4  # as `stripe listen` prints one
PUBLIC_URL = "http://127.0.0.1:8080"  # the session settings' public_url: callback urls start with it
OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0zMmJ5dGVzIQ=="
BURST = 5
RECEIPTS = "SELECT status, reason, body, message_id FROM inbound_events WHERE webhook_id = :w ORDER BY seq"


class Inbound:
    """One inbound webhook and how to reach it: its callback url on the test gateway and its secret."""

    def __init__(self, created: pb.CreateWebhookResponse, gateway_url: str) -> None:
        self.webhook = created.webhook
        self.secret = created.signing_secret
        self.url = created.webhook.url.replace(PUBLIC_URL, gateway_url)

    def signed(
        self, body: bytes | str, *, message_id: str | None = None, at: datetime | None = None, secret: str = ""
    ) -> dict[str, str]:
        """Standard Webhooks headers made by the official library."""
        message_id = message_id or f"msg_{ULID()}"
        at = at or datetime.now(UTC)
        text = body.decode() if isinstance(body, bytes) else body
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": StandardWebhook(secret or self.secret).sign(message_id, at, text),
            "content-type": "application/json",
        }

    def hub_signed(self, body: bytes, *, delivery: str) -> dict[str, str]:
        """GitHub's scheme, computed here: HMAC-SHA256 of the body keyed with the secret string's bytes."""
        digest = hmac.new(self.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": delivery}


def stripe_signed(body: bytes, *, at: int | None = None, secret: str = STRIPE_SECRET) -> dict[str, str]:
    """Stripe's headers, computed here and accepted by Stripe's own library before they are sent."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={at},v1={digest}"
    assert stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
    return {"Stripe-Signature": header, "content-type": JSON}


async def create_inbound(caller: Any, gateway_url: str, signing_secret: str = "", **fields: Any) -> Inbound:
    fields.setdefault("name", "in")
    created = await caller.CreateWebhook(
        pb.CreateWebhookRequest(
            webhook=wpb.Webhook(direction=wpb.DIRECTION_INBOUND, **fields), signing_secret=signing_secret
        )
    )
    return Inbound(created, gateway_url)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


async def events_of(caller: Any, webhook_id: str) -> list[pb.InboundEvent]:
    call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(webhook_id=webhook_id))
    return [response.event async for response in call]


async def log_of(
    caller: Any, webhook_id: str, until: Callable[[list[pb.DeliveryLogEntry]], bool], within: float = 5.0
) -> list[pb.DeliveryLogEntry]:
    """The webhook's DeliveryLog, read again until `until` holds (an entry is readable once committed
    transactions older than it have settled)."""
    deadline = time.monotonic() + within
    while True:
        call = caller.DeliveryLog(pb.DeliveryLogRequest(webhook_id=webhook_id))
        entries = [response.entry async for response in call]
        if until(entries) or time.monotonic() >= deadline:
            return entries
        await asyncio.sleep(0.05)


# -- accepted --------------------------------------------------------------------------------------------


async def test_standard_webhooks_request_reaches_a_consumer_byte_for_byte(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = '{"type": "order.paid",\n  "data": {"name": "Zoë ✓", "amount": 12.50}}\r\n'
    headers = inbound.signed(body, message_id="msg_paid_1")

    response = await http.post(inbound.url, content=body.encode(), headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    assert response.json()["id"].startswith("rcv_")
    [event] = await events_of(caller, inbound.webhook.id)
    assert event.body == body.encode()
    assert event.id == response.json()["id"]
    assert (event.message_id, event.event_type, event.webhook_id) == ("msg_paid_1", "order.paid", inbound.webhook.id)
    assert event.content_type == "application/json"
    assert event.cursor


async def test_a_request_signed_by_a_sender_on_svix_is_accepted_and_its_retry_stored_once(
    caller, gateway, http
) -> None:
    """Clerk, Resend and other senders built on Svix sign Standard Webhooks under `svix-*` header
    names; the endpoint's secret is the `whsec_` one webhookd handed out, pasted into the sender."""
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"type": "user.created", "data": {"id": "user_29w83sxmDNGwOuEthce5gg56FcC"}})
    at = datetime.now(UTC)
    headers = {
        "svix-id": "msg_2S2Sgi5qyd5Yj9A0Gj1XwnNjvmO",
        "svix-timestamp": str(int(at.timestamp())),
        "svix-signature": SvixWebhook(inbound.secret).sign("msg_2S2Sgi5qyd5Yj9A0Gj1XwnNjvmO", at, body),
        "content-type": JSON,
    }

    answers = [await http.post(inbound.url, content=body, headers=headers) for _ in range(2)]

    assert [answer.json()["status"] for answer in answers] == ["accepted", "duplicate"]
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.message_id, event.event_type) == ("msg_2S2Sgi5qyd5Yj9A0Gj1XwnNjvmO", "user.created")


@pytest.mark.parametrize(("written", "stored"), [("a\\u0000b", "a\ufffdb"), ("a\\ud800b", "a\ufffdb")])
async def test_a_type_postgresql_cannot_hold_is_stored_with_the_replacement_character(
    caller, gateway, http, written: str, stored: str
) -> None:
    # A JSON escape can spell a NUL or a lone surrogate; neither fits a text column, and the request
    # is the sender's, signed and genuine: it is accepted, not a 500 it would retry forever.
    inbound = await create_inbound(caller, gateway.url)
    body = '{"type": "' + written + '", "data": {}}'

    response = await http.post(inbound.url, content=body.encode(), headers=inbound.signed(body))

    assert response.status_code == 200, response.text
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, event.body) == (stored, body.encode())


async def test_hmac_sha256_request_with_independent_signature_is_accepted(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url, signature_scheme="hmac-sha256")
    body = bytes(range(256)) + b"\xff\xfe not utf-8"
    headers = inbound.hub_signed(body, delivery="gh-delivery-1") | {"content-type": "application/octet-stream"}

    response = await http.post(inbound.url, content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [event] = await events_of(caller, inbound.webhook.id)
    assert event.body == body
    assert event.message_id == "gh-delivery-1"
    assert event.content_type == "application/octet-stream"


async def test_a_bitbucket_request_is_verified_by_x_hub_signature_and_typed_by_its_event_key(
    caller, gateway, http
) -> None:
    """Bitbucket signs as GitHub does, under X-Hub-Signature (not -256), and names the event in X-Event-Key."""
    inbound = await create_inbound(caller, gateway.url, signature_scheme="hmac-sha256")
    body = json.dumps({"push": {"changes": [{"new": {"name": "main"}}]}}).encode()
    digest = hmac.new(inbound.secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature": f"sha256={digest}", "X-Event-Key": "repo:push", "content-type": JSON}

    accepted = await http.post(inbound.url, content=body, headers=headers)
    altered = await http.post(inbound.url, content=body.replace(b"main", b"prod"), headers=headers)

    assert (accepted.status_code, altered.status_code) == (200, 401)
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, event.body) == ("repo:push", body)


async def test_a_github_request_is_typed_by_its_event_header(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url, signature_scheme="hmac-sha256")
    body = b'{"ref": "refs/heads/main"}'
    headers = inbound.hub_signed(body, delivery="gh-push-1") | {"X-GitHub-Event": "push", "content-type": JSON}

    assert (await http.post(inbound.url, content=body, headers=headers)).status_code == 200

    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.message_id, event.event_type) == ("gh-push-1", "push")


async def test_a_stripe_event_is_verified_as_stripe_signs_it_and_its_retry_stored_once(
    caller, gateway, http, database
) -> None:
    """Signed as Stripe signs (the header checked by Stripe's own library first), with the secret
    Stripe issued for the endpoint; Stripe's retry of the event (a new signature time) is a duplicate."""
    inbound = await create_inbound(caller, gateway.url, STRIPE_SECRET, signature_scheme="stripe")
    assert inbound.secret == STRIPE_SECRET
    body = json.dumps({"id": "evt_3Nq1", "object": "event", "type": "invoice.paid", "data": {}}).encode()
    first, retry = stripe_signed(body, at=int(time.time()) - 60), stripe_signed(body)

    answers = [await http.post(inbound.url, content=body, headers=headers) for headers in (first, retry)]

    assert [answer.json()["status"] for answer in answers] == ["accepted", "duplicate"]
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.message_id, event.event_type, event.body) == ("evt_3Nq1", "invoice.paid", body)
    forged = stripe_signed(body, secret="whsec_" + "F" * 32)
    refused = await http.post(inbound.url, content=body, headers=forged)
    assert refused.status_code == 401
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason) for row in rows] == [("accepted", ""), ("rejected", "bad_signature")]


async def test_a_shopify_webhook_is_verified_and_typed_by_its_topic(caller, gateway, http) -> None:
    secret = "shpss_" + "0123456789abcdef" * 2
    inbound = await create_inbound(caller, gateway.url, secret, signature_scheme="shopify")
    body = b'{"id": 820982911946154508, "email": "jon@example.com"}'
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "content-type": JSON,
    }

    response = await http.post(inbound.url, content=body, headers=headers)

    assert response.status_code == 200, response.text
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.message_id, event.event_type) == ("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "orders/create")


SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_signed(body: bytes) -> dict[str, str]:
    """Headers as Slack sends them, signed by Slack's own SDK."""
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp, "content-type": JSON}


async def test_slacks_url_verification_is_answered_and_its_events_typed_and_deduplicated(caller, gateway, http) -> None:
    """Setting up a Slack app's Request URL: Slack sends a signed url_verification and waits for its
    challenge back. Then events, each retried under the same event_id until it is acknowledged."""
    inbound = await create_inbound(caller, gateway.url, SLACK_SECRET, signature_scheme="slack")
    handshake = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdx", "type": "url_verification"}).encode()
    event = {"type": "event_callback", "event_id": "Ev08MFMKH6", "event": {"type": "app_mention", "text": "hi"}}
    body = json.dumps(event).encode()

    signed_handshake = slack_signed(handshake)
    verified = await http.post(inbound.url, content=handshake, headers=signed_handshake)
    first = await http.post(inbound.url, content=body, headers=slack_signed(body))
    retry = await http.post(inbound.url, content=body, headers=slack_signed(body) | {"X-Slack-Retry-Num": "1"})

    assert verified.status_code == 200 and verified.json()["challenge"] == "3eZbrw1aBm2rZgRNFdx"
    assert [first.json()["status"], retry.json()["status"]] == ["accepted", "duplicate"]
    assert first.json()["challenge"] is None
    events = await events_of(caller, inbound.webhook.id)
    # The handshake names no id: its signature, over its time and body, is one.
    signature = next(value for name, value in signed_handshake.items() if name.lower() == "x-slack-signature")
    assert [(e.event_type, e.message_id) for e in events] == [
        ("url_verification", signature),
        ("app_mention", "Ev08MFMKH6"),
    ]


ZOOM_TOKEN = "q4Xw9LmT2vRb7NcK1sYp0A"  # a Secret Token as Zoom shows one: 22 characters


def zoom_signed(body: bytes, token: str = ZOOM_TOKEN) -> dict[str, str]:
    """Headers as Zoom sends them, signed as Zoom's webhook-sample checks them: `v0=` and the hex
    HMAC-SHA256 of `v0:{x-zm-request-timestamp}:{body}` under the Secret Token."""
    timestamp = str(int(time.time()))
    digest = hmac.new(token.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-zm-signature": f"v0={digest}", "x-zm-request-timestamp": timestamp, "content-type": JSON}


async def test_zooms_url_validation_is_answered_as_zoom_checks_it_and_its_events_typed(
    caller, gateway, http, database
) -> None:
    """Adding an Event Subscription in Zoom's Marketplace: Zoom posts a signed endpoint.url_validation
    and takes the endpoint when the answer holds the plainToken and its HMAC under the Secret Token
    (again every 72 hours). Then events, typed by their `event`."""
    inbound = await create_inbound(caller, gateway.url, ZOOM_TOKEN, signature_scheme="zoom")
    plain = "qgg8vlvZRS6UYooatFL8Aw"
    compact = (",", ":")  # as Zoom sends JSON
    check = {"payload": {"plainToken": plain}, "event_ts": 1654503849680, "event": "endpoint.url_validation"}
    validation = json.dumps(check, separators=compact).encode()
    started = {"event": "meeting.started", "event_ts": 1626230691572, "payload": {"object": {"id": "85746065"}}}
    event = json.dumps(started, separators=compact).encode()

    validated = await http.post(inbound.url, content=validation, headers=zoom_signed(validation))
    event_headers = zoom_signed(event)
    delivered = await http.post(inbound.url, content=event, headers=event_headers)
    replayed = await http.post(inbound.url, content=event, headers=event_headers)  # within its 5 minutes
    forged = await http.post(inbound.url, content=validation, headers=zoom_signed(validation, "an-other-secret-token"))

    # What Zoom compares: the plainToken, and its hex HMAC-SHA256 under the Secret Token.
    encrypted = hmac.new(ZOOM_TOKEN.encode(), plain.encode(), hashlib.sha256).hexdigest()
    assert (validated.status_code, validated.json()) == (200, {"plainToken": plain, "encryptedToken": encrypted})
    assert (delivered.status_code, delivered.json()["status"]) == (200, "accepted")
    assert (replayed.status_code, replayed.json()["status"]) == (200, "duplicate")
    assert forged.status_code == 401 and encrypted not in forged.text
    events = await events_of(caller, inbound.webhook.id)
    assert [(e.event_type, e.body) for e in events] == [
        ("endpoint.url_validation", validation),
        ("meeting.started", event),
    ]
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason) for row in rows] == [
        ("accepted", ""),
        ("accepted", ""),
        ("rejected", "bad_signature"),
    ]


async def test_a_signed_handshake_whose_challenge_no_answer_can_carry_is_stored_and_answered_without_it(
    caller, gateway, http, database
) -> None:
    """JSON may spell a lone surrogate, which no UTF-8 answer can hold: it was a 500 after the receipt
    was stored, so the sender retried what had been accepted."""
    slack = await create_inbound(caller, gateway.url, SLACK_SECRET, signature_scheme="slack")
    zoom = await create_inbound(caller, gateway.url, ZOOM_TOKEN, signature_scheme="zoom")
    handshake = b'{"type": "url_verification", "challenge": "\\ud800"}'
    validation = b'{"event": "endpoint.url_validation", "payload": {"plainToken": "\\ud800"}}'

    answers = [
        await http.post(slack.url, content=handshake, headers=slack_signed(handshake)),
        await http.post(zoom.url, content=validation, headers=zoom_signed(validation)),
    ]

    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["challenge"]) == ("accepted", None)
    for inbound, body in ((slack, handshake), (zoom, validation)):
        [event] = await events_of(caller, inbound.webhook.id)
        assert event.body == body


GITLAB_TOKEN = "glwt-7f3c9a1e5b2d8c4f6a0e"  # a hook's secret token, as its owner chose it in GitLab


async def test_a_gitlab_hook_is_verified_by_its_token_typed_by_its_event_and_its_retry_stored_once(
    caller, gateway, http, database
) -> None:
    """GitLab sends the hook's secret token itself in X-Gitlab-Token, the event's name in
    X-Gitlab-Event, and the same Idempotency-Key on each retry of one request."""
    inbound = await create_inbound(caller, gateway.url, GITLAB_TOKEN, signature_scheme="gitlab")
    body = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "total_commits_count": 1}).encode()
    headers = {
        "X-Gitlab-Token": GITLAB_TOKEN,
        "X-Gitlab-Event": "Push Hook",
        "Idempotency-Key": "908a6d9e-45fd-46c8-97e6-c4f350f219dd",
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "content-type": JSON,
    }

    first = await http.post(inbound.url, content=body, headers=headers)
    retry = await http.post(inbound.url, content=body, headers=headers | {"X-Gitlab-Webhook-UUID": "another"})
    forged = await http.post(inbound.url, content=body, headers=headers | {"X-Gitlab-Token": "guessed-token-1234"})

    assert [first.json()["status"], retry.json()["status"], forged.status_code] == ["accepted", "duplicate", 401]
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, event.message_id, event.body) == (
        "Push Hook",
        "908a6d9e-45fd-46c8-97e6-c4f350f219dd",
        body,
    )
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason) for row in rows] == [("accepted", ""), ("rejected", "bad_signature")]
    assert GITLAB_TOKEN not in forged.text


async def test_gitlab_events_sharing_an_event_uuid_are_each_stored_and_a_token_of_any_characters_verifies(
    caller, gateway, http
) -> None:
    """Before 17.4 GitLab sends no Idempotency-Key, and every event one API call sets off through
    other hooks carries the same X-Gitlab-Event-UUID: each is its own event. A token is what its
    owner typed in GitLab, sent as UTF-8."""
    token = "jeton-secret-été-2026-ü"
    inbound = await create_inbound(caller, gateway.url, token, signature_scheme="gitlab")
    shared = {"X-Gitlab-Token": token.encode(), "X-Gitlab-Event-UUID": "13792a34-cac6", "content-type": JSON}
    push = json.dumps({"object_kind": "push", "ref": "refs/heads/main"}).encode()
    note = json.dumps({"object_kind": "note", "object_attributes": {"note": "LGTM"}}).encode()

    answers = [
        await http.post(inbound.url, content=push, headers=shared | {"X-Gitlab-Event": "Push Hook"}),
        await http.post(inbound.url, content=note, headers=shared | {"X-Gitlab-Event": "Note Hook"}),
    ]

    assert [(answer.status_code, answer.json()["status"]) for answer in answers] == [(200, "accepted")] * 2
    events = await events_of(caller, inbound.webhook.id)
    assert sorted(event.event_type for event in events) == ["Note Hook", "Push Hook"]


async def test_gitlabs_signing_token_verifies_as_standard_webhooks_typed_by_its_event_header(
    caller, gateway, http
) -> None:
    """Where GitLab offers a signing token, it signs as Standard Webhooks (webhook-id is its
    Idempotency-Key): a standard-webhooks inbound webhook takes it, typed by X-Gitlab-Event."""
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"object_kind": "merge_request", "event_type": "merge_request"})
    headers = inbound.signed(body, message_id="908a6d9e-45fd-46c8-97e6-c4f350f219dd") | {
        "X-Gitlab-Event": "Merge Request Hook"
    }

    response = await http.post(inbound.url, content=body.encode(), headers=headers)

    assert response.status_code == 200, response.text
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, event.message_id) == ("Merge Request Hook", "908a6d9e-45fd-46c8-97e6-c4f350f219dd")


META_APP_SECRET = "6f1d2c3b4a5e6f708192a3b4c5d6e7f8"  # an App Secret: 32 hex characters


async def test_a_meta_subscription_is_confirmed_and_its_notifications_verified_and_typed(
    caller, gateway, http, database
) -> None:
    """Setting up a WhatsApp (or Facebook, Instagram) webhook in Meta's dashboard: the callback URL
    and, as Verify Token, the webhook's id. Meta GETs the URL with a challenge and takes the endpoint
    when the body is that challenge; then it POSTs notifications signed with the App Secret."""
    inbound = await create_inbound(caller, gateway.url, META_APP_SECRET, signature_scheme="meta")
    webhook_id = inbound.webhook.id
    check = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": webhook_id}
    notification = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {"messages": []}}]}],
    }
    body = json.dumps(notification).encode()
    signature = "sha256=" + hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()

    confirmed = await http.get(inbound.url, params=check)
    mistaken = await http.get(inbound.url, params=check | {"hub.verify_token": "a-token-for-another-url"})
    not_meta = await http.get(inbound.url, params=check | {"hub.mode": "unsubscribe"})
    delivered = await http.post(
        inbound.url, content=body, headers={"X-Hub-Signature-256": signature, "content-type": JSON}
    )
    replayed = await http.post(
        inbound.url, content=body, headers={"X-Hub-Signature-256": signature, "content-type": JSON}
    )
    forged = await http.post(inbound.url, content=body + b" ", headers={"X-Hub-Signature-256": signature})
    scripted = await http.get(inbound.url, params=check | {"hub.challenge": "<script>alert(1)</script>"})

    assert (confirmed.status_code, confirmed.text) == (200, "1158201444")
    assert confirmed.headers["content-type"].startswith("text/plain")
    assert confirmed.headers["x-content-type-options"] == "nosniff"
    assert (scripted.status_code, scripted.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "<script>" not in scripted.text
    # Meta signs no time and keeps no id: a retry, or a replay of a captured request, is the same body.
    assert (replayed.status_code, replayed.json()["status"]) == (200, "duplicate")
    assert (mistaken.status_code, mistaken.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert (not_meta.status_code, not_meta.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert (delivered.status_code, forged.status_code) == (200, 401)
    [event] = await events_of(caller, webhook_id)
    assert (event.event_type, event.body) == ("whatsapp_business_account.messages", body)
    rows = await database.rows(RECEIPTS, w=webhook_id)
    assert [(row.status, row.reason) for row in rows] == [("accepted", ""), ("rejected", "bad_signature")]


async def test_only_a_meta_webhook_answers_a_get_and_other_methods_are_not_allowed(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url)
    check = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": inbound.webhook.id}

    answered = await http.get(inbound.url, params=check)
    put = await http.put(inbound.url, content=b"{}")

    assert (answered.status_code, answered.json()["error"]["status"]) == (404, "NOT_FOUND")
    assert put.status_code == 405 and {"GET", "POST"} <= set(put.headers["allow"].replace(" ", "").split(","))


TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"  # an account's Auth Token: 32 hex characters


async def test_twilio_form_posts_are_verified_over_the_url_twilio_called_and_retries_stored_once(
    caller, gateway, http, database
) -> None:
    """Twilio signs the callback URL as it is configured in Twilio (the public one, here with a query
    string the account added) plus the form's fields; the request reaches webhookd at another address,
    as behind a proxy. A retry carries the same I-Twilio-Idempotency-Token."""
    inbound = await create_inbound(caller, gateway.url, TWILIO_TOKEN, signature_scheme="twilio")
    params = {"MessageSid": "SM1f0e8ae6", "From": "+14158141829", "Body": "Ahoy & welcome", "NumMedia": "0"}
    body = urllib.parse.urlencode(params).encode()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{inbound.webhook.url}?team=eu", params)
    headers = {
        "X-Twilio-Signature": signature,
        "I-Twilio-Idempotency-Token": "ad6c6dd7-4a8b-4f0c",
        "content-type": "application/x-www-form-urlencoded",
    }

    answers = [await http.post(f"{inbound.url}?team=eu", content=body, headers=headers) for _ in range(2)]
    forged = await http.post(f"{inbound.url}?team=us", content=body, headers=headers)

    # Twilio reads the answer as TwiML: an empty Response, for the first request and its retry alike.
    for answer in answers:
        assert (answer.status_code, answer.headers["content-type"]) == (200, "text/xml; charset=utf-8")
        assert ElementTree.fromstring(answer.text).tag == "Response" and len(ElementTree.fromstring(answer.text)) == 0
    assert forged.status_code == 401
    stored = await events_of(caller, inbound.webhook.id)
    assert len(stored) == 1, "the retry is stored once"
    [event] = stored
    assert (event.message_id, event.body, event.content_type) == (
        "ad6c6dd7-4a8b-4f0c",
        body,
        "application/x-www-form-urlencoded",
    )
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason) for row in rows] == [("accepted", ""), ("rejected", "bad_signature")]


async def test_a_twilio_json_post_is_verified_by_the_body_hash_in_its_url(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url, TWILIO_TOKEN, signature_scheme="twilio")
    body = json.dumps([{"specversion": "1.0", "type": "com.twilio.messaging.message.delivered"}]).encode()
    query = f"bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{inbound.webhook.url}?{query}", {})
    headers = {"X-Twilio-Signature": signature, "content-type": JSON}

    accepted = await http.post(f"{inbound.url}?{query}", content=body, headers=headers)
    altered = await http.post(f"{inbound.url}?{query}", content=body.replace(b"delivered", b"failed"), headers=headers)

    assert (accepted.status_code, altered.status_code) == (200, 401)
    [event] = await events_of(caller, inbound.webhook.id)
    assert event.body == body


async def test_a_slack_interaction_posted_as_a_form_is_verified_and_typed(caller, gateway, http) -> None:
    """Interactivity (a button clicked) reaches the same Request URL as a form with a JSON `payload`."""
    inbound = await create_inbound(caller, gateway.url, SLACK_SECRET, signature_scheme="slack")
    clicked = {"type": "block_actions", "trigger_id": "1337.42", "actions": [{"action_id": "approve"}]}
    body = urllib.parse.urlencode({"payload": json.dumps(clicked)}).encode()
    headers = slack_signed(body) | {"content-type": "application/x-www-form-urlencoded"}

    response = await http.post(inbound.url, content=body, headers=headers)
    replayed = await http.post(inbound.url, content=body, headers=headers)  # a click names no id: its signature does

    assert response.status_code == 200, response.text
    assert (replayed.status_code, replayed.json()["status"]) == (200, "duplicate")
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, event.body) == ("block_actions", body)


async def test_a_stripe_webhook_needs_the_secret_stripe_issued(caller) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_inbound(caller, "http://unused", signature_scheme="stripe")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signing_secret: required for stripe" in refused.value.details()


async def test_hmac_sha256_tampered_body_is_rejected(caller, gateway, http, database) -> None:
    inbound = await create_inbound(caller, gateway.url, signature_scheme="hmac-sha256")
    headers = inbound.hub_signed(b'{"ok": true}', delivery="gh-2")

    response = await http.post(inbound.url, content=b'{"ok": false}', headers=headers)

    assert response.status_code == 401
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason, row.body) for row in rows] == [("rejected", "bad_signature", None)]


async def test_rotation_without_overlap_retires_the_old_secret_for_the_next_request(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url)
    accepted = await http.post(inbound.url, content=b"{}", headers=inbound.signed("{}"))
    assert accepted.status_code == 200, accepted.text  # the receiver has read (and kept) the first secret

    rotated = await caller.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=inbound.webhook.id, overlap=duration_pb2.Duration(seconds=0))
    )
    with_old = await http.post(inbound.url, content=b"{}", headers=inbound.signed("{}"))
    with_new = await http.post(inbound.url, content=b"{}", headers=inbound.signed("{}", secret=rotated.signing_secret))

    assert with_old.status_code == 401
    assert with_new.status_code == 200, with_new.text


async def test_received_events_appear_in_the_webhooks_delivery_log(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"type": "invoice.sent"})
    response = await http.post(inbound.url, content=body, headers=inbound.signed(body, message_id="msg_log_1"))
    assert response.status_code == 200, response.text

    [entry] = await log_of(caller, inbound.webhook.id, lambda entries: len(entries) >= 1)

    assert (entry.outcome, entry.http_status, entry.error) == ("received", 200, "")
    assert (entry.webhook_id, entry.event_id, entry.event_type) == (inbound.webhook.id, "msg_log_1", "invoice.sent")
    assert entry.delivery_id == response.json()["id"]


# -- rejected and recorded -------------------------------------------------------------------------------


def _tampered(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    return body.replace("1", "2"), inbound.signed(body)


def _wrong_secret(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    return body, inbound.signed(body, secret=OTHER_SECRET)


def _stale(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    return body, inbound.signed(body, at=datetime.now(UTC) - timedelta(minutes=5, seconds=30))


def _future(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    return body, inbound.signed(body, at=datetime.now(UTC) + timedelta(minutes=5, seconds=30))


def _no_signature(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    headers = inbound.signed(body)
    del headers["webhook-signature"]
    return body, headers


def _no_headers(inbound: Inbound, body: str) -> tuple[str, dict[str, str]]:
    return body, {"content-type": "application/json"}


def _not_ascii(inbound: Inbound, body: str) -> tuple[str, dict[str, str | bytes]]:
    """A header may carry any byte; base64 with one outside ASCII is a bad signature, not a crash."""
    signed = inbound.signed(body)
    headers: dict[str, str | bytes] = {
        **signed,
        "webhook-signature": b"v1,\xe9" + signed["webhook-signature"][3:].encode(),
    }
    return body, headers


def _repeated_signature(inbound: Inbound, body: str) -> tuple[str, list[tuple[str, str]]]:
    """A good signature and another: which one a proxy in front checked is unknown, so neither counts."""
    signed = inbound.signed(body)
    return body, [("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl"), *signed.items()]


@pytest.mark.parametrize(
    ("make_request", "reason"),
    [
        (_tampered, "bad_signature"),
        (_wrong_secret, "bad_signature"),
        (_stale, "stale_timestamp"),
        (_future, "future_timestamp"),
        (_no_signature, "missing_headers"),
        (_no_headers, "missing_headers"),
        (_not_ascii, "bad_signature"),
        (_repeated_signature, "repeated_headers"),
    ],
    ids=[
        "tampered-body",
        "wrong-secret",
        "stale-timestamp",
        "future-timestamp",
        "no-signature",
        "no-headers",
        "not-ascii-signature",
        "repeated-signature",
    ],
)
async def test_bad_request_is_refused_and_recorded_without_its_body(
    caller, gateway, http, database, make_request, reason
) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body, headers = make_request(inbound, json.dumps({"type": "order.paid", "n": 1}))

    response = await http.post(inbound.url, content=body, headers=headers)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert reason in response.json()["error"]["message"]
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.reason, row.body) for row in rows] == [("rejected", reason, None)]
    [entry] = await log_of(caller, inbound.webhook.id, lambda entries: len(entries) >= 1)
    assert (entry.outcome, entry.error, entry.http_status) == ("rejected", reason, 401)
    assert await events_of(caller, inbound.webhook.id) == []


async def test_rejected_attempt_does_not_block_the_genuine_message_with_the_same_id(caller, gateway, http) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"type": "order.paid"})
    headers = inbound.signed(body, message_id="msg_same")

    forged = await http.post(inbound.url, content=body + " ", headers=headers)
    genuine = await http.post(inbound.url, content=body, headers=headers)

    assert (forged.status_code, genuine.status_code) == (401, 200)
    assert genuine.json()["status"] == "accepted"
    assert [event.message_id for event in await events_of(caller, inbound.webhook.id)] == ["msg_same"]


async def test_deeply_nested_json_is_judged_by_its_signature_not_its_shape(caller, gateway, http, database) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = "[" * 200_000  # too deep for json.loads: it has no `type`, and must not be a 500

    unsigned = await http.post(inbound.url, content=body, headers={"content-type": "application/json"})
    signed = await http.post(inbound.url, content=body, headers=inbound.signed(body))

    assert (unsigned.status_code, signed.status_code) == (401, 200), signed.text
    [event] = await events_of(caller, inbound.webhook.id)
    assert (event.event_type, len(event.body)) == ("", len(body))


# -- duplicates ------------------------------------------------------------------------------------------


async def test_repeated_webhook_id_is_acknowledged_and_stored_once(caller, gateway, http, database) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"type": "order.paid"})
    headers = inbound.signed(body, message_id="msg_twice")

    first = await http.post(inbound.url, content=body, headers=headers)
    second = await http.post(inbound.url, content=body, headers=headers)

    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")
    rows = await database.rows(RECEIPTS, w=inbound.webhook.id)
    assert [(row.status, row.message_id) for row in rows] == [("accepted", "msg_twice")]
    assert len(await events_of(caller, inbound.webhook.id)) == 1
    entries = await log_of(caller, inbound.webhook.id, lambda entries: len(entries) >= 1)
    assert [entry.outcome for entry in entries] == ["received"]


async def test_concurrent_retries_of_one_message_are_stored_once(caller, gateway, http, database) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = json.dumps({"type": "order.paid"})
    headers = inbound.signed(body, message_id="msg_race")

    responses = await asyncio.gather(*(http.post(inbound.url, content=body, headers=headers) for _ in range(8)))

    assert {response.status_code for response in responses} == {200}
    assert sorted(response.json()["status"] for response in responses) == ["accepted"] + ["duplicate"] * 7
    assert await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=inbound.webhook.id) == 1


# -- not found -------------------------------------------------------------------------------------------


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")
    assert any(detail["@type"].endswith("google.rpc.ErrorInfo") for detail in error["details"])


async def test_unknown_deleted_disabled_and_outbound_webhooks_are_not_found(caller, gateway, http, database) -> None:
    deleted = await create_inbound(caller, gateway.url)
    await caller.DeleteWebhook(pb.DeleteWebhookRequest(id=deleted.webhook.id))
    disabled = await create_inbound(caller, gateway.url, enabled=False)
    outbound = await caller.CreateWebhook(
        pb.CreateWebhookRequest(webhook=wpb.Webhook(name="out", url="https://example.test/hook"))
    )
    body = json.dumps({"type": "order.paid"})
    headers = deleted.signed(body)

    for webhook_id in (f"whk_{ULID()}", deleted.webhook.id, disabled.webhook.id, outbound.webhook.id):
        url = f"{gateway.url}/api/v1/integration/inbound/{webhook_id}"
        response = await http.post(url, content=body, headers=headers)
        assert_not_found(response)

    for webhook_id in (deleted.webhook.id, disabled.webhook.id, outbound.webhook.id):
        assert await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=webhook_id) == 0


async def test_a_webhook_whose_secret_vault_lost_tells_the_sender_to_retry_and_nothing_of_vault(
    caller, gateway, http, backends, settings, database
) -> None:
    """Vault lost the secret of a live webhook (a restore, an operator's slip): the sender cannot be
    verified, it is our fault, and retried it goes through once the secret is back. Before, the sender
    read 404 "no secret at <mount path>/tenants/<tenant id>/webhooks/<id>"."""
    inbound = await create_inbound(caller, gateway.url)
    vault = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    await asyncio.to_thread(
        vault.secrets.kv.v2.delete_metadata_and_all_versions,
        path=inbound.webhook.vault_path,
        mount_point=settings.vault_mount,
    )
    body = json.dumps({"type": "order.paid"})

    response = await http.post(inbound.url, content=body, headers=inbound.signed(body))

    assert response.status_code == 503, response.text
    assert response.json()["error"]["message"] == "temporarily unavailable: retry later"
    assert int(response.headers["retry-after"]) >= 1
    assert caller.tenant_id not in response.text and inbound.webhook.vault_path not in response.text
    assert await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=inbound.webhook.id) == 0


@pytest.mark.parametrize("webhook_id", ["whk_%00", "a%00b", "whk_" + "A" * 10_000, "%E2%9C%93"])
async def test_an_id_no_webhook_could_have_is_not_found(gateway, http, webhook_id: str) -> None:
    response = await http.post(f"{gateway.url}/api/v1/integration/inbound/{webhook_id}", content=b"{}")

    assert_not_found(response)
    assert len(response.text) < 1000


# -- size ------------------------------------------------------------------------------------------------


async def test_body_at_the_limit_is_accepted(caller, gateway, http, settings) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = "x" * settings.max_request_bytes

    response = await http.post(inbound.url, content=body, headers=inbound.signed(body))

    assert response.status_code == 200, response.text
    [event] = await events_of(caller, inbound.webhook.id)
    assert len(event.body) == settings.max_request_bytes


async def test_body_over_the_limit_with_content_length_is_too_large(caller, gateway, http, settings, database) -> None:
    inbound = await create_inbound(caller, gateway.url)
    body = "x" * (settings.max_request_bytes + 1)

    response = await http.post(inbound.url, content=body, headers=inbound.signed(body))

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == 413
    assert await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=inbound.webhook.id) == 0


async def test_chunked_body_over_the_limit_is_too_large(caller, gateway, http, settings, database) -> None:
    inbound = await create_inbound(caller, gateway.url)
    chunk = b"x" * 65536
    chunks = 2 * settings.max_request_bytes // len(chunk)
    body = (chunk * chunks).decode()
    headers = inbound.signed(body)

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield chunk

    response = await http.post(inbound.url, content=stream(), headers=headers)

    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert response.status_code == 413, response.text
    assert await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=inbound.webhook.id) == 0


# -- rate limit ------------------------------------------------------------------------------------------


@pytest.fixture
async def limited(settings, backends) -> AsyncIterator[tuple[Any, str]]:
    """A service and gateway of their own whose inbound limit is a burst of BURST, then one per 10 s."""
    tight = settings.with_overrides(inbound_burst=BURST, inbound_rate_per_second=0.1)
    service = await open_service(tight, backends)
    gateway = Gateway(tight, service.local_channel(), extra_routes=service.http_routes())
    try:
        await gateway.start()
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            yield make_caller(channel, subject="person_1"), f"http://127.0.0.1:{gateway.port}"
    finally:
        await gateway.stop()
        await service.stop(grace=1.0)


async def test_requests_over_the_burst_get_429_with_retry_after(limited, http, database) -> None:
    own_caller, gateway_url = limited
    inbound = await create_inbound(own_caller, gateway_url)
    other = await create_inbound(own_caller, gateway_url)
    body = json.dumps({"type": "order.paid"})

    async def send(target: Inbound) -> httpx.Response:
        return await http.post(target.url, content=body, headers=target.signed(body))

    responses = await asyncio.gather(*(send(inbound) for _ in range(BURST + 10)))
    statuses = [response.status_code for response in responses]

    assert sorted(statuses) == [200] * BURST + [429] * 10
    for response in responses:
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 10
            assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    stored = await database.value("SELECT count(*) FROM inbound_events WHERE webhook_id = :w", w=inbound.webhook.id)
    assert stored == BURST
    assert (await send(other)).status_code == 200  # the limit is per webhook


async def test_unsigned_requests_cannot_spend_the_senders_tokens_and_past_their_own_are_not_recorded(
    limited, http, database
) -> None:
    """Anyone who has the callback URL can send junk at it: the refusals draw from a bucket of their own,
    so the sender's correctly signed requests still come in; past that bucket a refusal is answered
    alike and not recorded."""
    own_caller, gateway_url = limited
    inbound = await create_inbound(own_caller, gateway_url)
    body = json.dumps({"type": "order.paid"})

    junk = [
        await http.post(inbound.url, content=body, headers=inbound.signed(body, secret=OTHER_SECRET))
        for _ in range(BURST + 3)
    ]
    signed = [await http.post(inbound.url, content=body, headers=inbound.signed(body)) for _ in range(BURST)]

    assert [response.status_code for response in signed] == [200] * BURST
    assert [response.status_code for response in junk] == [401] * (BURST + 3)
    assert {response.text for response in junk} == {junk[0].text}  # recorded or not, one answer
    statuses = "SELECT status, count(*) AS n FROM inbound_events WHERE webhook_id = :w GROUP BY status ORDER BY status"
    assert [(row.status, row.n) for row in await database.rows(statuses, w=inbound.webhook.id)] == [
        ("accepted", BURST),
        ("rejected", BURST),
    ]
    log_lines = await database.value("SELECT count(*) FROM attempts WHERE webhook_id = :w", w=inbound.webhook.id)
    assert log_lines == 2 * BURST


async def test_metas_checks_cannot_spend_the_tokens_of_its_notifications(limited, http) -> None:
    """The Verify Token is the webhook's id, in the URL: anyone with it can send Meta's GET."""
    own_caller, gateway_url = limited
    inbound = await create_inbound(own_caller, gateway_url, META_APP_SECRET, signature_scheme="meta")
    check = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": inbound.webhook.id}

    checks = [await http.get(inbound.url, params=check) for _ in range(BURST + 1)]
    notifications = []
    for n in range(BURST):
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": str(n)}]}).encode()
        signature = "sha256=" + hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": signature, "content-type": JSON}
        notifications.append(await http.post(inbound.url, content=body, headers=headers))

    assert [response.status_code for response in notifications] == [200] * BURST
    assert [(response.status_code, response.text) for response in checks] == [(200, "1158201444")] * (BURST + 1)
