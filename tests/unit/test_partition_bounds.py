"""Week partitions: their bounds, and the names retention reads them back from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ulid import ULID

from webhookd.domain import ids
from webhookd.store import partitions


def test_delivery_partitions_are_bounded_by_the_ids_made_in_their_week() -> None:
    week = partitions.Period.of(datetime(2026, 3, 4, 12, tzinfo=UTC))
    low, high = partitions.DELIVERIES.bound(week.start), partitions.DELIVERIES.bound(week.end)
    first_instant = _delivery_id_at(week.start)
    last_instant = _delivery_id_at(week.end - timedelta(milliseconds=1))
    next_week = _delivery_id_at(week.end)

    assert week.start == datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    assert low <= first_instant < high
    assert low <= last_instant < high
    assert not next_week < high
    assert partitions.DELIVERIES.period_of("deliveries_p20260302") == week
    assert partitions.DELIVERIES.period_of("deliveries_p20260303") is None  # not a week's first day
    assert partitions.DELIVERIES.period_of("deliveries_default") is None


def _delivery_id_at(at: datetime) -> str:
    return f"{ids.DELIVERY_PREFIX}{ULID.from_datetime(at)}"


def test_time_floor_is_the_time_part_of_a_ulid() -> None:
    at = datetime(2031, 7, 9, 23, 59, 59, 999000, tzinfo=UTC)
    assert ids.time_floor("att_", at) == "att_" + str(ULID.from_datetime(at))[:10]
