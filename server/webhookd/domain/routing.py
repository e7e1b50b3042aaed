"""Which webhooks an event reaches beyond its type, and how fast and in what order it is sent to them.

Channels: a webhook that lists channels receives only events published on at least one of them; a
webhook without channels receives events whatever their channels (and an event without channels
reaches only those). A channel is 1..128 letters, digits, `.`, `_`, `:` or `-`, starting with a letter
or digit, compared exactly (case included): `project:42`, `eu-west`.

A publish aimed at one webhook (`webhook_id`) is NOT_FOUND when the webhook is unknown to the caller or
deleted, as every other call on it; FAILED_PRECONDITION when it is inbound, which nothing is published
to. One it reaches but whose filters (event types, channels) the event does not match is published to
no one, with 0 deliveries in the response: its filters are its owner's to choose.

Rate limits: `rate_limit_per_second` sends a second for all processes together (0: none), enforced
when deliveries are claimed (store/deliveries.py): each gets a send slot, slots 1/limit apart, so the
sends of any one second are at most the limit; a worker that is late for its slot sends up to
RATE_SLOT_TOLERANCE after it, or gives the delivery back (no attempt), so a receiver never sees more
than twice the limit in one second: the limit, plus a burst of at most the limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from webhookd.domain.errors import FailedPrecondition, FieldViolation, NotFound

CHANNEL_MAX = 128
WEBHOOK_CHANNELS_MAX = 50
EVENT_CHANNELS_MAX = 10
RATE_LIMIT_MAX = 10_000
# How far ahead a claim hands out send slots: the claimer comes round again as soon as any claimed
# delivery is recorded, so a second's worth of slots keeps a webhook at its limit.
RATE_SLOT_HORIZON = timedelta(seconds=1)
# How late a send may start after its slot. Sends of any one-second window then come from slots of
# a window 1.5 s long: at most 1.5 x the limit (+1), within the documented limit + a burst of the limit.
RATE_SLOT_TOLERANCE = timedelta(seconds=0.5)
# How long a FIFO webhook's waiting deliveries stay out of the claim's way at most: their head
# finishing makes the next one due at once; this bounds the wait should that be missed.
FIFO_PARK_MAX = timedelta(minutes=5)

_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def channel_problem(channel: str) -> str | None:
    """What is wrong with `channel` as a channel name, or None when it is valid."""
    if not channel:
        return "must not be empty"
    if len(channel) > CHANNEL_MAX:
        return f"must be at most {CHANNEL_MAX} characters (got {len(channel)})"
    if not _CHANNEL.fullmatch(channel):
        return "may hold only letters, digits, '.', '_', ':' and '-', starting with a letter or digit"
    return None


def check_channels(channels: Sequence[str], path: str, *, most: int) -> tuple[tuple[str, ...], list[FieldViolation]]:
    """The channels without duplicates (first kept), and every violation, each at its index."""
    found = []
    if len(channels) > most:
        found.append(FieldViolation(path, f"must have at most {most} entries (got {len(channels)})"))
    for index, channel in enumerate(channels):
        problem = channel_problem(channel)
        if problem is not None:
            found.append(FieldViolation(f"{path}[{index}]", problem))
    return tuple(dict.fromkeys(channels)), found


def check_rate_limit(rate_limit_per_second: int, path: str) -> list[FieldViolation]:
    if not 0 <= rate_limit_per_second <= RATE_LIMIT_MAX:
        return [
            FieldViolation(
                path, f"must be from 0 (no limit) to {RATE_LIMIT_MAX} sends a second (got {rate_limit_per_second})"
            )
        ]
    return []


def receives_channels(webhook_channels: Sequence[str], event_channels: Sequence[str]) -> bool:
    """Whether a webhook listing `webhook_channels` receives an event published on `event_channels`."""
    return not webhook_channels or not set(webhook_channels).isdisjoint(event_channels)


def check_publish_target(webhook_id: str, *, found: bool, deleted: bool, inbound: bool) -> None:
    """NotFound / FailedPrecondition when a publish cannot be aimed at `webhook_id` (the caller's webhook
    row `found`, soft-`deleted`, `inbound`)."""
    if not found or deleted:
        raise NotFound.of("webhook", webhook_id)
    if inbound:
        raise FailedPrecondition(
            f"webhook {webhook_id} is inbound: inbound webhooks receive, they are not published to",
            reason="WEBHOOK_INBOUND",
        )
