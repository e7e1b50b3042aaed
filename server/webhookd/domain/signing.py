"""Signing outbound webhooks and verifying inbound ones, in both schemes a webhook may use.

`standard-webhooks` (https://www.standardwebhooks.com, the default):
  `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one `v1,` entry per
  secret separated by spaces, so a receiver holding either the old or the new secret accepts the message
  while a rotation overlaps. The key is the base64-decoded part of a `whsec_` secret; a secret without
  that prefix is used as its raw UTF-8 bytes.

`hmac-sha256` (GitHub's `X-Hub-Signature-256`):
  `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, body)>` with the whole secret string's UTF-8 bytes as
  the key, as GitHub does, always exactly one signature made with the current (newest) secret: GitHub's
  documented check, githubkit and @octokit/webhooks-methods compare the whole header, so a list would fail
  them. While a rotation overlaps, the previous secret's signature goes in `X-Hub-Signature-256-Previous`
  (same form), for receivers that have not switched to the new secret yet. Only the body is signed, so
  this scheme has no replay protection; dedupe on `webhook-id`. Inbound, the same `sha256=<hex>` is
  also taken from `X-Hub-Signature`, where Bitbucket (Cloud and Data Center) sends it; GitHub's SHA-1
  one under that name is not accepted.

`ed25519` (Standard Webhooks v1a, asymmetric):
  `webhook-signature: v1a,<base64 ed25519 signature over "{id}.{timestamp}.{body}">`, one `v1a,` entry per
  private key separated by spaces (both keys while a rotation overlaps). The private key is `whsk_` +
  base64 of its 32-byte seed and lives in Vault like the shared secrets; receivers verify with the public
  key, `whpk_` + base64 of its 32 bytes, which the API hands out (CreateWebhook, GetWebhookPublicKey).
  Outbound only: webhookd holds no sender's public key to verify inbound requests with.

All schemes also send `webhook-id` and `webhook-timestamp`, so receivers can dedupe either way.

Seven more schemes verify inbound requests only, as their senders sign them, with the secret the
sender issues for the endpoint (its whole text's UTF-8 bytes as the key, `whsec_` or not):
- `stripe`: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "{t}.{body}")>`, one `v1=`
  per secret Stripe signs with (two while a secret is rolled), `t` within the tolerance;
- `shopify`: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(key, body)>`, no timestamp;
- `slack`: `X-Slack-Signature: v0=<hex HMAC-SHA256(key, "v0:{ts}:{body}")>` with `ts` from
  `X-Slack-Request-Timestamp`, within the tolerance;
- `twilio`: `X-Twilio-Signature: <base64 HMAC-SHA1(key, url + params)>` (HMAC-SHA256 when
  `X-Twilio-Webhooks-Signature-Settings` names it), where `url` is the callback URL as Twilio called
  it, query string included, and `params` each form field's name and value, sorted, concatenated; a
  JSON body is covered instead by the URL's `bodySHA256` query parameter (hex SHA-256 of the body).
  No timestamp: Twilio signs none.
- `zoom`: `x-zm-signature: v0=<hex HMAC-SHA256(key, "v0:{ts}:{body}")>` with `ts` from
  `x-zm-request-timestamp`, within the tolerance: Slack's form under Zoom's header names. Zoom's
  `endpoint.url_validation` is answered with `zoom_encrypted_token` of its `plainToken`.
- `gitlab`: `X-Gitlab-Token: <the secret token itself>`, compared in constant time. GitLab signs
  nothing: neither the body nor a time is covered, and only TLS keeps the token secret. (Where GitLab
  offers a signing token, its `webhook-signature` is Standard Webhooks: `standard-webhooks` checks it.)
- `meta` (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, body)>`
  under the App Secret, GitHub's form; no timestamp. Meta's subscription check is a GET with no
  signature: domain/inbound.meta_challenge.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets as random_source
import unicodedata
import urllib.parse
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webhookd.domain.forms import form_fields, is_form
from webhookd.domain.webhooks import SignatureScheme

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
GENERATED_SECRET_BYTES = 32
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
ED25519_SEED_BYTES = 32
DEFAULT_TOLERANCE_SECONDS = 300

STANDARD_PREFIX = "webhook-"
SVIX_PREFIX = "svix-"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
# Bitbucket's name for the same `sha256=<hex>` (GitHub's SHA-1 signature goes under it too: not taken).
HUB_SIGNATURE_HEADER = "X-Hub-Signature"
# The previous secret's signature while a rotation overlaps (hmac-sha256 only).
GITHUB_PREVIOUS_SIGNATURE_HEADER = "X-Hub-Signature-256-Previous"
STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
SHOPIFY_SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio names the HMAC of a SharedKey signature here (`key=<id>,algorithm=HMAC_SHA256`); without it, SHA-1.
TWILIO_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
_TWILIO_HASHES = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}
ZOOM_SIGNATURE_HEADER = "x-zm-signature"
ZOOM_TIMESTAMP_HEADER = "x-zm-request-timestamp"
GITLAB_TOKEN_HEADER = "X-Gitlab-Token"
_TWILIO_BODY_HASH = "bodySHA256"
_DEFAULT_PORTS = {"https": 443, "http": 80}
# A secret a sender issues is taken as it is, this long: Zoom's Secret Token is 22 bytes (16 random
# ones, base64url), Stripe CLI's 70.
MIN_SENDER_SECRET_BYTES = 16
MAX_SENDER_SECRET_BYTES = 128

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DIGITS = re.compile(r"[0-9]{1,18}")


class SignatureError(Exception):
    """Verification failed. `reason` is one of the stable codes below, safe to log and to return."""

    MISSING_HEADERS = "missing_headers"
    REPEATED_HEADERS = "repeated_headers"
    BAD_TIMESTAMP = "bad_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_SIGNATURE = "bad_signature"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def generate_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64-encoded."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(GENERATED_SECRET_BYTES)).decode()


def generate_private_key() -> str:
    """A fresh ed25519 private key: `whsk_` + base64 of its 32-byte seed."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode()


