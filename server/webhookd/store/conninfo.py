"""What psycopg connects with: the database URL as a libpq connection string, and the session options
our pooled connections add to it.

WEBHOOKD_DATABASE_URL is a SQLAlchemy URL (Alembic migrates through it), and every query parameter
in it is a libpq parameter meant for every connection: `sslmode`, several hosts, or `options` such
as `-c search_path=webhookd` for a schema of our own. SQLAlchemy decodes them (`%20` and `+` are
spaces); libpq's own URI parsing would read a `+` as a plus, so the string is written as libpq's
key=value pairs, each quoted as it needs.
"""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import make_url

# What libpq reads `options` from when the connection string has none.
OPTIONS_VARIABLE = "PGOPTIONS"


def conninfo(url: str) -> str:
    """`url` (`postgresql+psycopg://…`, or libpq's `postgresql://…`) as a libpq connection string."""
    parsed = make_url(url)
    parameters: dict[str, str | int | None] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    for key, value in parsed.query.items():
        # A repeated parameter (host=a&host=b) is libpq's comma-separated list.
        parameters[key] = ",".join(value) if isinstance(value, tuple) else value
    return make_conninfo("", **{key: value for key, value in parameters.items() if value is not None})


def pool_options(connection_string: str, *, statement_timeout_ms: int) -> str:
    """The `options` for a connection to `connection_string`: its own `options` (or PGOPTIONS, as
    libpq would use when it has none), then our statement_timeout, last so that it is the one that
    holds: the client-side bound on every unit of work counts on it (store/database.py)."""
    given = conninfo_to_dict(connection_string).get("options") or os.environ.get(OPTIONS_VARIABLE, "")
    return f"{given} -c statement_timeout={statement_timeout_ms}".strip()
