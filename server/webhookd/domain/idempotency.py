"""Idempotency keys: a write that names itself with a key is carried out once, and a retry with the
key gets the first write's result, as Stripe's API and the IETF Idempotency-Key draft have it.

A key is held in its caller's scope (tenant and app) for WINDOW; past that, a write with it is a new
write. The key names one request: a retry must repeat it, so each keyed write keeps a fingerprint of
its request to tell a retry from a mistaken reuse."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_KEY_LENGTH = 255
# A key is remembered this long; a later write with it is a new write.
WINDOW = timedelta(hours=24)


def key_problem(key: str | None) -> str | None:
    """What is wrong with a key, None when nothing is (or there is none)."""
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        return f"must be 1..{MAX_KEY_LENGTH} characters"
    return None


def remembered(written_at: datetime, now: datetime) -> bool:
    """Whether a key a write took at `written_at` still names that write."""
    return now - written_at < WINDOW


def request_fingerprint(request: object) -> str:
    """A digest of a request's values (JSON-able, with enums and the like by their str), the same
    whatever the order of its mappings' keys."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class KeyedRequest:
    """A write's idempotency key with its request's fingerprint."""

    key: str
    request: str  # request_fingerprint of what the write was asked