def new_signing_secret(scheme: SignatureScheme) -> str:
    """What a webhook signs with, generated: a private key for ed25519, else a `whsec_` secret. Not
    for a scheme whose sender issues the secret."""
    if scheme.secret_from_sender:
        raise ValueError(f"{scheme.value}'s secret is issued by the sender")
    return generate_private_key() if scheme.asymmetric else generate_secret()


def public_key(private_key: str) -> str:
    """The `whpk_` public key of a `whsk_` private key."""
    raw = _ed25519_key(private_key).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def validate_secret(value: str, scheme: SignatureScheme = SignatureScheme.STANDARD_WEBHOOKS) -> str | None:
    """What is wrong with `value` as a signing secret for `scheme`, or None when it is valid.

    A `whsec_` secret must be base64 (standard alphabet, padding optional) of 24..64 bytes; any other
    secret must be 24..64 bytes of UTF-8 text without whitespace or control characters. A secret the
    sender issues (`SignatureScheme.secret_from_sender`) is text as it issued it: 16..128 bytes, without
    whitespace or control characters.
    """
    if scheme.secret_from_sender:
        return _text_secret_problem(value, MAX_SENDER_SECRET_BYTES, least=MIN_SENDER_SECRET_BYTES)
    if value.startswith(SECRET_PREFIX):
        key = _decode_whsec(value[len(SECRET_PREFIX) :])
        if key is None:
            return f"the part after {SECRET_PREFIX!r} must be base64 (A-Z, a-z, 0-9, '+', '/', '=')"
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            return f"the decoded key must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes long, not {len(key)}"
        return None
    return _text_secret_problem(value, MAX_SECRET_BYTES)


