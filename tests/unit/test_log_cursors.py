"""Log cursors: bound to the log, tenant and app that handed them out, and read back only there;
cursors from before they were bound still read back, as unbound."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhookd.domain.errors import Invalid
from webhookd.domain.history import LogPosition
from webhookd.domain.log_cursors import DELIVERY_LOG, INBOUND_EVENTS, Cursor, LogCursors
from webhookd.domain.scope import Scope

bigints = st.integers(min_value=0, max_value=2**63 - 1)
KEY = b"the database's page token key"
CRM = Scope("tnt_a", app_id="app_crm")
OURS = LogCursors(KEY, DELIVERY_LOG, CRM)


def unbound(text: str) -> str:
    """A cursor as handed out before cursors were bound: `txid.seq` in unpadded url-safe base64."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def refusal(cursors: LogCursors, cursor: str) -> str:
    with pytest.raises(Invalid) as raised:
        cursors.decode(cursor, field="cursor")
    [violation] = raised.value.violations
    assert violation.field == "cursor"
    return violation.description


@given(bigints, bigints)
def test_a_cursor_reads_back_as_its_position_bound_where_it_was_handed_out(txid: int, seq: int) -> None:
    position = LogPosition(txid, seq)

    cursor = OURS.encode(position)

    assert LogCursors(KEY, DELIVERY_LOG, CRM).decode(cursor, field="cursor") == Cursor(position, bound=True)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


@pytest.mark.parametrize(
    "elsewhere",
    [
        LogCursors(KEY, DELIVERY_LOG, Scope("tnt_b", app_id="app_crm")),  # another tenant's
        LogCursors(KEY, DELIVERY_LOG, Scope("tnt_a", app_id="app_erp")),  # another app's
        LogCursors(KEY, DELIVERY_LOG, Scope("tnt_a", person_id="person_1")),  # the tenant-wide reader's
        LogCursors(KEY, INBOUND_EVENTS, CRM),  # another log's
        LogCursors(b"another database's key", DELIVERY_LOG, CRM),
    ],
)
def test_a_cursor_handed_out_elsewhere_is_refused(elsewhere: LogCursors) -> None:
    cursor = elsewhere.encode(LogPosition(7, 3))

    assert "another log's, tenant's or app's" in refusal(OURS, cursor)


def test_a_person_and_an_app_less_token_of_one_tenant_read_the_same_cursors() -> None:
    """Consumers are keyed by tenant and app, '' for tenant-wide: cursors are bound the same way."""
    person = LogCursors(KEY, DELIVERY_LOG, Scope("tnt_a", person_id="person_1"))
    other_person = LogCursors(KEY, DELIVERY_LOG, Scope("tnt_a", person_id="person_2"))

    assert other_person.decode(person.encode(LogPosition(7, 3)), field="cursor").bound


def test_a_bound_cursor_with_its_position_altered_is_refused() -> None:
    raw = base64.urlsafe_b64decode(OURS.encode(LogPosition(7, 3)) + "==")
    altered = base64.urlsafe_b64encode(raw.replace(b"7.3", b"9.3")).decode().rstrip("=")

    assert "another log's, tenant's or app's" in refusal(OURS, altered)


@given(bigints, bigints)
def test_a_cursor_from_before_they_were_bound_reads_back_unbound(txid: int, seq: int) -> None:
    assert OURS.decode(unbound(f"{txid}.{seq}"), field="cursor") == Cursor(LogPosition(txid, seq), bound=False)


@pytest.mark.parametrize("cursor", ["!!", "", unbound("7"), unbound("a.b"), unbound(f"{2**63}.1"), unbound("-1.2")])
def test_what_is_no_cursor_is_refused(cursor: str) -> None:
    assert refusal(OURS, cursor) == "is not a cursor from this log"


def test_positions_order_by_transaction_then_sequence() -> None:
    assert sorted([LogPosition(2, 1), LogPosition(1, 9), LogPosition(1, 2)]) == [
        LogPosition(1, 2),
        LogPosition(1, 9),
        LogPosition(2, 1),
    ]
