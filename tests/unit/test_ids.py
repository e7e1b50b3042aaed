"""Resource ids: new_ids writes ULIDs itself (for speed); python-ulid is the oracle they must agree with,
and like its ULID() they only ever go up within a process."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from webhookd.domain import ids


@given(st.integers(min_value=0, max_value=2**48 - 1), st.binary(min_size=10, max_size=10))
def test_the_encoding_is_the_ulid_of_the_same_time_and_randomness(milliseconds: int, randomness: bytes) -> None:
    expected = str(ULID.from_bytes(milliseconds.to_bytes(6, "big") + randomness))

    encoded = ids._time_characters(milliseconds) + ids._random_characters(int.from_bytes(randomness, "big"))

    assert encoded == expected


@given(st.integers(min_value=0, max_value=300))
def test_a_batch_is_that_many_distinct_ids_of_now(count: int) -> None:
    before = time.time_ns() // 1_000_000

    batch = ids.new_ids(ids.DELIVERY_PREFIX, count)

    after = time.time_ns() // 1_000_000
    assert len(batch) == len(set(batch)) == count
    for value in batch:
        assert ids.looks_like(ids.DELIVERY_PREFIX, value)
        assert before <= ULID.from_str(value.removeprefix(ids.DELIVERY_PREFIX)).milliseconds <= after


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=2, max_size=20))
def test_every_id_sorts_above_those_made_before_it(batch_sizes: list[int]) -> None:
    made = [
        value.removeprefix(ids.DELIVERY_PREFIX)
        for size in batch_sizes
        for value in ids.new_ids(ids.DELIVERY_PREFIX, size)
    ]

    assert made == sorted(made) and len(set(made)) == len(made)


def test_a_millisecond_whose_values_ran_out_borrows_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time_ns() // 1_000_000
    monkeypatch.setattr(ids, "_last", (now + 5, ids._RANDOM_LIMIT - 2, ids._time_characters(now + 5)))

    first, second = ids.new_ids(ids.EVENT_PREFIX, 2)

    assert ULID.from_str(first[4:]).milliseconds == now + 6
    assert ids.EVENT_PREFIX + ids._time_characters(now + 5) < first < second