def loose_secret_problem(value: str) -> str | None:
    """What is wrong with `value` as a secret for any scheme: the loosest of validate_secret's rules."""
    return _text_secret_problem(value, MAX_SENDER_SECRET_BYTES, least=MIN_SENDER_SECRET_BYTES)


def _text_secret_problem(value: str, most: int, *, least: int = MIN_SECRET_BYTES) -> str | None:
    if any(ch.isspace() for ch in value):
        return "must not contain whitespace"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        return "must not contain control characters"
    size = len(value.encode("utf-8"))
    if not least <= size <= most:
        return f"the secret must be {least} to {most} bytes long, not {size}"
    return None


def sign_headers(
    scheme: SignatureScheme, secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers to send with `body`, signed with every secret in `secrets` (current one first)."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    headers = {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp)}
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        content = _signed_content(message_id, str(timestamp), body)
        headers[SIGNATURE_HEADER] = " ".join(
            "v1," + base64.b64encode(_hmac(_standard_key(secret), content)).decode() for secret in secrets
        )
    elif scheme is SignatureScheme.HMAC_SHA256:
        current, *previous = secrets
        headers[GITHUB_SIGNATURE_HEADER] = _github_signature(current, body)
        if previous:
            headers[GITHUB_PREVIOUS_SIGNATURE_HEADER] = _github_signature(previous[0], body)
    elif scheme is SignatureScheme.ED25519:
        content = _signed_content(message_id, str(timestamp), body)
        headers[SIGNATURE_HEADER] = " ".join(
            "v1a," + base64.b64encode(_ed25519_key(key).sign(content)).decode() for key in secrets
        )
    else:
        raise ValueError(f"{scheme.value} only verifies what its sender signs: webhookd does not sign with it")
    return headers


def _github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + _hmac(secret.encode("utf-8"), body).hex()


def delivery_headers(
    static: Mapping[str, str],
    scheme: SignatureScheme,
    secrets: Sequence[str],
    message_id: str,
    timestamp: int,
    body: bytes,
) -> dict[str, str]:
    """A delivery's request headers: the webhook's static headers, then the signature headers, last so
    that a static header can never replace them."""
    headers = dict(static)
    headers.update(sign_headers(scheme, secrets, message_id, timestamp, body))
    return headers


def verify(
    scheme: SignatureScheme,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    url: str = "",
) -> None:
    """Accept `body` if any signature in `headers` was made with any of `secrets`; else SignatureError.

    Header names are matched case-insensitively. For standard-webhooks the timestamp must lie within
    `tolerance_seconds` of `now` (unix seconds) in either direction; hmac-sha256 signs no timestamp, so
    none is checked. `url` is the URL the sender called, query string included: twilio signs it.
    """
    if not secrets:
        raise ValueError("at least one secret is needed to verify")
    lowered = {name.lower(): value for name, value in headers.items()}
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        _verify_standard(secrets, lowered, body, now, tolerance_seconds)
    elif scheme in (SignatureScheme.HMAC_SHA256, SignatureScheme.META):
        _verify_github(secrets, lowered, body)
    elif scheme is SignatureScheme.STRIPE:
        _verify_stripe(secrets, lowered, body, now, tolerance_seconds)
    elif scheme is SignatureScheme.SHOPIFY:
        _verify_shopify(secrets, lowered, body)
    elif scheme is SignatureScheme.SLACK:
        _verify_v0(SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, secrets, lowered, body, now, tolerance_seconds)
    elif scheme is SignatureScheme.TWILIO:
        _verify_twilio(secrets, lowered, body, url)
    elif scheme is SignatureScheme.ZOOM:
        _verify_v0(ZOOM_SIGNATURE_HEADER, ZOOM_TIMESTAMP_HEADER, secrets, lowered, body, now, tolerance_seconds)
    elif scheme is SignatureScheme.GITLAB:
        _verify_gitlab(secrets, lowered)
    else:
        raise ValueError(f"{scheme.value} is not verified here: webhookd only signs with it")


def signed_with(
    scheme: SignatureScheme,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    *,
    url: str = "",
) -> str:
    """The first of `secrets` that a signature in `headers` was made with (as `verify` checks each); else
    SignatureError. For an answer that must come from the sender's own secret while a rotation overlaps."""
    for secret in secrets:
        try:
            verify(scheme, [secret], headers, body, now, url=url)
        except SignatureError:
            continue
        return secret
    raise SignatureError(SignatureError.BAD_SIGNATURE, "no signature matches")


def zoom_encrypted_token(secret: str, plain_token: str) -> str:
    """Zoom's `endpoint.url_validation` answer: the hex HMAC-SHA256 of its `plainToken` under the Secret Token."""
    return hmac.new(secret.encode("utf-8"), plain_token.encode("utf-8"), hashlib.sha256).hexdigest()


def _verify_standard(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: int, tolerance: int) -> None:
    message_id = standard_header(headers, ID_HEADER)
    raw_timestamp = standard_header(headers, TIMESTAMP_HEADER).strip()
    signature_header = standard_header(headers, SIGNATURE_HEADER)
    missing = [
        name
        for name, value in (
            (ID_HEADER, message_id),
            (TIMESTAMP_HEADER, raw_timestamp),
            (SIGNATURE_HEADER, signature_header),
        )
        if not value
    ]
    if missing:
        raise SignatureError(SignatureError.MISSING_HEADERS, ", ".join(missing))
    _check_timestamp(raw_timestamp, now, tolerance)

    offered: list[bytes] = []
    for entry in signature_header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other versions (e.g. v1a, asymmetric) are not ours to check
        offered += _base64(encoded)
    # The signed timestamp is the header's text, exactly as sent.
    content = _signed_content(message_id, raw_timestamp, body)
    expected = [_hmac(_standard_key(secret), content) for secret in secrets]
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "no v1 signature matches")


