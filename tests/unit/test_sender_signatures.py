"""Inbound schemes whose sender issues the secret: `stripe`, its headers cross-checked with Stripe's
own Python library, and `shopify`, as Shopify documents it. Also what identifies a message and its
type for each scheme, and the rules for these schemes' secrets and directions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import stripe

from webhookd.domain.errors import Invalid
from webhookd.domain.inbound import event_type_of, message_id_of
from webhookd.domain.signing import SignatureError, new_signing_secret, sign_headers, validate_secret, verify
from webhookd.domain.validation import validate_spec
from webhookd.domain.webhooks import Direction, SignatureScheme, WebhookSpec

STRIPE = SignatureScheme.STRIPE
SHOPIFY = SignatureScheme.SHOPIFY
# As the Stripe dashboard shows an endpoint's secret, and as `stripe listen` prints one (70 bytes).
STRIPE_SECRET = "whsec_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuV"
STRIPE_CLI_SECRET = "whsec_" + "0123456789abcdef" * 4
SHOPIFY_SECRET = "shpss_0123456789abcdef0123456789abcdef"
EVENT = json.dumps({"id": "evt_1Q2w3E", "object": "event", "type": "payment_intent.succeeded"}).encode()
JSON = "application/json"


def stripe_header(body: bytes, *secrets: str, at: int | None = None) -> str:
    """Stripe-Signature as Stripe sends it: the time, then a v1 signature per secret (two while one is
    rolled), and a v0 test-mode signature that is not to be trusted."""
    at = int(time.time()) if at is None else at
    signed = f"{at}.".encode() + body
    v1 = [f"v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}" for secret in secrets]
    return ",".join([f"t={at}", *v1, "v0=" + "0" * 64])


@pytest.mark.parametrize("secret", [STRIPE_SECRET, STRIPE_CLI_SECRET])
def test_a_stripe_signature_stripes_own_library_accepts_is_accepted(secret: str) -> None:
    header = stripe_header(EVENT, secret)
    assert stripe.WebhookSignature.verify_header(EVENT, header, secret, tolerance=300)

    verify(STRIPE, [secret], {"Stripe-Signature": header}, EVENT, int(time.time()))


def test_while_stripe_rolls_a_secret_either_signature_is_accepted() -> None:
    new = "whsec_" + "N" * 32
    header = stripe_header(EVENT, new, STRIPE_SECRET)
    verify(STRIPE, [new], {"stripe-signature": header}, EVENT, int(time.time()))
    verify(STRIPE, [STRIPE_SECRET], {"stripe-signature": header}, EVENT, int(time.time()))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, SignatureError.MISSING_HEADERS),
        ("v1=" + "0" * 64, SignatureError.BAD_TIMESTAMP),
        ("t=soon," + "v1=" + "0" * 64, SignatureError.BAD_TIMESTAMP),
        (stripe_header(EVENT, STRIPE_SECRET, at=int(time.time()) - 600), SignatureError.STALE_TIMESTAMP),
        (stripe_header(EVENT, "whsec_" + "X" * 32), SignatureError.BAD_SIGNATURE),
        (stripe_header(EVENT + b" ", STRIPE_SECRET), SignatureError.BAD_SIGNATURE),
        (f"t={int(time.time())},v1=not-hex", SignatureError.BAD_SIGNATURE),
    ],
)
def test_a_stripe_request_not_signed_right_is_rejected(header: str | None, reason: str) -> None:
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(SignatureError) as rejected:
        verify(STRIPE, [STRIPE_SECRET], headers, EVENT, int(time.time()))
    assert rejected.value.reason == reason


def test_only_stripes_v1_signature_counts_not_its_v0_test_signature() -> None:
    at = int(time.time())
    v0 = hmac.new(STRIPE_SECRET.encode(), f"{at}.".encode() + EVENT, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError):
        verify(STRIPE, [STRIPE_SECRET], {"Stripe-Signature": f"t={at},v0={v0}"}, EVENT, at)


def shopify_header(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_a_shopify_signature_of_the_body_is_accepted_and_a_wrong_one_rejected() -> None:
    body = b'{"id": 820982911946154508, "email": "jon@example.com"}'
    now = int(time.time())
    verify(SHOPIFY, [SHOPIFY_SECRET], {"X-Shopify-Hmac-Sha256": shopify_header(body, SHOPIFY_SECRET)}, body, now)
    for header, reason in [
        ("", SignatureError.MISSING_HEADERS),
        (shopify_header(body + b"!", SHOPIFY_SECRET), SignatureError.BAD_SIGNATURE),
        ("%%not-base64%%", SignatureError.BAD_SIGNATURE),
    ]:
        with pytest.raises(SignatureError) as rejected:
            verify(SHOPIFY, [SHOPIFY_SECRET], {"X-Shopify-Hmac-Sha256": header}, body, now)
        assert rejected.value.reason == reason


def test_webhookd_neither_signs_with_nor_makes_a_secret_for_these_schemes() -> None:
    for scheme in (STRIPE, SHOPIFY):
        with pytest.raises(ValueError):
            sign_headers(scheme, [STRIPE_SECRET], "msg_1", int(time.time()), EVENT)
        with pytest.raises(ValueError):
            new_signing_secret(scheme)


def test_a_secret_the_sender_issued_is_taken_as_it_is() -> None:
    assert validate_secret(STRIPE_CLI_SECRET, STRIPE) is None
    assert validate_secret(SHOPIFY_SECRET, SHOPIFY) is None
    assert validate_secret("0123456789abcdef0123456789abcdef", SHOPIFY) is None
    assert validate_secret("too-short", STRIPE) == "the secret must be 24 to 128 bytes long, not 9"
    assert validate_secret("whsec_ with space and more bytes", STRIPE) == "must not contain whitespace"


def test_each_scheme_finds_its_senders_message_id_and_event_type() -> None:
    github = {"x-github-delivery": "72d3162e", "x-github-event": "push"}
    shopify = {"x-shopify-webhook-id": "b54557e4", "x-shopify-topic": "orders/create"}
    standard = {"webhook-id": "msg_1"}
    typed = b'{"type": "order.paid"}'

    assert (message_id_of(STRIPE, {}, EVENT, JSON), event_type_of(STRIPE, {}, EVENT, JSON)) == (
        "evt_1Q2w3E",
        "payment_intent.succeeded",
    )
    assert (message_id_of(SHOPIFY, shopify, b"{}", JSON), event_type_of(SHOPIFY, shopify, b"{}", JSON)) == (
        "b54557e4",
        "orders/create",
    )
    hub = SignatureScheme.HMAC_SHA256
    assert (message_id_of(hub, github, typed, JSON), event_type_of(hub, github, typed, JSON)) == ("72d3162e", "push")
    plain = SignatureScheme.STANDARD_WEBHOOKS
    assert (message_id_of(plain, standard, typed, JSON), event_type_of(plain, standard, typed, JSON)) == (
        "msg_1",
        "order.paid",
    )
    assert (message_id_of(STRIPE, {}, b"not json", "text/plain"), event_type_of(STRIPE, {}, b"[]", JSON)) == (None, "")


def spec(direction: Direction, scheme: SignatureScheme) -> WebhookSpec:
    url = "https://example.com/hook" if direction is Direction.OUTBOUND else ""
    return WebhookSpec(name="w", direction=direction, url=url, event_types=("*",), signature_scheme=scheme)


def test_these_schemes_are_for_inbound_webhooks_only() -> None:
    assert validate_spec(spec(Direction.INBOUND, STRIPE), allow_insecure_urls=False).signature_scheme is STRIPE
    with pytest.raises(Invalid) as refused:
        validate_spec(spec(Direction.OUTBOUND, SHOPIFY), allow_insecure_urls=False)
    [violation] = refused.value.violations
    assert violation.field == "webhook.signature_scheme"
    assert violation.description.startswith("shopify verifies what Shopify sends: inbound webhooks only")
