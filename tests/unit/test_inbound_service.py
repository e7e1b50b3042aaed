"""services/inbound.py on fakes: the order of a receipt's checks, what is stored, and the consumers' stream."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from twilio.request_validator import RequestValidator

from fakes import (
    FakeClock,
    FakeInbound,
    FakeInboundRequest,
    FakeNotifications,
    FakeSecrets,
    FakeStreamLeases,
    FakeWebhooks,
    Follower,
    until,
)
from webhookd.domain import signing
from webhookd.domain.errors import (
    Invalid,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from webhookd.domain.history import LogPosition
from webhookd.domain.inbound import MAX_MESSAGE_ID_LENGTH, ZoomValidation
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Direction, SignatureScheme, Webhook, WebhookSpec
from webhookd.ports import Topic
from webhookd.services import tailing
from webhookd.services.inbound import Inbound
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.tailing import StreamSlots
from webhookd.services.webhooks import Webhooks

TENANT = Scope("tnt_a", person_id="person_1")
OTHER_TENANT = Scope("tnt_b")
MAX_BODY = 1024
BURST = 3  # requests per webhook at once; then one a second


@pytest.fixture
def inbound_store(webhook_store: FakeWebhooks, clock: FakeClock) -> FakeInbound:
    return FakeInbound(webhook_store, clock)


@pytest.fixture
def inbound(
    inbound_store: FakeInbound,
    secret_store: FakeSecrets,
    webhook_store: FakeWebhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
) -> Inbound:
    return Inbound(
        inbound_store,
        SigningSecrets(secret_store),
        webhook_store,
        notifications,
        rate_per_second=1.0,
        burst=BURST,
        stream_slots=StreamSlots(FakeStreamLeases(), 4),
        max_body_bytes=MAX_BODY,
        clock=clock,
    )


async def inbound_webhook(
    webhooks: Webhooks, scheme: SignatureScheme = SignatureScheme.STANDARD_WEBHOOKS, *, enabled: bool = True
) -> tuple[Webhook, str]:
    spec = WebhookSpec(name="from-crm", url="", direction=Direction.INBOUND, signature_scheme=scheme, enabled=enabled)
    webhook, handed_out, _ = await webhooks.create(TENANT, spec, None)
    return webhook, handed_out


def signed(secret: str, body: bytes, clock: FakeClock, message_id: str = "msg_1") -> FakeInboundRequest:
    """A Standard Webhooks request signed now, as a sender would send it."""
    timestamp = int(clock().timestamp())
    headers = signing.sign_headers(SignatureScheme.STANDARD_WEBHOOKS, [secret], message_id, timestamp, body)
    return FakeInboundRequest(body, {**headers, "Content-Type": "application/json"})


BODY = json.dumps({"type": "contact.updated", "data": {"id": 7}}).encode()


# -- the order of the checks -----------------------------------------------------------------------------


async def test_an_unknown_webhook_is_not_found_before_the_body_is_read(inbound: Inbound) -> None:
    request = FakeInboundRequest(BODY, {})

    with pytest.raises(NotFound):
        await inbound.receive("whk_unknown", request)

    assert request.body_reads == 0


@pytest.mark.parametrize("state", ["outbound", "disabled", "deleted"])
async def test_only_a_live_enabled_inbound_webhook_receives(
    inbound: Inbound, webhooks: Webhooks, clock: FakeClock, state: str
) -> None:
    if state == "outbound":
        webhook, secret, _ = await webhooks.create(
            TENANT, WebhookSpec(name="out", url="https://receiver.example"), None
        )
    else:
        webhook, secret = await inbound_webhook(webhooks, enabled=state != "disabled")
    if state == "deleted":
        await webhooks.delete(TENANT, webhook.id, expected_version=None)
    request = signed(secret, BODY, clock)

    with pytest.raises(NotFound):
        await inbound.receive(webhook.id, request)

    assert request.body_reads == 0


async def test_past_the_rate_limit_a_signed_request_is_refused_and_not_stored(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    for n in range(BURST):
        await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=f"msg_{n}"))
    refused = signed(secret, BODY, clock, message_id="one too many")

    with pytest.raises(ResourceExhausted) as raised:
        await inbound.receive(webhook.id, refused)

    assert raised.value.retry_after_seconds == 1.0
    assert len(inbound_store.receipts) == BURST
    clock.advance(timedelta(seconds=1))
    await inbound.receive(webhook.id, refused)
    assert [stored.receipt.message_id for stored in inbound_store.receipts][-1] == "one too many"


async def test_refusals_draw_from_a_bucket_of_their_own_and_past_it_are_answered_alike_unrecorded(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    refusals = []
    for _ in range(BURST + 2):
        with pytest.raises(Unauthenticated) as raised:
            await inbound.receive(
                webhook.id, signed("whsec_" + "bm90LXRoZS1zZWNyZXQtYXQtYWxsLTMyLWJ5dGVzIQ==", BODY, clock)
            )
        refusals.append(raised.value)

    for n in range(BURST):
        await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=f"msg_{n}"))

    assert {(error.message, error.reason) for error in refusals} == {(refusals[0].message, refusals[0].reason)}
    assert [stored.receipt.accepted for stored in inbound_store.receipts] == [False] * BURST + [True] * BURST
    assert notifications.count(Topic.ATTEMPTS) == 2 * BURST


async def test_a_body_over_the_limit_is_refused_and_not_recorded(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)

    with pytest.raises(PayloadTooLarge):
        await inbound.receive(webhook.id, signed(secret, b"x" * (MAX_BODY + 1), clock))

    assert inbound_store.receipts == []


async def test_a_bad_signature_is_recorded_without_its_body_and_unauthenticated(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, _ = await inbound_webhook(webhooks)
    forged = signed("whsec_" + "Zm9yZ2VkLWZvcmdlZC1mb3JnZWQtZm9yZ2VkLTMy", BODY, clock)

    with pytest.raises(Unauthenticated) as raised:
        await inbound.receive(webhook.id, forged)

    assert raised.value.reason == "SIGNATURE_REJECTED"
    [stored] = inbound_store.receipts
    receipt = stored.receipt
    assert (receipt.accepted, receipt.body, receipt.reason, receipt.http_status) == (False, None, "bad_signature", 401)
    assert notifications.count(Topic.ATTEMPTS) == 1  # a log line,
    assert notifications.count(Topic.INBOUND) == 0  # but nothing for consumers


async def test_a_stale_timestamp_is_rejected(inbound: Inbound, webhooks: Webhooks, clock: FakeClock) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    request = signed(secret, BODY, clock)
    clock.advance(timedelta(minutes=6))

    with pytest.raises(Unauthenticated, match="stale_timestamp"):
        await inbound.receive(webhook.id, request)


@pytest.mark.parametrize(
    ("repeated", "rejected"),
    [({"webhook-signature", "accept"}, True), ({"accept", "x-forwarded-for"}, False)],
    ids=["a-signature-header", "headers-no-scheme-reads"],
)
async def test_a_repeated_header_the_scheme_reads_rejects_the_request_however_good_its_copies(
    inbound: Inbound, webhooks: Webhooks, clock: FakeClock, repeated: set[str], rejected: bool
) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    request = signed(secret, BODY, clock)
    request.repeated = frozenset(repeated)

    if rejected:
        with pytest.raises(Unauthenticated, match="repeated_headers"):
            await inbound.receive(webhook.id, request)
    else:
        assert (await inbound.receive(webhook.id, request)).receipt_id


async def test_a_twilio_signature_covers_the_callback_url_with_the_query_string_sent(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks
) -> None:
    """Twilio signs the URL it calls: the callback URL handed out, plus any query string the account
    added to it, which only the request carries."""
    token = "0123456789abcdef0123456789abcdef"
    spec = WebhookSpec(name="sms", url="", direction=Direction.INBOUND, signature_scheme=SignatureScheme.TWILIO)
    webhook, _, _ = await webhooks.create(TENANT, spec, token)
    body = b"MessageSid=SM1&Body=hi"
    signature = RequestValidator(token).compute_signature(
        f"{webhook.spec.url}?tag=eu", {"MessageSid": "SM1", "Body": "hi"}
    )
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}

    received = await inbound.receive(webhook.id, FakeInboundRequest(body, headers, query="tag=eu"))
    assert received.twiml  # answered as Twilio reads answers
    with pytest.raises(Unauthenticated):
        await inbound.receive(webhook.id, FakeInboundRequest(body, headers, query="tag=us"))

    assert [stored.receipt.accepted for stored in inbound_store.receipts] == [True, False]


def zoom_request(token: str, body: bytes, clock: FakeClock) -> FakeInboundRequest:
    """Signed as Zoom signs: `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    timestamp = str(int(clock().timestamp()))
    digest = hmac.new(token.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "x-zm-signature": f"v0={digest}",
        "x-zm-request-timestamp": timestamp,
        "content-type": "application/json",
    }
    return FakeInboundRequest(body, headers)


async def test_zooms_url_validation_is_stored_and_answered_under_the_token_that_signed_it(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    """Zoom checks an endpoint when it is set up and every 72 hours. Once its Secret Token is
    regenerated and rotated in with an overlap, a check signed with either token is answered with that
    token's HMAC, the one Zoom compares."""
    old_token, new_token = "q4Xw9LmT2vRb7NcK1sYp0A", "n3W5ecr3tT0kenFromZoom"
    spec = WebhookSpec(name="meetings", url="", direction=Direction.INBOUND, signature_scheme=SignatureScheme.ZOOM)
    webhook, _, _ = await webhooks.create(TENANT, spec, old_token)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=new_token)
    plain = "qgg8vlvZRS6UYooatFL8Aw"
    check = json.dumps({"payload": {"plainToken": plain}, "event": "endpoint.url_validation"}).encode()

    for token in (new_token, old_token):
        received = await inbound.receive(webhook.id, zoom_request(token, check, clock))
        encrypted = hmac.new(token.encode(), plain.encode(), hashlib.sha256).hexdigest()
        assert received.zoom_validation == ZoomValidation(plain, encrypted)
    event = json.dumps({"event": "meeting.started", "payload": {"object": {"id": "85746065"}}}).encode()
    received = await inbound.receive(webhook.id, zoom_request(new_token, event, clock))
    with pytest.raises(Unauthenticated):
        await inbound.receive(webhook.id, zoom_request("not-the-secret-token-22", check, clock))

    assert received.zoom_validation is None and received.challenge is None and not received.twiml
    assert [(stored.receipt.event_type, stored.receipt.accepted) for stored in inbound_store.receipts] == [
        ("endpoint.url_validation", True),
        ("endpoint.url_validation", True),
        ("meeting.started", True),
        ("endpoint.url_validation", False),
    ]


async def test_metas_subscription_check_is_answered_only_by_a_meta_webhook_and_stores_nothing(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks
) -> None:
    spec = WebhookSpec(name="whatsapp", url="", direction=Direction.INBOUND, signature_scheme=SignatureScheme.META)
    meta, _, _ = await webhooks.create(TENANT, spec, "6f1d2c3b4a5e6f708192a3b4c5d6e7f8")
    other, _ = await inbound_webhook(webhooks)
    check = f"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={meta.id}"

    for _ in range(BURST + 1):  # from no bucket: anyone has the Verify Token, the id in the URL
        assert await inbound.confirm_subscription(meta.id, check) == "1158201444"
    with pytest.raises(PermissionDenied):
        await inbound.confirm_subscription(meta.id, check.replace(meta.id, other.id))
    with pytest.raises(NotFound):
        await inbound.confirm_subscription(other.id, check.replace(meta.id, other.id))
    with pytest.raises(NotFound):
        await inbound.confirm_subscription("whk_01JD0000000000000000000000", check)
    assert inbound_store.receipts == []
    for n in range(BURST):  # the sender's notifications still come in, a whole burst of them
        notification = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": str(n)}]}).encode()
        app_secret = hmac.new(b"6f1d2c3b4a5e6f708192a3b4c5d6e7f8", notification, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={app_secret}"}
        await inbound.receive(meta.id, FakeInboundRequest(notification, headers))
    assert [stored.receipt.accepted for stored in inbound_store.receipts] == [True] * BURST


async def test_a_signed_request_is_stored_and_wakes_the_log_and_the_consumers(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)

    received = await inbound.receive(webhook.id, signed(secret, BODY, clock))

    [stored] = inbound_store.receipts
    assert received.receipt_id == stored.id and not received.duplicate
    assert (stored.receipt.body, stored.receipt.event_type, stored.receipt.message_id) == (
        BODY,
        "contact.updated",
        "msg_1",
    )
    assert (stored.receipt.received_at, stored.receipt.http_status) == (clock(), 200)
    assert notifications.count(Topic.ATTEMPTS) == notifications.count(Topic.INBOUND) == 1


async def test_a_github_style_webhook_verifies_x_hub_signature_256(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks, SignatureScheme.HMAC_SHA256)
    signature = signing.sign_headers(SignatureScheme.HMAC_SHA256, [secret], "ignored", 0, BODY)
    request = FakeInboundRequest(
        BODY, {"X-Hub-Signature-256": signature["X-Hub-Signature-256"], "X-GitHub-Delivery": "gh-1"}
    )

    await inbound.receive(webhook.id, request)

    assert inbound_store.receipts[0].receipt.message_id == "gh-1"


async def test_the_previous_secret_still_verifies_during_a_rotations_overlap(
    inbound: Inbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, old_secret = await inbound_webhook(webhooks)
    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)

    assert not (await inbound.receive(webhook.id, signed(old_secret, BODY, clock))).duplicate
    clock.advance(timedelta(hours=1))
    with pytest.raises(Unauthenticated):
        await inbound.receive(webhook.id, signed(old_secret, BODY, clock, message_id="msg_2"))


async def test_after_a_rotation_back_to_an_earlier_secret_the_one_it_replaced_verifies_during_the_overlap(
    inbound: Inbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, first = await inbound_webhook(webhooks)
    await inbound.receive(webhook.id, signed(first, BODY, clock, message_id="msg_1"))  # its record is kept
    replaced = (
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(0), signing_secret=None)
    ).signing_secret
    await inbound.receive(webhook.id, signed(replaced, BODY, clock, message_id="msg_2"))

    await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=first)

    # The sender may not have the first secret back yet: for the overlap, the one it replaced still verifies.
    assert not (await inbound.receive(webhook.id, signed(replaced, BODY, clock, message_id="msg_3"))).duplicate


async def test_a_rotation_that_vault_carried_out_after_answering_unavailable_leaves_the_senders_secret(
    inbound: Inbound, webhooks: Webhooks, secret_store: FakeSecrets, clock: FakeClock
) -> None:
    """The caller was told UNAVAILABLE, so the sender was never given the new secret; the row still
    names the old one, which keeps verifying past the overlap that lost rotation wrote."""
    webhook, old_secret = await inbound_webhook(webhooks)
    secret_store.answers_late = True
    with pytest.raises(Unavailable):
        await webhooks.rotate_secret(TENANT, webhook.id, overlap=timedelta(hours=1), signing_secret=None)
    secret_store.answers_late = False
    clock.advance(timedelta(hours=2))

    assert not (await inbound.receive(webhook.id, signed(old_secret, BODY, clock))).duplicate


@pytest.mark.parametrize(
    ("created", "changed"),
    [
        (SignatureScheme.STRIPE, SignatureScheme.STANDARD_WEBHOOKS),  # took one Standard Webhooks cannot decode
        (SignatureScheme.STANDARD_WEBHOOKS, SignatureScheme.STRIPE),  # Stripe never had webhookd's secret
        (SignatureScheme.STRIPE, SignatureScheme.SHOPIFY),  # nor Shopify Stripe's
    ],
)
async def test_the_scheme_cannot_change_to_or_from_one_whose_sender_issues_the_secret(
    webhooks: Webhooks, created: SignatureScheme, changed: SignatureScheme
) -> None:
    spec = WebhookSpec(name="from-crm", url="", direction=Direction.INBOUND, signature_scheme=created)
    chosen = "whsec_issued-by-the-sender_0123" if created.secret_from_sender else None
    webhook, _, _ = await webhooks.create(TENANT, spec, chosen)

    with pytest.raises(Invalid) as raised:
        await webhooks.update(
            TENANT,
            webhook.id,
            expected_version=None,
            paths=["signature_scheme"],
            changes_for=lambda _: {"signature_scheme": changed},
        )

    assert [violation.field for violation in raised.value.violations] == ["webhook.signature_scheme"]
    assert (await webhooks.get(TENANT, webhook.id, fresh=True)).spec.signature_scheme is created


async def test_a_retried_message_is_a_duplicate_stored_once(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, notifications: FakeNotifications, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    await inbound.receive(webhook.id, signed(secret, BODY, clock))
    notifications.notified.clear()

    again = await inbound.receive(webhook.id, signed(secret, BODY, clock))

    assert again.duplicate
    assert len(inbound_store.receipts) == 1
    assert notifications.notified == []


async def test_messages_whose_long_ids_differ_only_past_the_stored_length_are_each_stored(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    """Ids were cut to their first 255 characters, so the second of two such messages was acknowledged
    as a duplicate and lost; a retry of either is still one."""
    webhook, secret = await inbound_webhook(webhooks)
    first_id, second_id = "msg_" + "x" * 300 + "1", "msg_" + "x" * 300 + "2"

    first = await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=first_id))
    second = await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=second_id))
    retry = await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=second_id))

    assert (first.duplicate, second.duplicate, retry.duplicate) == (False, False, True)
    assert len(inbound_store.receipts) == 2
    assert all(len(stored.receipt.message_id or "") <= MAX_MESSAGE_ID_LENGTH for stored in inbound_store.receipts)


async def test_a_rejected_message_does_not_make_its_retry_a_duplicate(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook, secret = await inbound_webhook(webhooks)
    with pytest.raises(Unauthenticated):
        await inbound.receive(webhook.id, FakeInboundRequest(BODY, {"webhook-id": "msg_1"}))

    retried = await inbound.receive(webhook.id, signed(secret, BODY, clock))

    assert not retried.duplicate
    assert [stored.receipt.accepted for stored in inbound_store.receipts] == [False, True]


# -- consumers -------------------------------------------------------------------------------------------


async def receive_three(inbound: Inbound, webhooks: Webhooks, clock: FakeClock) -> Webhook:
    webhook, secret = await inbound_webhook(webhooks)
    for n in range(3):  # within the BURST
        await inbound.receive(webhook.id, signed(secret, BODY, clock, message_id=f"msg_{n}"))
    return webhook


async def read_stream(inbound: Inbound, **arguments: object) -> list[str | None]:
    options: dict[str, object] = {"consumer": None, "webhook_id": None, "after_cursor": None} | arguments
    return [event.message_id async for event in inbound.stream(TENANT, follow=False, **options)]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/ed"])
async def test_consumer_names_are_checked(inbound: Inbound, name: str) -> None:
    with pytest.raises(Invalid) as stream_error:
        await read_stream(inbound, consumer=name)
    with pytest.raises(Invalid) as ack_error:
        await inbound.acknowledge(TENANT, name, (await inbound.cursors(TENANT)).encode(LogPosition(1, 1)))

    assert (
        [v.field for v in stream_error.value.violations]
        == [v.field for v in ack_error.value.violations]
        == ["consumer"]
    )


async def test_a_cursor_that_is_not_one_is_invalid(inbound: Inbound) -> None:
    with pytest.raises(Invalid) as raised:
        await inbound.acknowledge(TENANT, "billing", "not a cursor")

    assert [violation.field for violation in raised.value.violations] == ["cursor"]


async def test_a_consumer_resumes_after_what_it_acknowledged(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    await receive_three(inbound, webhooks, clock)
    second = (await inbound.cursors(TENANT)).encode(inbound_store.receipts[1].position)

    assert await read_stream(inbound, consumer="billing") == ["msg_0", "msg_1", "msg_2"]
    assert await inbound.acknowledge(TENANT, "billing", second) == second
    assert await read_stream(inbound, consumer="billing") == ["msg_2"]
    assert await read_stream(inbound, consumer="audit") == ["msg_0", "msg_1", "msg_2"]


async def test_an_explicit_cursor_wins_over_the_consumers_position(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    await receive_three(inbound, webhooks, clock)
    cursors = await inbound.cursors(TENANT)
    first, second = (cursors.encode(stored.position) for stored in inbound_store.receipts[:2])
    await inbound.acknowledge(TENANT, "billing", second)

    assert await read_stream(inbound, consumer="billing", after_cursor=first) == ["msg_1", "msg_2"]


async def test_acknowledging_never_moves_a_consumer_back(
    inbound: Inbound, inbound_store: FakeInbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    await receive_three(inbound, webhooks, clock)
    cursors = await inbound.cursors(TENANT)
    first, second = (cursors.encode(stored.position) for stored in inbound_store.receipts[:2])
    await inbound.acknowledge(TENANT, "billing", second)

    assert await inbound.acknowledge(TENANT, "billing", first) == second
    assert await read_stream(inbound, consumer="billing") == ["msg_2"]


async def test_another_tenant_reads_none_of_the_receipts_and_not_the_webhook(
    inbound: Inbound, webhooks: Webhooks, clock: FakeClock
) -> None:
    webhook = await receive_three(inbound, webhooks, clock)

    theirs = inbound.stream(OTHER_TENANT, consumer=None, webhook_id=None, after_cursor=None, follow=False)
    of_my_webhook = inbound.stream(OTHER_TENANT, consumer=None, webhook_id=webhook.id, after_cursor=None, follow=False)

    assert [event async for event in theirs] == []
    with pytest.raises(NotFound):
        await anext(of_my_webhook)


async def test_a_following_stream_reads_receipts_as_they_are_accepted(
    inbound: Inbound,
    webhooks: Webhooks,
    notifications: FakeNotifications,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tailing, "RECHECK_SECONDS", 3600.0)  # only a notification can wake the follower
    webhook, secret = await inbound_webhook(webhooks)
    follower = Follower(inbound.stream(TENANT, consumer="billing", webhook_id=None, after_cursor=None, follow=True))
    await until(lambda: notifications.subscribers(Topic.INBOUND) == 1)  # read the (empty) backlog, now waits

    await inbound.receive(webhook.id, signed(secret, BODY, clock))

    assert [event.message_id for event in await follower.read(1)] == ["msg_1"]
    await follower.close()
