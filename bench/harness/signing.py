"""Standard Webhooks signing and verification, bare: HMAC-SHA256 over "{id}.{timestamp}.{body}".

Written here rather than taken from webhookd, so the baselines do the bare work and the receiver
checks the service's signatures independently. The key is the base64 part of a `whsec_` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

# A valid secret of 32 bytes, shared by the benchmarks' webhooks, baselines and receiver.
SECRET = "whsec_" + base64.b64encode(b"webhookd-bench-signing-secret-32").decode()
TOLERANCE_SECONDS = 300


def key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(signing_key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(signing_key, signed, hashlib.sha256).digest()).decode()


def headers(signing_key: bytes, message_id: str, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed now."""
    timestamp = int(time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(signing_key, message_id, timestamp, body),
    }


def verify(signing_key: bytes, received: Mapping[str, str], body: bytes) -> bool:
    """Whether any `v1,` signature in the headers matches, with a fresh enough timestamp."""
    message_id = received.get("webhook-id")
    raw_timestamp = received.get("webhook-timestamp", "")
    signatures = received.get("webhook-signature", "")
    if not message_id or not raw_timestamp.isdigit() or not signatures:
        return False
    timestamp = int(raw_timestamp)
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = sign(signing_key, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split())
