"""store/sql.py's array literals: the shape of what PostgreSQL is handed (it reads them back in
tests/integration/test_array_literals_read_back.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from webhookd.store.sql import array_literal


def test_every_element_is_quoted_so_separators_and_braces_stay_inside_it() -> None:
    assert array_literal(["a", "b,c", "{d}", "e f"]) == '{"a","b,c","{d}","e f"}'


def test_quotes_and_backslashes_are_escaped() -> None:
    assert array_literal(['say "hi"', "C:\\path"]) == '{"say \\"hi\\"","C:\\\\path"}'


def test_none_is_null_and_an_empty_sequence_is_an_empty_array() -> None:
    assert (array_literal([None, "NULL"]), array_literal([])) == ('{NULL,"NULL"}', "{}")


def test_booleans_integers_and_times_are_written_as_postgresql_reads_them() -> None:
    at = datetime(2026, 12, 3, 4, 39, 7, 123456, tzinfo=UTC)

    assert array_literal([True, False, 7]) == '{t,f,"7"}'
    assert array_literal([at]) == '{"2026-12-03T04:39:07.123456+00:00"}'
