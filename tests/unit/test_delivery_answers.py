"""What an attempt keeps of a receiver's headers: each value cut, and the whole bounded."""

from __future__ import annotations

from webhookd.delivery.answers import (
    NOT_RECORDED,
    RESPONSE_HEADER_VALUE_CHARS,
    RESPONSE_HEADERS_CHARS,
    VALUE_CUT,
    kept_headers,
)


def test_headers_within_the_bounds_are_kept_as_they_came() -> None:
    headers = (("Set-Cookie", "a=1"), ("X-Long", "v" * RESPONSE_HEADER_VALUE_CHARS), ("Set-Cookie", "b=2"))
    assert kept_headers(headers) == headers


def test_a_long_value_is_cut_and_marked() -> None:
    [(name, value)] = kept_headers([("X-Long", "v" * (RESPONSE_HEADER_VALUE_CHARS + 1))])
    assert (name, value) == ("X-Long", "v" * RESPONSE_HEADER_VALUE_CHARS + VALUE_CUT)


def test_headers_past_the_total_are_dropped_and_counted() -> None:
    headers = [(f"X-{i:03}", "v" * 995) for i in range(100)]  # 1,000 characters each

    kept = kept_headers(headers)

    assert kept[:-1] == tuple(headers[: RESPONSE_HEADERS_CHARS // 1000])
    assert kept[-1] == (NOT_RECORDED, f"{100 - RESPONSE_HEADERS_CHARS // 1000} more headers")
