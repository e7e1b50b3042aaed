"""Inbound schemes whose sender issues the secret: `stripe`, `slack` and `twilio`, their headers
cross-checked with Stripe's, Slack's and Twilio's own Python libraries, and `shopify` and `zoom`, as
Shopify documents it and as Zoom's webhook-sample checks it. Also what identifies a message and its type
for each scheme, and the rules for these schemes' secrets and directions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable

import pytest
import stripe
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from webhookd.domain.errors import Invalid, PermissionDenied
from webhookd.domain.inbound import SenderMessage, ZoomValidation, meta_challenge, read_message, zoom_validation
from webhookd.domain.signing import SignatureError, new_signing_secret, sign_headers, validate_secret, verify
from webhookd.domain.validation import validate_spec
from webhookd.domain.webhooks import Direction, SignatureScheme, WebhookSpec

STRIPE = SignatureScheme.STRIPE
SHOPIFY = SignatureScheme.SHOPIFY
SLACK = SignatureScheme.SLACK
TWILIO = SignatureScheme.TWILIO
ZOOM = SignatureScheme.ZOOM
GITLAB = SignatureScheme.GITLAB
META = SignatureScheme.META
# As the Stripe dashboard shows an endpoint's secret, and as `stripe listen` prints one (70 bytes).
STRIPE_SECRET = "whsec_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuV"
STRIPE_CLI_SECRET = "whsec_" + "0123456789abcdef" * 4
SHOPIFY_SECRET = "shpss_0123456789abcdef0123456789abcdef"
EVENT = json.dumps({"id": "evt_1Q2w3E", "object": "event", "type": "payment_intent.succeeded"}).encode()
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def assert_each_rejected(
    scheme: SignatureScheme,
    secrets: list[str],
    body: bytes,
    now: int,
    cases: list[tuple[dict[str, str], str]],
) -> None:
    """Each case's headers are refused for `body`, with the case's reason."""
    for headers, reason in cases:
        with pytest.raises(SignatureError) as rejected:
            verify(scheme, secrets, headers, body, now)
        assert rejected.value.reason == reason, headers


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


# Each header is made as its case runs (from the time then): one made as the suite is collected would
# be stale by the time a long run reaches it.
@pytest.mark.parametrize(
    ("make_header", "reason"),
    [
        (lambda: None, SignatureError.MISSING_HEADERS),
        (lambda: "v1=" + "0" * 64, SignatureError.BAD_TIMESTAMP),
        (lambda: "t=soon," + "v1=" + "0" * 64, SignatureError.BAD_TIMESTAMP),
        (lambda: stripe_header(EVENT, STRIPE_SECRET, at=int(time.time()) - 600), SignatureError.STALE_TIMESTAMP),
        (lambda: stripe_header(EVENT, "whsec_" + "X" * 32), SignatureError.BAD_SIGNATURE),
        (lambda: stripe_header(EVENT + b" ", STRIPE_SECRET), SignatureError.BAD_SIGNATURE),
        (lambda: f"t={int(time.time())},v1=not-hex", SignatureError.BAD_SIGNATURE),
    ],
    ids=["missing", "no-time", "time-not-a-number", "stale", "wrong-secret", "other-body", "not-hex"],
)
def test_a_stripe_request_not_signed_right_is_rejected(make_header: Callable[[], str | None], reason: str) -> None:
    header = make_header()
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
    for scheme in (STRIPE, SHOPIFY, SLACK, TWILIO, ZOOM, GITLAB, META):
        with pytest.raises(ValueError):
            sign_headers(scheme, [STRIPE_SECRET], "msg_1", int(time.time()), EVENT)
        with pytest.raises(ValueError):
            new_signing_secret(scheme)


def test_a_secret_the_sender_issued_is_taken_as_it_is() -> None:
    assert validate_secret(STRIPE_CLI_SECRET, STRIPE) is None
    assert validate_secret(SHOPIFY_SECRET, SHOPIFY) is None
    assert validate_secret("0123456789abcdef0123456789abcdef", SHOPIFY) is None
    assert validate_secret(ZOOM_SECRET, ZOOM) is None  # 22 bytes: 16 random ones, base64url
    assert validate_secret("too-short", STRIPE) == "the secret must be 16 to 128 bytes long, not 9"
    # A secret a caller may choose still needs 24 bytes.
    assert validate_secret(ZOOM_SECRET) == "the secret must be 24 to 64 bytes long, not 22"
    assert validate_secret("whsec_ with space and more bytes", STRIPE) == "must not contain whitespace"


def test_each_scheme_finds_its_senders_message_id_and_event_type() -> None:
    github = {"x-github-delivery": "72d3162e", "x-github-event": "push"}
    shopify = {"x-shopify-webhook-id": "b54557e4", "x-shopify-topic": "orders/create"}
    typed = b'{"type": "order.paid"}'
    slack_event = b'{"type": "event_callback", "event_id": "Ev08MFMKH6", "event": {"type": "app_mention"}}'

    assert read_message(STRIPE, {}, EVENT, JSON) == SenderMessage("evt_1Q2w3E", "payment_intent.succeeded")
    assert read_message(SHOPIFY, shopify, b"{}", JSON) == SenderMessage("b54557e4", "orders/create")
    assert read_message(SLACK, {}, slack_event, JSON) == SenderMessage("Ev08MFMKH6", "app_mention")
    twilio = {"i-twilio-idempotency-token": "a5c8fd3e-4b1c"}
    assert read_message(TWILIO, twilio, b"MessageSid=SM1&Body=hi", FORM) == SenderMessage("a5c8fd3e-4b1c", "")
    assert read_message(SignatureScheme.HMAC_SHA256, github, typed, JSON) == SenderMessage("72d3162e", "push")
    standard = SignatureScheme.STANDARD_WEBHOOKS
    assert read_message(standard, {"webhook-id": "msg_1"}, typed, JSON) == SenderMessage("msg_1", "order.paid")
    assert read_message(STRIPE, {}, b"not json", "text/plain") == SenderMessage(None, "")
    assert read_message(STRIPE, {}, b"[]", JSON) == SenderMessage(None, "")


def test_slacks_url_verification_carries_the_challenge_to_answer_with() -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps({"token": "t", "challenge": challenge, "type": "url_verification"}).encode()
    assert read_message(SLACK, {}, body, JSON) == SenderMessage(None, "url_verification", challenge)
    assert read_message(STRIPE, {}, body, JSON).challenge is None  # only Slack's handshake is answered


def test_a_challenge_no_answer_can_carry_is_not_one() -> None:
    """JSON may spell a lone surrogate, which no UTF-8 answer can hold: the handshake is then stored
    like any request, and answered without it."""
    slack = b'{"type": "url_verification", "challenge": "\\ud800"}'
    zoom = b'{"event": "endpoint.url_validation", "payload": {"plainToken": "a\\udfff"}}'
    assert read_message(SLACK, {}, slack, JSON) == SenderMessage(None, "url_verification")
    assert read_message(ZOOM, {}, zoom, JSON) == SenderMessage(None, "endpoint.url_validation")


def test_a_challenge_longer_than_an_answer_carries_is_not_one_rather_than_cut() -> None:
    """A cut challenge, or the HMAC of one, is a wrong answer given as a right one."""
    long = "p" * 257
    slack = json.dumps({"type": "url_verification", "challenge": long}).encode()
    zoom = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": long}}).encode()
    assert read_message(SLACK, {}, slack, JSON).challenge is None
    assert read_message(ZOOM, {}, zoom, JSON).challenge is None
    longest = json.dumps({"type": "url_verification", "challenge": long[1:]}).encode()
    assert read_message(SLACK, {}, longest, JSON).challenge == long[1:]


def test_slacks_form_posts_are_typed_by_the_interaction_or_as_a_slash_command() -> None:
    interaction = {"type": "block_actions", "trigger_id": "1337.42", "actions": [{"action_id": "approve"}]}
    clicked = urllib.parse.urlencode({"payload": json.dumps(interaction)}).encode()
    command = urllib.parse.urlencode({"command": "/deploy", "text": "api v2", "trigger_id": "1338.43"}).encode()

    assert read_message(SLACK, {}, clicked, FORM) == SenderMessage(None, "block_actions")
    assert read_message(SLACK, {}, command, f"{FORM}; charset=utf-8") == SenderMessage(None, "slash_command")
    assert read_message(SLACK, {}, b"ssl_check=1&token=x", FORM) == SenderMessage(None, "")
    assert read_message(SLACK, {}, b"payload=not-json", FORM) == SenderMessage(None, "")
    assert read_message(SLACK, {}, b"payload=\xff", FORM) == SenderMessage(None, "")
    assert read_message(SLACK, {}, command, "text/plain") == SenderMessage(None, "")


def test_where_zoom_and_slacks_forms_name_no_id_the_signature_over_time_and_body_is_one() -> None:
    """A request replayed within the 5 minutes its time is taken is then a duplicate."""
    signed = {"x-slack-signature": "v0=a1b2", "x-zm-signature": "v0=c3d4"}
    command = urllib.parse.urlencode({"command": "/deploy", "text": "api v2"}).encode()
    event = b'{"event_id": "Ev08MFMKH6", "event": {"type": "app_mention"}}'
    assert read_message(SLACK, signed, command, FORM).message_id == "v0=a1b2"
    assert read_message(SLACK, signed, event, JSON).message_id == "Ev08MFMKH6"  # its retries carry it
    assert read_message(ZOOM, signed, b'{"event": "meeting.started"}', JSON).message_id == "v0=c3d4"


SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_headers(body: bytes, *, at: int | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    """Signed by Slack's own SDK (slack_sdk's SignatureVerifier)."""
    timestamp = str(int(time.time()) if at is None else at)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp}


def test_a_request_slacks_sdk_signed_is_accepted_and_others_rejected() -> None:
    body = b'{"type": "event_callback", "event_id": "Ev1"}'
    now = int(time.time())
    verify(SLACK, [SLACK_SECRET], slack_headers(body), body, now)
    assert_each_rejected(
        SLACK,
        [SLACK_SECRET],
        body,
        now,
        [
            ({}, SignatureError.MISSING_HEADERS),
            (slack_headers(body, at=now - 600), SignatureError.STALE_TIMESTAMP),
            (slack_headers(body, secret="another-secret-of-thirty-two-byte"), SignatureError.BAD_SIGNATURE),
            (slack_headers(body) | {"X-Slack-Signature": "v1=00"}, SignatureError.BAD_SIGNATURE),
        ],
    )


# A Secret Token as Zoom shows one: 22 characters.
ZOOM_SECRET = "q4Xw9LmT2vRb7NcK1sYp0A"
PLAIN_TOKEN = "qgg8vlvZRS6UYooatFL8Aw"
URL_VALIDATION = json.dumps(
    {"payload": {"plainToken": PLAIN_TOKEN}, "event_ts": 1654503849680, "event": "endpoint.url_validation"},
    separators=(",", ":"),
).encode()


def zoom_headers(body: bytes, *, at: int | None = None, secret: str = ZOOM_SECRET) -> dict[str, str]:
    """Signed as Zoom signs, the check of Zoom's own webhook-sample written in Python: `v0=` and the hex
    HMAC-SHA256 of `v0:{x-zm-request-timestamp}:{body}` under the Secret Token."""
    timestamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-zm-signature": f"v0={digest}", "x-zm-request-timestamp": timestamp}


def test_a_request_signed_as_zoom_signs_is_accepted_and_others_rejected() -> None:
    body = b'{"event":"meeting.started","event_ts":1626230691572,"payload":{"account_id":"AAAAAABBBB"}}'
    now = int(time.time())
    verify(ZOOM, [ZOOM_SECRET], zoom_headers(body), body, now)
    assert_each_rejected(
        ZOOM,
        [ZOOM_SECRET],
        body,
        now,
        [
            ({}, SignatureError.MISSING_HEADERS),
            (slack_headers(body, secret=ZOOM_SECRET), SignatureError.MISSING_HEADERS),  # Slack's names are not Zoom's
            (zoom_headers(body, at=now - 600), SignatureError.STALE_TIMESTAMP),
            (zoom_headers(body, secret="another-secret-token-22"), SignatureError.BAD_SIGNATURE),
            (zoom_headers(body) | {"x-zm-signature": "v1=00"}, SignatureError.BAD_SIGNATURE),
            (zoom_headers(body + b" "), SignatureError.BAD_SIGNATURE),
        ],
    )


def test_zooms_url_validation_carries_its_plain_token_and_its_events_their_type() -> None:
    event = b'{"event":"recording.completed","event_ts":1626230691572,"payload":{}}'
    assert read_message(ZOOM, {}, URL_VALIDATION, JSON) == SenderMessage(None, "endpoint.url_validation", PLAIN_TOKEN)
    assert read_message(ZOOM, {}, event, JSON) == SenderMessage(None, "recording.completed")
    assert read_message(SLACK, {}, URL_VALIDATION, JSON).challenge is None  # only Zoom's handshake has a plainToken
    no_token = b'{"event":"endpoint.url_validation","payload":"qgg8"}'
    assert read_message(ZOOM, {}, no_token, JSON) == SenderMessage(None, "endpoint.url_validation")


def test_zooms_url_validation_is_answered_under_the_secret_zoom_signed_with() -> None:
    """The encryptedToken Zoom checks: hex HMAC-SHA256 of the plainToken under the Secret Token, the
    one that signed the request while a rotation has two."""
    now = int(time.time())
    old_secret, new_secret = ZOOM_SECRET, "n3W5ecr3tT0kenFromZoom"
    for signer in (old_secret, new_secret):
        headers = {name.lower(): value for name, value in zoom_headers(URL_VALIDATION, secret=signer).items()}
        answer = zoom_validation(PLAIN_TOKEN, [new_secret, old_secret], headers, URL_VALIDATION, now)
        expected = hmac.new(signer.encode(), PLAIN_TOKEN.encode(), hashlib.sha256).hexdigest()
        assert answer == ZoomValidation(PLAIN_TOKEN, expected)
    assert zoom_validation(None, [old_secret], {}, URL_VALIDATION, now) is None


GITLAB_TOKEN = "glwt-7f3c9a1e5b2d8c4f6a0e"  # a hook's secret token, as its owner chose it in GitLab


def test_gitlabs_token_is_compared_as_it_is_sent() -> None:
    """GitLab signs nothing: X-Gitlab-Token carries the hook's secret token itself."""
    body = b'{"object_kind": "push"}'
    now = int(time.time())
    verify(GITLAB, [GITLAB_TOKEN], {"X-Gitlab-Token": GITLAB_TOKEN}, body, now)
    verify(GITLAB, ["a-newer-token-from-gitlab", GITLAB_TOKEN], {"x-gitlab-token": GITLAB_TOKEN}, body, now)
    # A token of any characters GitLab takes: sent as UTF-8, handed over decoded as Latin-1.
    chosen = "tökentökentökentöken"
    verify(GITLAB, [chosen], {"x-gitlab-token": chosen.encode().decode("latin-1")}, body, now)
    assert_each_rejected(
        GITLAB,
        [GITLAB_TOKEN],
        body,
        now,
        [
            ({}, SignatureError.MISSING_HEADERS),
            ({"X-Gitlab-Token": ""}, SignatureError.MISSING_HEADERS),
            ({"X-Gitlab-Token": GITLAB_TOKEN[:-1]}, SignatureError.BAD_SIGNATURE),
            ({"X-Gitlab-Token": GITLAB_TOKEN + " "}, SignatureError.BAD_SIGNATURE),
            ({"X-Gitlab-Token": GITLAB_TOKEN.upper()}, SignatureError.BAD_SIGNATURE),
        ],
    )


