"""What store/database.py says a database failure was, for the failures no test can cheaply force on
a real PostgreSQL (tests/integration/test_database_failure_reasons.py forces the others)."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pytest

from webhookd.store.database import failure_reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"), "pool timeout"),
        (
            psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
            "connection lost",
        ),
        (psycopg.errors.LockNotAvailable(), "lock timeout (SQLSTATE 55P03, LockNotAvailable)"),
        (psycopg.errors.SerializationFailure(), "serialization failure (SQLSTATE 40001, SerializationFailure)"),
        (psycopg.errors.TooManyConnections(), "too many connections (SQLSTATE 53300, TooManyConnections)"),
        (psycopg.errors.ConnectionFailure(), "connection lost (SQLSTATE 08006, ConnectionFailure)"),
        (psycopg.errors.QueryCanceled(), "statement canceled (SQLSTATE 57014, QueryCanceled)"),
        (TimeoutError(), "no answer in time"),
    ],
)
def test_each_failure_is_named_by_its_kind(error: BaseException, reason: str) -> None:
    assert reason in failure_reason(error)


def test_the_servers_words_are_not_repeated() -> None:
    # A client-side error's text can carry the host and port; the kind and class say enough.
    said = failure_reason(psycopg.OperationalError('connection to server at "10.1.2.3", port 5432 failed'))
    assert "10.1.2.3" not in said
