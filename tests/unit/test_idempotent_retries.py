"""domain/events.same_event: what makes a publish under a used idempotency key a retry of its event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webhookd.domain.events import NewEvent, event_body, same_event

AT = datetime(2026, 12, 3, tzinfo=UTC)


def event(data_json: str, event_type: str = "rfp.created", channels: tuple[str, ...] = ()) -> NewEvent:
    return NewEvent("evt_1", event_type, event_body(event_type, AT, data_json), "key-1", None, AT, channels)


STORED = event_body("rfp.created", AT, '{"rfp_id": 1, "lines": [{"a": true}]}')


@pytest.mark.parametrize(
    "retry",
    [
        '{"rfp_id": 1, "lines": [{"a": true}]}',
        '{ "lines" : [ { "a" : true } ], "rfp_id" : 1.0 }',  # spacing, key order, 1.0 for 1
    ],
)
def test_the_same_data_written_another_way_is_the_same_event(retry: str) -> None:
    assert same_event(event(retry), "rfp.created", STORED, None, [])


@pytest.mark.parametrize(
    ("other", "event_type", "channels"),
    [
        ('{"rfp_id": 1, "lines": [{"a": 1}]}', "rfp.created", ()),  # true is not 1
        ('{"rfp_id": 2, "lines": [{"a": true}]}', "rfp.created", ()),
        ('{"rfp_id": 1, "lines": [{"a": true}]}', "rfp.closed", ()),
        ('{"rfp_id": 1, "lines": [{"a": true}]}', "rfp.created", ("eu",)),
    ],
)
def test_another_type_data_or_channel_is_another_event(other: str, event_type: str, channels: tuple[str, ...]) -> None:
    assert not same_event(event(other, event_type, channels), "rfp.created", STORED, None, [])