def test_gitlabs_requests_are_identified_by_its_idempotency_key_and_typed_by_its_event_header() -> None:
    push = b'{"object_kind": "push", "event_name": "push", "ref": "refs/heads/main"}'
    keyed = {"idempotency-key": "908a6d9e-45fd", "x-gitlab-event-uuid": "13792a34-cac6", "x-gitlab-event": "Push Hook"}
    # Before GitLab 17.4 only the event's UUID, which every event set off by one API call shares: no id.
    older = {"x-gitlab-event-uuid": "13792a34-cac6"}

    assert read_message(GITLAB, keyed, push, JSON) == SenderMessage("908a6d9e-45fd", "Push Hook")
    assert read_message(GITLAB, older, push, JSON) == SenderMessage(None, "push")
    assert read_message(GITLAB, {}, b"not json", JSON) == SenderMessage(None, "")
    # GitLab's signing token is Standard Webhooks (webhook-id is its Idempotency-Key); the type is its header's.
    signed = {"webhook-id": "908a6d9e-45fd", "x-gitlab-event": "Push Hook"}
    assert read_message(SignatureScheme.STANDARD_WEBHOOKS, signed, push, JSON) == SenderMessage(
        "908a6d9e-45fd", "Push Hook"
    )


META_APP_SECRET = "6f1d2c3b4a5e6f708192a3b4c5d6e7f8"  # an App Secret: 32 hex characters
WHATSAPP_MESSAGE = json.dumps(
    {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {"messages": []}}]}],
    }
).encode()


