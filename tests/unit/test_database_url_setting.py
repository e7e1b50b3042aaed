"""WEBHOOKD_DATABASE_URL: the PostgreSQL URL forms people hand out are taken, anything else is a clear
settings error naming the variable (and never echoing a password)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from webhookd.config import SettingsError, load

NAME = "WEBHOOKD_DATABASE_URL"


@pytest.mark.parametrize(
    "given",
    [
        "postgresql+psycopg://app:s3cret@db.internal:5433/webhookd?sslmode=require",
        "postgresql://app:s3cret@db.internal:5433/webhookd?sslmode=require",
        "postgres://app:s3cret@db.internal:5433/webhookd?sslmode=require",
    ],
)
def test_postgresql_urls_are_taken_and_name_psycopg_3(given: str) -> None:
    url = make_url(load({NAME: given}).database_url or "")
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database, dict(url.query)) == (
        "postgresql+psycopg",
        "app",
        "s3cret",
        "db.internal",
        5433,
        "webhookd",
        {"sslmode": "require"},
    )


def test_query_parameters_keep_their_spaces() -> None:
    url = make_url(load({NAME: "postgres://app@h/db?options=-c%20search_path%3Dwebhookd"}).database_url or "")
    assert url.query == {"options": "-c search_path=webhookd"}


def test_unset_means_the_embedded_postgresql() -> None:
    assert load({}).database_url is None
    assert load({NAME: ""}).database_url is None


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("mysql://app:s3cret@db.internal/webhookd", "must be a PostgreSQL URL"),
        ("db.internal:5432", "is not a database URL"),
    ],
)
def test_anything_else_is_a_settings_error_naming_the_variable(given: str, said: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load({NAME: given})
    assert str(raised.value).startswith(f"{NAME} {said}")
    assert "s3cret" not in str(raised.value)
