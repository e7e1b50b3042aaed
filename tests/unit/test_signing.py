from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from webhookd.domain.inbound import read_message
from webhookd.domain.signing import (
    SignatureError,
    generate_secret,
    sign_headers,
    validate_secret,
    verify,
)
from webhookd.domain.webhooks import SignatureScheme

STANDARD = SignatureScheme.STANDARD_WEBHOOKS
GITHUB = SignatureScheme.HMAC_SHA256
BODY = b'{"type":"rfp.created","data":{"id":"rfp_1","title":"caf\xc3\xa9"}}'
MSG_ID = "msg_01J0000000000000000000000"
RAW_SECRET = "a-plain-text-secret-of-32-bytes!"  # no whsec_ prefix: used as UTF-8 bytes


def _now() -> int:
    return int(time.time())


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


# --- standard-webhooks, cross-checked with the official library ---------------------------------------


def test_official_library_accepts_what_we_sign() -> None:
    secret = generate_secret()
    headers = sign_headers(STANDARD, [secret], MSG_ID, _now(), BODY)
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "rfp.created",
        "data": {"id": "rfp_1", "title": "café"},
    }


def test_official_library_accepts_each_secret_of_a_rotation() -> None:
    new, old = generate_secret(), generate_secret()
    headers = sign_headers(STANDARD, [new, old], MSG_ID, _now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_unprefixed_secret_is_used_as_raw_bytes() -> None:
    headers = sign_headers(STANDARD, [RAW_SECRET], MSG_ID, _now(), BODY)
    Webhook(RAW_SECRET.encode()).verify(BODY, headers)


def test_we_accept_what_the_official_library_signs() -> None:
    secret = generate_secret()
    now = _now()
    signature = Webhook(secret).sign(MSG_ID, _utc(now), BODY.decode())
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    verify(STANDARD, [secret], headers, BODY, now)


def test_we_accept_what_svix_signs_under_its_own_header_names() -> None:
    """Senders built on Svix (Clerk, Resend, ...) sign Standard Webhooks under `svix-*` headers."""
    secret = generate_secret()
    now = _now()
    signature = SvixWebhook(secret).sign(MSG_ID, _utc(now), BODY.decode())
    headers = {"svix-id": MSG_ID, "svix-timestamp": str(now), "svix-signature": signature}
    SvixWebhook(secret).verify(BODY, headers)

    verify(STANDARD, [secret], headers, BODY, now)
    with pytest.raises(SignatureError):
        verify(STANDARD, [secret], headers | {"svix-id": "msg_other"}, BODY, now)
    assert read_message(STANDARD, headers, BODY, "application/json").message_id == MSG_ID


def test_we_accept_the_official_signature_for_a_raw_secret() -> None:
    now = _now()
    signature = Webhook(RAW_SECRET.encode()).sign(MSG_ID, _utc(now), BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(now), "webhook-signature": signature}
    verify(STANDARD, [RAW_SECRET], headers, BODY, now)


def test_standard_headers_have_the_spec_shape() -> None:
    secret = generate_secret()
    headers = sign_headers(STANDARD, [secret], MSG_ID, 1_700_000_000, BODY)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_verify_accepts_any_of_several_verifying_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    now = _now()
    headers = sign_headers(STANDARD, [old], MSG_ID, now, BODY)
    verify(STANDARD, [new, old], headers, BODY, now)


def test_verify_ignores_unknown_signature_versions_and_junk() -> None:
    secret = generate_secret()
    now = _now()
    signed = sign_headers(STANDARD, [secret], MSG_ID, now, BODY)
    signed["webhook-signature"] = "v1a,AAAA v1,not-base64!! garbage " + signed["webhook-signature"]
    verify(STANDARD, [secret], signed, BODY, now)


@pytest.mark.parametrize("dropped", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_standard_header_is_reported(dropped: str) -> None:
    secret = generate_secret()
    now = _now()
    headers = sign_headers(STANDARD, [secret], MSG_ID, now, BODY)
    del headers[dropped]
    with pytest.raises(SignatureError) as caught:
        verify(STANDARD, [secret], headers, BODY, now)
    assert caught.value.reason == "missing_headers"


@pytest.mark.parametrize("timestamp", ["soon", "-5", "1.5e9", "17000000000000000000000"])
def test_malformed_timestamp_is_reported(timestamp: str) -> None:
    secret = generate_secret()
    now = _now()
    headers = sign_headers(STANDARD, [secret], MSG_ID, now, BODY)
    headers["webhook-timestamp"] = timestamp
    with pytest.raises(SignatureError) as caught:
        verify(STANDARD, [secret], headers, BODY, now)
    assert caught.value.reason == "bad_timestamp"


@pytest.mark.parametrize(("offset", "reason"), [(-301, "stale_timestamp"), (301, "future_timestamp")])
def test_timestamp_outside_tolerance_is_reported(offset: int, reason: str) -> None:
    secret = generate_secret()
    now = _now()
    headers = sign_headers(STANDARD, [secret], MSG_ID, now + offset, BODY)
    with pytest.raises(SignatureError) as caught:
        verify(STANDARD, [secret], headers, BODY, now)
    assert caught.value.reason == reason


def test_timestamp_at_the_edge_of_tolerance_is_accepted() -> None:
    secret = generate_secret()
    now = _now()
    for offset in (-300, 300):
        verify(STANDARD, [secret], sign_headers(STANDARD, [secret], MSG_ID, now + offset, BODY), BODY, now)
    late = sign_headers(STANDARD, [secret], MSG_ID, now - 3600, BODY)
    verify(STANDARD, [secret], late, BODY, now, tolerance_seconds=3600)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_any_tampering_breaks_the_standard_signature(tamper: str) -> None:
    secret = generate_secret()
    now = _now()
    headers = sign_headers(STANDARD, [secret], MSG_ID, now, BODY)
    body, secrets = BODY, [secret]
    if tamper == "body":
        body = BODY + b" "
    elif tamper == "id":
        headers["webhook-id"] = "msg_other"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    else:
        secrets = [generate_secret()]
    with pytest.raises(SignatureError) as caught:
        verify(STANDARD, secrets, headers, body, now)
    assert caught.value.reason == "bad_signature"


# --- hmac-sha256 (GitHub style) ------------------------------------------------------------------------


def _github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_github_header_matches_an_independent_hmac_of_the_body_with_the_whole_secret() -> None:
    secret = generate_secret()  # the whsec_ text itself is the key, as GitHub does
    headers = sign_headers(GITHUB, [secret], MSG_ID, 1_700_000_000, BODY)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1700000000",
        "X-Hub-Signature-256": _github_signature(secret, BODY),
    }


def test_github_header_during_a_rotation_is_the_newest_secrets_alone_the_previous_one_beside_it() -> None:
    new, old = generate_secret(), RAW_SECRET
    headers = sign_headers(GITHUB, [new, old], MSG_ID, 1, BODY)
    # GitHub's documented check compares the whole header with one expected signature.
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], _github_signature(new, BODY))
    assert hmac.compare_digest(headers["X-Hub-Signature-256-Previous"], _github_signature(old, BODY))