def meta_signature(body: bytes, secret: str = META_APP_SECRET) -> dict[str, str]:
    """As Meta signs: `sha256=` and the hex HMAC-SHA256 of the body under the App Secret."""
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_a_request_signed_as_meta_signs_is_accepted_and_others_rejected() -> None:
    now = int(time.time())
    verify(META, [META_APP_SECRET], meta_signature(WHATSAPP_MESSAGE), WHATSAPP_MESSAGE, now)
    assert_each_rejected(
        META,
        [META_APP_SECRET],
        WHATSAPP_MESSAGE,
        now,
        [
            ({}, SignatureError.MISSING_HEADERS),
            ({"X-Hub-Signature": "sha1=00"}, SignatureError.BAD_SIGNATURE),  # Meta's SHA-1 one is not enough
            (meta_signature(WHATSAPP_MESSAGE, "another-app-secret-of-32-bytes!!"), SignatureError.BAD_SIGNATURE),
            (meta_signature(WHATSAPP_MESSAGE + b" "), SignatureError.BAD_SIGNATURE),
        ],
    )


def test_bitbuckets_x_hub_signature_verifies_as_hmac_sha256_and_its_event_key_types_it() -> None:
    """Bitbucket (Cloud and Data Center) sends `sha256=<hex>` of the body under X-Hub-Signature, the
    name under which GitHub sends its SHA-1 signature, which is not taken."""
    secret, body, now = "bitbucket-webhook-secret-1", b'{"push": {"changes": []}}', int(time.time())
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    verify(SignatureScheme.HMAC_SHA256, [secret], {"X-Hub-Signature": f"sha256={digest}"}, body, now)
    assert_each_rejected(
        SignatureScheme.HMAC_SHA256,
        [secret],
        body,
        now,
        [
            ({"X-Hub-Signature": f"sha1={sha1}"}, SignatureError.BAD_SIGNATURE),
            ({"X-Hub-Signature": f"sha256={digest[:-2]}00"}, SignatureError.BAD_SIGNATURE),
        ],
    )
    bitbucket = {"x-event-key": "repo:push", "x-request-uuid": "1c7d7f0e"}
    both = {"x-github-event": "push", "x-event-key": "repo:push"}
    assert read_message(SignatureScheme.HMAC_SHA256, bitbucket, body, JSON) == SenderMessage(None, "repo:push")
    assert read_message(SignatureScheme.HMAC_SHA256, both, body, JSON).event_type == "push"


