"""Idempotency keys: a write that names itself with a key is carried out once, and a retry with the
key gets the first write's result, as Stripe's API and the IETF Idempotency-Key draft have it.

A key is held in its caller's scope (tenant and app) for WINDOW; past that, a write with it is a new
write. The key names one request: a retry must repeat it, so each keyed write keeps a fingerprint of
its request to tell a retry from a mistaken reuse."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
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
    """A digest of a request's values (JSON-able and dataclasses, with enums and the like by their
    str), the same whatever the order of its mappings' keys. A dataclass counts by the fields that
    differ from their defaults: one a later release adds (with a default) leaves the digest of a
    request made before it as it was, so a retry that lands on the new release during a deploy is
    still a retry, not a reused key."""
    text = json.dumps(_given(request), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _given(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        given = ((field.name, getattr(value, field.name), _default(field)) for field in dataclasses.fields(value))
        return {name: _given(item) for name, item, default in given if item != default}
    if isinstance(value, Mapping):
        return {str(key): _given(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_given(item) for item in value]
    return value


def _default(field: dataclasses.Field[object]) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING  # a required field: always counted


@dataclass(frozen=True)
class KeyedRequest:
    """A write's idempotency key with its request's fingerprint."""

    key: str
    request: str  # request_fingerprint of what the write was asked
