"""Log cursors: what encode_cursor writes, decode_cursor reads back, in the unpadded url-safe form."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from webhookd.domain.history import LogPosition, decode_cursor, encode_cursor

bigints = st.integers(min_value=0, max_value=2**63 - 1)


@given(bigints, bigints)
def test_a_cursor_reads_back_as_its_position(txid: int, seq: int) -> None:
    position = LogPosition(txid, seq)

    cursor = encode_cursor(position)

    assert decode_cursor(cursor) == position
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


@given(bigints, bigints)
def test_a_cursor_is_the_url_safe_base64_of_txid_dot_seq(txid: int, seq: int) -> None:
    expected = base64.urlsafe_b64encode(f"{txid}.{seq}".encode()).decode().rstrip("=")

    assert encode_cursor(LogPosition(txid, seq)) == expected


def test_positions_order_by_transaction_then_sequence() -> None:
    assert sorted([LogPosition(2, 1), LogPosition(1, 9), LogPosition(1, 2)]) == [
        LogPosition(1, 2),
        LogPosition(1, 9),
        LogPosition(2, 1),
    ]
