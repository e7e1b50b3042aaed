"""The database URL as psycopg's connection string: every part and query parameter kept as given."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from webhookd.store.conninfo import OPTIONS_VARIABLE, conninfo, pool_options


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app@db.internal/webhookd?options=-c%20search_path%3Dwebhookd",
        "postgresql+psycopg://app@db.internal/webhookd?options=-c+search_path%3Dwebhookd",
        "postgresql://app@db.internal/webhookd?options=-c%20search_path%3Dwebhookd",
    ],
)
def test_options_with_spaces_reach_libpq_as_written(url: str) -> None:
    assert conninfo_to_dict(conninfo(url)) == {
        "host": "db.internal",
        "user": "app",
        "dbname": "webhookd",
        "options": "-c search_path=webhookd",
    }


def test_every_part_of_the_url_is_kept() -> None:
    url = "postgresql+psycopg://app:p%40ss%20w'rd@db.internal:5433/webhookd?sslmode=require&application_name=x"
    assert conninfo_to_dict(conninfo(url)) == {
        "host": "db.internal",
        "port": "5433",
        "user": "app",
        "password": "p@ss w'rd",
        "dbname": "webhookd",
        "sslmode": "require",
        "application_name": "x",
    }


def test_a_unix_socket_and_several_hosts_are_libpqs_own_forms() -> None:
    assert conninfo_to_dict(conninfo("postgresql+psycopg://postgres@/webhookd?host=/run/pg&port=5499")) == {
        "host": "/run/pg",
        "port": "5499",
        "user": "postgres",
        "dbname": "webhookd",
    }
    several = conninfo_to_dict(conninfo("postgresql://app@/webhookd?host=a&host=b&port=1&port=2"))
    assert (several["host"], several["port"]) == ("a,b", "1,2")


def test_pooled_connections_add_the_statement_timeout_after_the_urls_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OPTIONS_VARIABLE, "-c work_mem=64MB")
    given = conninfo("postgresql://app@h/db?options=-c%20search_path%3Dwebhookd")
    assert pool_options(given, statement_timeout_ms=5000) == "-c search_path=webhookd -c statement_timeout=5000"


def test_without_options_in_the_url_pgoptions_is_kept_as_libpq_would(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPTIONS_VARIABLE, "-c work_mem=64MB")
    assert pool_options(conninfo("postgresql://app@h/db"), statement_timeout_ms=250) == (
        "-c work_mem=64MB -c statement_timeout=250"
    )
    monkeypatch.delenv(OPTIONS_VARIABLE)
    assert pool_options(conninfo("postgresql://app@h/db"), statement_timeout_ms=250) == "-c statement_timeout=250"
