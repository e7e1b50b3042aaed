"""api/convert's timestamps: the same instants protobuf's own FromDatetime writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from webhookd.api.convert import set_timestamp, timestamp

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13, minutes=45)), None])


@given(value=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), zone=ZONES)
def test_set_timestamp_writes_what_from_datetime_writes(value: datetime, zone: timezone | None) -> None:
    value = value.replace(tzinfo=zone)  # None: naive, which both read as UTC
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    written = timestamp_pb2.Timestamp()

    set_timestamp(written, value)

    assert (written.seconds, written.nanos) == (expected.seconds, expected.nanos)


def test_an_instant_before_1970_has_negative_seconds_and_positive_nanos() -> None:
    stamp = timestamp(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC))
    assert stamp is not None
    assert (stamp.seconds, stamp.nanos) == (-1, 500_000_000)