def test_metas_notifications_are_typed_by_object_and_the_first_changes_field() -> None:
    messenger = b'{"object": "page", "entry": [{"id": "1", "messaging": [{"message": {"text": "hi"}}]}]}'
    assert read_message(META, {}, WHATSAPP_MESSAGE, JSON).event_type == "whatsapp_business_account.messages"
    assert read_message(META, {}, messenger, JSON).event_type == "page"
    for odd, event_type in [
        (b'{"entry": [{"changes": [{"field": "feed"}]}]}', ""),
        (b'{"object": "page", "entry": "x"}', "page"),
        (b'{"object": "page", "entry": [{"changes": [7]}]}', "page"),
        (b"[]", ""),
    ]:
        assert read_message(META, {}, odd, JSON).event_type == event_type


def test_metas_notifications_are_known_by_their_bodys_digest() -> None:
    """Meta keeps no id across retries and signs no time: a retry, or a replay, is the same body."""
    digest = "sha256:" + hashlib.sha256(WHATSAPP_MESSAGE).hexdigest()
    assert read_message(META, {}, WHATSAPP_MESSAGE, JSON).message_id == digest
    assert read_message(META, {}, WHATSAPP_MESSAGE + b" ", JSON).message_id != digest


WEBHOOK_ID = "whk_01JD0000000000000000000000"


