"""Opaque, tamper-evident page tokens for keyset pagination (AIP-158).

A token carries the last id of the page and a digest of the query it belongs to, signed with a key
the database holds, so every process accepts every other's tokens and a caller can neither forge a
position nor reuse a token with different filters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from webhookd.domain.errors import Invalid

_MAC_BYTES = 16


def query_digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(key: bytes, last_id: str, digest: str) -> str:
    payload = json.dumps({"after": last_id, "query": digest}, separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode(key: bytes, token: str, digest: str, *, field: str = "page_token") -> str:
    """The id to continue after; Invalid when the token is forged, corrupt or from another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise Invalid.field(field, "is not a page token this service issued") from None
    mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise Invalid.field(field, "is not a page token this service issued")
    fields = json.loads(payload)
    if fields.get("query") != digest:
        raise Invalid.field(field, "belongs to a request with other filters; repeat the filters of the first page")
    after = fields.get("after")
    if not isinstance(after, str):
        raise Invalid.field(field, "is not a page token this service issued")
    return after
