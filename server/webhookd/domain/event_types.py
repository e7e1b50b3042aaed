"""Event type names and the filters a webhook subscribes with.

An event type is dot-separated segments of lower-case letters, digits, `_` and `-`, 1..128 characters in
all: `rfp.created`, `rfp.status_changed`. Upper case is refused rather than folded, so one event has one
spelling in the database and in every filter.

A filter is one of
- an exact event type, matching only itself;
- a prefix wildcard `rfp.*`, matching every type below `rfp` (`rfp.created`, `rfp.status.changed`), but
  neither `rfp` itself nor `rfpx.created`;
- `*`, matching everything but the service's own events.

The service's own events (`webhookd.webhook.paused`, `webhookd.ping`, ...: SERVICE_NAMESPACE) reach only
webhooks that ask for them by name or by a wildcard under `webhookd`: `*` alone never matches them, so a
receiver that takes every business event is not sent operations traffic it never asked for.

`matching_filters` turns the matching around for the store: it lists every filter string that matches a
given type, so a publish can find its subscribers with `event_types && ARRAY[...]` on an indexed column.
"""

from __future__ import annotations

import re

MAX_LENGTH = 128
WILDCARD = "*"
_PREFIX_SUFFIX = ".*"
# The first segment of the event types webhookd publishes itself.
SERVICE_NAMESPACE = "webhookd"

_SEGMENT = re.compile(r"[a-z0-9_-]+")


def validate_event_type(value: str) -> str | None:
    """What is wrong with `value` as an event type, or None when it is valid."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters, not {len(value)}"
    for segment in value.split("."):
        if not segment:
            return "must not start or end with '.' nor contain '..'"
        if not _SEGMENT.fullmatch(segment):
            return (
                f"segment {segment!r} may hold only lower-case letters, digits, '_' and '-' "
                "(segments are separated by '.')"
            )
    return None


def validate_filter(value: str) -> str | None:
    """What is wrong with `value` as an event type filter, or None when it is valid."""
    if value == WILDCARD:
        return None
    if value.endswith(_PREFIX_SUFFIX):
        if len(value) > MAX_LENGTH:
            return f"must be at most {MAX_LENGTH} characters, not {len(value)}"
        prefix = value[: -len(_PREFIX_SUFFIX)]
        if WILDCARD in prefix:
            return "'*' may appear only once, as the last segment ('rfp.*') or alone ('*')"
        problem = validate_event_type(prefix)
        return None if problem is None else f"prefix {problem}"
    if WILDCARD in value:
        return "'*' may appear only as the whole last segment ('rfp.*') or alone ('*')"
    return validate_event_type(value)


def matches(filter: str, event_type: str) -> bool:
    """True when a webhook subscribed with `filter` receives events of `event_type`."""
    if filter == WILDCARD:
        return not is_service_event(event_type)
    if filter.endswith(_PREFIX_SUFFIX):
        # Keep the dot: `rfp.*` must not match `rfp` nor `rfpx.created`.
        prefix = filter[:-1]
        return event_type.startswith(prefix) and len(event_type) > len(prefix)
    return filter == event_type


def matching_filters(event_type: str) -> list[str]:
    """Every filter that matches `event_type`: `*`, each enclosing prefix wildcard, and the type itself.

    For `rfp.status.changed`: `["*", "rfp.*", "rfp.status.*", "rfp.status.changed"]`; for the service's
    own `webhookd.webhook.paused`: `["webhookd.*", "webhookd.webhook.*", "webhookd.webhook.paused"]`, no
    `*`. Raises ValueError for an invalid event type (callers validate input first).
    """
    problem = validate_event_type(event_type)
    if problem is not None:
        raise ValueError(f"invalid event type {event_type!r}: {problem}")
    segments = event_type.split(".")
    filters = [] if is_service_event(event_type) else [WILDCARD]
    filters.extend(".".join(segments[:n]) + _PREFIX_SUFFIX for n in range(1, len(segments)))
    filters.append(event_type)
    return filters


def is_service_event(event_type: str) -> bool:
    """True for the events webhookd publishes itself (`webhookd.webhook.paused`, `webhookd.ping`)."""
    return event_type.split(".", 1)[0] == SERVICE_NAMESPACE
