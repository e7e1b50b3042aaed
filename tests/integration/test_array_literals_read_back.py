"""store/sql.py's array literals read back by PostgreSQL as the arrays they were made from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from webhookd.app import Backends
from webhookd.store.conninfo import conninfo
from webhookd.store.sql import array_literal

# PostgreSQL text holds any character but NUL.
_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)


def test_any_text_array_comes_back_as_it_was(backends: Backends) -> None:
    with psycopg.connect(conninfo(backends.database_url), autocommit=True) as connection:

        @settings(max_examples=200, deadline=None)
        @given(st.lists(st.one_of(st.none(), _TEXT), max_size=12))
        def round_trip(values: list[str | None]) -> None:
            row = connection.execute("SELECT CAST(%s AS text[])", [array_literal(values)]).fetchone()
            assert row is not None and row[0] == values

        round_trip()


def test_booleans_integers_and_times_come_back_typed(backends: Backends) -> None:
    at = datetime(2026, 12, 3, 4, 39, 7, 123456, tzinfo=UTC)
    later = at + timedelta(days=400, microseconds=1)
    with psycopg.connect(conninfo(backends.database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT CAST(%s AS boolean[]), CAST(%s AS integer[]), CAST(%s AS timestamptz[])",
            [array_literal([True, False, None]), array_literal([0, -3, 2_000_000_000]), array_literal([at, later])],
        ).fetchone()

    assert row == ([True, False, None], [0, -3, 2_000_000_000], [at, later])


def test_a_literal_meets_an_array_column_where_a_list_would(backends: Backends) -> None:
    with psycopg.connect(conninfo(backends.database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT ARRAY['orders.*', 'x']::text[] && %s, ARRAY['y']::text[] && %s",
            [array_literal(["orders.*"]), array_literal(["z"])],
        ).fetchone()

    assert row == (True, False)
