"""Resource ids: a type prefix and a ULID, so ids sort by creation time and say what they name."""

from __future__ import annotations

from ulid import ULID

WEBHOOK_PREFIX = "whk_"
EVENT_PREFIX = "evt_"
DELIVERY_PREFIX = "dlv_"
ATTEMPT_PREFIX = "att_"
RECEIPT_PREFIX = "rcv_"


def new_id(prefix: str) -> str:
    return f"{prefix}{ULID()}"


def looks_like(prefix: str, value: str) -> bool:
    """True when value is prefix + a well-formed ULID (26 Crockford base32 characters)."""
    if not value.startswith(prefix):
        return False
    try:
        ULID.from_str(value[len(prefix) :])
    except ValueError:
        return False
    return True