def standard_header(headers: Mapping[str, str], name: str) -> str:
    """A Standard Webhooks header (lower-case `name`, `headers` keyed in lower case), or its Svix
    spelling: senders built on Svix (Clerk, Resend and others) send `svix-id`, `svix-timestamp` and
    `svix-signature`, the same scheme under Svix's name, as Svix's own libraries read them."""
    return headers.get(name) or headers.get(SVIX_PREFIX + name.removeprefix(STANDARD_PREFIX), "")


def _check_timestamp(raw: str, now: int, tolerance: int) -> None:
    """The signed time, unix seconds, within `tolerance` of `now` either way."""
    if not _DIGITS.fullmatch(raw):
        raise SignatureError(SignatureError.BAD_TIMESTAMP, "not unix seconds")
    timestamp = int(raw)
    if timestamp < now - tolerance:
        raise SignatureError(SignatureError.STALE_TIMESTAMP, f"older than {tolerance}s")
    if timestamp > now + tolerance:
        raise SignatureError(SignatureError.FUTURE_TIMESTAMP, f"more than {tolerance}s ahead")


def _verify_github(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    if not (headers.get(GITHUB_SIGNATURE_HEADER.lower()) or headers.get(HUB_SIGNATURE_HEADER.lower())):
        raise SignatureError(SignatureError.MISSING_HEADERS, GITHUB_SIGNATURE_HEADER)
    offered: list[bytes] = []
    # A sender that signs as webhookd does may also send its previous secret's signature.
    for name in (GITHUB_SIGNATURE_HEADER, GITHUB_PREVIOUS_SIGNATURE_HEADER, HUB_SIGNATURE_HEADER):
        algorithm, _, digest = headers.get(name.lower(), "").strip().partition("=")
        if algorithm != "sha256":
            continue
        try:
            offered.append(bytes.fromhex(digest))
        except ValueError:
            continue
    expected = _text_key_macs(secrets, body)
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "no sha256 signature matches")