def test_github_header_without_a_rotation_has_no_previous_signature() -> None:
    headers = sign_headers(GITHUB, [generate_secret()], MSG_ID, 1, BODY)
    assert "X-Hub-Signature-256-Previous" not in headers


def test_github_verify_accepts_a_stock_github_header_with_any_case_and_no_timestamp() -> None:
    secret = RAW_SECRET
    headers = {"x-hub-signature-256": _github_signature(secret, BODY)}
    verify(GITHUB, [generate_secret(), secret], headers, BODY, now=0)


def test_github_verify_accepts_either_secret_of_a_rotation() -> None:
    new, old = generate_secret(), generate_secret()
    headers = sign_headers(GITHUB, [new, old], MSG_ID, 1, BODY)
    verify(GITHUB, [old], headers, BODY, now=_now())
    verify(GITHUB, [new], headers, BODY, now=_now())


def test_github_verify_reports_missing_and_bad_signatures() -> None:
    secret = generate_secret()
    with pytest.raises(SignatureError) as caught:
        verify(GITHUB, [secret], {}, BODY, now=0)
    assert caught.value.reason == "missing_headers"
    for header in (_github_signature(secret, BODY + b"x"), "sha1=abc", "sha256=zz", "sha256="):
        with pytest.raises(SignatureError) as caught:
            verify(GITHUB, [secret], {"X-Hub-Signature-256": header}, BODY, now=0)
        assert caught.value.reason == "bad_signature"


def test_signing_or_verifying_without_secrets_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        sign_headers(STANDARD, [], MSG_ID, 1, BODY)
    with pytest.raises(ValueError):
        verify(GITHUB, [], {}, BODY, now=0)


# --- secrets -------------------------------------------------------------------------------------------


def test_generated_secrets_are_valid_unique_whsec_of_32_bytes() -> None:
    generated = {generate_secret() for _ in range(50)}
    assert len(generated) == 50
    for secret in generated:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:], validate=True)) == 32
        assert validate_secret(secret) is None


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(b"k" * 24).decode(),
        "whsec_" + base64.b64encode(b"k" * 64).decode(),
        "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("="),
        "whsec_" + base64.b64encode(b"k" * 31).decode().rstrip("="),  # unpadded, as the library allows
        "x" * 24,
        "x" * 64,
        "é" * 12,  # 24 UTF-8 bytes
    ],
)
def test_valid_secrets(secret: str) -> None:
    assert validate_secret(secret) is None


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "whsec_" + base64.b64encode(b"k" * 23).decode(),
        "whsec_" + base64.b64encode(b"k" * 65).decode(),
        "whsec_not base64 at all!!!!!!!!!!!!!!!!!!!!",
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # url-safe alphabet
        "whsec_A",
        "x" * 23,
        "x" * 65,
        "é" * 33,  # 66 UTF-8 bytes
        "has a space in the middle of it!",
        "has\ta-tab-in-the-middle-of-it!!!",
        "has\x00a-nul-in-the-middle-of-it!!!",
        "has\u200ba-zero-width-space-in-it!!!",
    ],
)
def test_invalid_secrets_are_described(secret: str) -> None:
    problem = validate_secret(secret)
    assert isinstance(problem, str) and problem