def subscription(**fields: str) -> str:
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": WEBHOOK_ID} | fields
    return urllib.parse.urlencode(query)


def test_metas_subscription_check_is_answered_with_its_challenge_when_the_verify_token_is_the_webhooks_id() -> None:
    assert meta_challenge(WEBHOOK_ID, subscription()) == "1158201444"
    assert meta_challenge(WEBHOOK_ID, subscription(**{"hub.challenge": "c" * 256})) == "c" * 256

    with pytest.raises(PermissionDenied):
        meta_challenge(WEBHOOK_ID, subscription(**{"hub.verify_token": "whk_01JD0000000000000000000001"}))
    with pytest.raises(PermissionDenied):
        meta_challenge(WEBHOOK_ID, subscription(**{"hub.verify_token": "\xe9"}))
    for fields, field in [
        ({"hub.mode": "unsubscribe"}, "hub.mode"),
        ({"hub.challenge": ""}, "hub.challenge"),
        ({"hub.challenge": "c" * 257}, "hub.challenge"),
        ({"hub.challenge": "<script>alert(1)</script>"}, "hub.challenge"),  # echoed back: nothing to run
        ({"hub.challenge": "1158 201444"}, "hub.challenge"),
    ]:
        with pytest.raises(Invalid) as refused:
            meta_challenge(WEBHOOK_ID, subscription(**fields))
        assert [violation.field for violation in refused.value.violations] == [field]
    with pytest.raises(Invalid) as refused:
        meta_challenge(WEBHOOK_ID, "")
    assert [violation.field for violation in refused.value.violations] == ["hub.mode", "hub.challenge"]