def _verify_stripe(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: int, tolerance: int) -> None:
    header = headers.get(STRIPE_SIGNATURE_HEADER.lower(), "")
    if not header:
        raise SignatureError(SignatureError.MISSING_HEADERS, STRIPE_SIGNATURE_HEADER)
    raw_timestamp = ""
    offered: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            raw_timestamp = value
        elif key == "v1":  # v0 is Stripe's test scheme, not a signature to accept
            try:
                offered.append(bytes.fromhex(value))
            except ValueError:
                continue
    _check_timestamp(raw_timestamp, now, tolerance)
    content = raw_timestamp.encode() + b"." + body
    expected = _text_key_macs(secrets, content)
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "no v1 signature matches")


def _verify_shopify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    header = headers.get(SHOPIFY_SIGNATURE_HEADER.lower(), "").strip()
    if not header:
        raise SignatureError(SignatureError.MISSING_HEADERS, SHOPIFY_SIGNATURE_HEADER)
    offered = _base64(header)
    expected = _text_key_macs(secrets, body)
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the signature does not match")


def _verify_v0(
    signature_header: str,
    timestamp_header: str,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int,
) -> None:
    """Slack's form, which Zoom signs in too: `v0=<hex>` of `v0:{ts}:{body}`, `ts` in its own header."""
    signature = headers.get(signature_header.lower(), "").strip()
    raw_timestamp = headers.get(timestamp_header.lower(), "").strip()
    missing = [name for name, value in ((signature_header, signature), (timestamp_header, raw_timestamp)) if not value]
    if missing:
        raise SignatureError(SignatureError.MISSING_HEADERS, ", ".join(missing))
    _check_timestamp(raw_timestamp, now, tolerance)
    version, _, digest = signature.partition("=")
    try:
        offered = [bytes.fromhex(digest)] if version == "v0" else []
    except ValueError:
        offered = []
    content = f"v0:{raw_timestamp}:".encode() + body
    expected = _text_key_macs(secrets, content)
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the v0 signature does not match")


def _verify_gitlab(secrets: Sequence[str], headers: Mapping[str, str]) -> None:
    token = headers.get(GITLAB_TOKEN_HEADER.lower(), "")
    if not token:
        raise SignatureError(SignatureError.MISSING_HEADERS, GITLAB_TOKEN_HEADER)
    # As bytes, the ones sent: compare_digest refuses non-ASCII text, and a token GitLab sends as UTF-8
    # arrives decoded as Latin-1, as HTTP servers hand headers over.
    if not _any_equal([secret.encode("utf-8") for secret in secrets], [_sent_bytes(token)]):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the token does not match")


def _verify_twilio(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, url: str) -> None:
    """As Twilio's own RequestValidator checks: the URL with and without its default port (Twilio signs
    either), and a body covered by the form fields or by `bodySHA256`; a body covered by neither is refused."""
    header = headers.get(TWILIO_SIGNATURE_HEADER.lower(), "").strip()
    if not header:
        raise SignatureError(SignatureError.MISSING_HEADERS, TWILIO_SIGNATURE_HEADER)
    algorithm = _twilio_algorithm(headers.get(TWILIO_SETTINGS_HEADER.lower(), ""))
    if algorithm is None:
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the signature settings name an unknown algorithm")
    parsed = urllib.parse.urlsplit(url)
    body_hashes = urllib.parse.parse_qs(parsed.query).get(_TWILIO_BODY_HASH)
    if body_hashes is not None:
        # As bytes: the query may spell any character, and compare_digest refuses non-ASCII text.
        offered_hash = body_hashes[0].lower().encode()
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest().encode(), offered_hash):
            raise SignatureError(SignatureError.BAD_SIGNATURE, f"the body does not match {_TWILIO_BODY_HASH}")
        fields = ""
    elif is_form(headers.get("content-type", "")):
        fields = _twilio_fields(body)
    elif body:
        raise SignatureError(
            SignatureError.BAD_SIGNATURE, f"the body is neither a form nor covered by {_TWILIO_BODY_HASH}"
        )
    else:
        fields = ""
    offered = _base64(header)
    expected = [
        hmac.new(secret.encode("utf-8"), (signed_url + fields).encode("utf-8"), algorithm).digest()
        for secret in secrets
        for signed_url in _with_and_without_port(parsed)
    ]
    if not _any_equal(expected, offered):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the signature does not match")


