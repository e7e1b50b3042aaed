"""Resource ids: a type prefix and a ULID, so ids sort by creation time and say what they name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ulid import ULID

WEBHOOK_PREFIX = "whk_"
EVENT_PREFIX = "evt_"
DELIVERY_PREFIX = "dlv_"
ATTEMPT_PREFIX = "att_"
RECEIPT_PREFIX = "rcv_"
# A ULID starts with its creation time: 48 bits of Unix milliseconds in 10 Crockford base32
# characters, whose alphabet is in ASCII order. So ids of one type compare (bytewise) as their
# creation times do, and a range of ids is a range of time.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARACTERS = 10
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def time_floor(prefix: str, at: datetime) -> str:
    """The lowest id of this type created at `at` or later (to the millisecond), in "C" collation.

    Every id created before `at` sorts below it and every one created at or after it sorts at or
    above it: the bounds of a time partition keyed by id.
    """
    milliseconds = (at - _UNIX_EPOCH) // timedelta(milliseconds=1)
    if not 0 <= milliseconds < 2**48:
        raise ValueError(f"{at} is outside the time a ULID can hold")
    characters = []
    for _ in range(_TIME_CHARACTERS):
        milliseconds, digit = divmod(milliseconds, 32)
        characters.append(_CROCKFORD[digit])
    return prefix + "".join(reversed(characters))