TWILIO_TOKEN = "12345678901234567890123456789012"  # an Auth Token: 32 hex characters
CALLBACK = "https://hooks.example.com/api/v1/integration/inbound/whk_01JD0000000000000000000000?source=sms"
SMS = {"MessageSid": "SM1234", "From": "+14158141829", "To": "+15017122661", "Body": "Hi & bye", "MediaUrl0": ""}


def twilio_form(params: dict[str, str], *, url: str = CALLBACK, token: str = TWILIO_TOKEN) -> dict[str, str]:
    """X-Twilio-Signature for a form post, made by Twilio's own RequestValidator."""
    signature = RequestValidator(token).compute_signature(url, params)
    return {"X-Twilio-Signature": signature, "Content-Type": f"{FORM}; charset=utf-8"}


def test_a_form_post_twilios_library_signed_is_accepted_with_or_without_the_default_port() -> None:
    body = urllib.parse.urlencode(SMS).encode()
    with_port = CALLBACK.replace("example.com/", "example.com:443/")

    verify(TWILIO, [TWILIO_TOKEN], twilio_form(SMS), body, 0, url=CALLBACK)
    verify(TWILIO, [TWILIO_TOKEN], twilio_form(SMS, url=with_port), body, 0, url=CALLBACK)
    verify(TWILIO, [TWILIO_TOKEN], twilio_form(SMS), body, 0, url=with_port)


def test_a_json_post_is_covered_by_the_body_hash_in_its_url() -> None:
    body = json.dumps({"specversion": "1.0", "type": "com.twilio.messaging.message.delivered"}).encode()
    url = f"{CALLBACK}&bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    assert RequestValidator(TWILIO_TOKEN).validate(url, body.decode(), signature)
    headers = {"X-Twilio-Signature": signature, "Content-Type": JSON}

    verify(TWILIO, [TWILIO_TOKEN], headers, body, 0, url=url)
    with pytest.raises(SignatureError) as altered:
        verify(TWILIO, [TWILIO_TOKEN], headers, body.replace(b"delivered", b"failed"), 0, url=url)
    assert altered.value.reason == SignatureError.BAD_SIGNATURE