def _twilio_algorithm(settings: str) -> str | None:
    """The hash `X-Twilio-Webhooks-Signature-Settings` names (`key=...,algorithm=HMAC_SHA256`): SHA-1
    when it names none; None for one Twilio does not use."""
    for part in settings.split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "algorithm" and value.strip():
            return _TWILIO_HASHES.get(value.strip().upper())
    return _TWILIO_HASHES["HMAC_SHA1"]


def _twilio_fields(body: bytes) -> str:
    """Each form field's name and value, names sorted, a name's distinct values sorted, concatenated."""
    try:
        pairs = form_fields(body)
    except ValueError:
        raise SignatureError(SignatureError.BAD_SIGNATURE, "the form body is not UTF-8") from None
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def _with_and_without_port(parsed: urllib.parse.SplitResult) -> tuple[str, str]:
    host = parsed.netloc.rsplit(":", 1)[0] if parsed.port else parsed.netloc
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 80)
    return parsed._replace(netloc=host).geturl(), parsed._replace(netloc=f"{host}:{port}").geturl()


def _base64(text: str) -> list[bytes]:
    """The signature a header's base64 spells, or none when it is not base64: a header may hold any
    byte (Latin-1 text here), and the decoder refuses non-ASCII with a plain ValueError."""
    try:
        return [base64.b64decode(text, validate=True)]
    except ValueError:  # binascii.Error is one
        return []


def _sent_bytes(header: str) -> bytes:
    """A header value's bytes as they came over HTTP (servers decode them as Latin-1); text that no
    Latin-1 decoding gives (a caller in process) as UTF-8."""
    try:
        return header.encode("latin-1")
    except UnicodeEncodeError:
        return header.encode("utf-8")


def _any_equal(expected: Sequence[bytes], offered: Sequence[bytes]) -> bool:
    # Compare every pair without stopping early, so timing says nothing about which one matched.
    found = False
    for mine in expected:
        for theirs in offered:
            found |= hmac.compare_digest(mine, theirs)
    return found


def _signed_content(message_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode() + body


def _text_key_macs(secrets: Sequence[str], data: bytes) -> list[bytes]:
    """HMAC-SHA256 of `data` under each secret's whole text as the key (GitHub's, Stripe's, Shopify's
    and Slack's way)."""
    return [_hmac(secret.encode("utf-8"), data) for secret in secrets]


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def _standard_key(secret: str) -> bytes:
    """The HMAC key of a secret, kept like `_ed25519_key`'s: a worker signs with the same few secrets
    over and over, and decoding one costs as much as the HMAC it keys."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode("utf-8")
    key = _decode_whsec(secret[len(SECRET_PREFIX) :])
    if key is None:
        raise ValueError(f"secret after {SECRET_PREFIX!r} is not base64")
    return key


@functools.lru_cache(maxsize=1024)
def _ed25519_key(private_key: str) -> Ed25519PrivateKey:
    """The key object of a `whsk_` key, kept: loading one costs more than the signature it makes."""
    seed = None
    if private_key.startswith(PRIVATE_KEY_PREFIX):
        seed = _decode_whsec(private_key.removeprefix(PRIVATE_KEY_PREFIX))
    if seed is None or len(seed) != ED25519_SEED_BYTES:
        raise ValueError(f"an ed25519 private key is {PRIVATE_KEY_PREFIX!r} + base64 of {ED25519_SEED_BYTES} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _decode_whsec(encoded: str) -> bytes | None:
    if not _BASE64.fullmatch(encoded):
        return None
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return None