def test_a_shared_key_signature_uses_the_hmac_its_settings_header_names() -> None:
    body = urllib.parse.urlencode(SMS).encode()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(CALLBACK, SMS, "HMAC_SHA256")
    settings = {"X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}

    verify(
        TWILIO, [TWILIO_TOKEN], twilio_form(SMS) | {"X-Twilio-Signature": signature} | settings, body, 0, url=CALLBACK
    )
    with pytest.raises(SignatureError):  # the same signature read as SHA-1
        verify(TWILIO, [TWILIO_TOKEN], twilio_form(SMS) | {"X-Twilio-Signature": signature}, body, 0, url=CALLBACK)


def test_a_twilio_request_not_signed_right_is_rejected() -> None:
    body = urllib.parse.urlencode(SMS).encode()
    unknown = {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}
    cases = [
        ({}, body, CALLBACK, SignatureError.MISSING_HEADERS),
        (twilio_form(SMS), body.replace(b"Hi", b"Ho"), CALLBACK, SignatureError.BAD_SIGNATURE),
        (twilio_form(SMS), body, CALLBACK.replace("source=sms", "source=voice"), SignatureError.BAD_SIGNATURE),
        (twilio_form(SMS, token="another-token-of-thirty-two-bytes"), body, CALLBACK, SignatureError.BAD_SIGNATURE),
        (twilio_form(SMS) | unknown, body, CALLBACK, SignatureError.BAD_SIGNATURE),
        # Not a form and no body hash: nothing would cover the body, so it is not taken.
        (twilio_form({}) | {"Content-Type": JSON}, b'{"Body": "forged"}', CALLBACK, SignatureError.BAD_SIGNATURE),
        (twilio_form(SMS), b"Body=\xff", CALLBACK, SignatureError.BAD_SIGNATURE),
        # A body hash spelled outside ASCII (%FF decodes to U+FFFD) is a wrong hash, not a crash.
        (twilio_form(SMS), body, f"{CALLBACK}&bodySHA256=%FF", SignatureError.BAD_SIGNATURE),
    ]
    for headers, sent, url, reason in cases:
        with pytest.raises(SignatureError) as rejected:
            verify(TWILIO, [TWILIO_TOKEN], headers, sent, 0, url=url)
        assert rejected.value.reason == reason


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


NOT_ASCII = "\xe9"  # a header holds any byte; Starlette reads them as Latin-1


@pytest.mark.parametrize(
    ("scheme", "headers"),
    [
        (SignatureScheme.STANDARD_WEBHOOKS, {"webhook-id": "m", "webhook-signature": f"v1,{NOT_ASCII}"}),
        (SignatureScheme.HMAC_SHA256, {"X-Hub-Signature-256": f"sha256={NOT_ASCII}"}),
        (STRIPE, {"Stripe-Signature": f"t={{now}},v1={NOT_ASCII}"}),
        (SHOPIFY, {"X-Shopify-Hmac-Sha256": NOT_ASCII}),
        (SLACK, {"X-Slack-Signature": f"v0={NOT_ASCII}"}),
        (TWILIO, {"X-Twilio-Signature": NOT_ASCII}),
        (ZOOM, {"x-zm-signature": f"v0={NOT_ASCII}"}),
        (GITLAB, {"X-Gitlab-Token": SLACK_SECRET[:-1] + NOT_ASCII}),
        (META, {"X-Hub-Signature-256": f"sha256={NOT_ASCII}"}),
    ],
    ids=lambda value: value.value if isinstance(value, SignatureScheme) else "",
)
def test_a_signature_outside_ascii_is_a_bad_signature_in_every_scheme(
    scheme: SignatureScheme, headers: dict[str, str]
) -> None:
    now = int(time.time())
    timestamps = {
        "webhook-timestamp": str(now),
        "X-Slack-Request-Timestamp": str(now),
        "x-zm-request-timestamp": str(now),
    }
    sent = timestamps | {name: value.replace("{now}", str(now)) for name, value in headers.items()}

    with pytest.raises(SignatureError) as rejected:
        verify(scheme, [SLACK_SECRET], sent, b"", now, url=CALLBACK)

    assert rejected.value.reason == SignatureError.BAD_SIGNATURE
