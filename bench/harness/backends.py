"""The backends the service under test runs on: an embedded PostgreSQL and an ephemeral OpenBao.

Started once per run in the run's temp dir, or taken over from `bench/all.py`, which starts them
once for every benchmark and passes them on in BENCH_BACKENDS. Each service start gets a database of
its own, dropped at the end of the run.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from harness.run import Run
from webhookd.secrets.embedded import PID_FILE, EmbeddedOpenBao
from webhookd.store.conninfo import conninfo
from webhookd.store.embedded import EmbeddedPostgres

ENV = "BENCH_BACKENDS"
# The service may open ~40 connections and its workers a few dozen per process; PostgreSQL's default
# of 100 is too few once several worker processes run.
MAX_CONNECTIONS = 400
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Backends:
    database_url: str  # SQLAlchemy URL of the server's `postgres` database (unix socket)
    vault_addr: str
    vault_token: str
    vault_pid: int  # OpenBao's process, whose CPU the benchmarks count beside the service's

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    def new_database(self, label: str) -> str:
        """Creates an empty database and returns its SQLAlchemy URL (what WEBHOOKD_DATABASE_URL takes)."""
        name = f"bench_{label}_{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(conninfo(self.database_url), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return make_url(self.database_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database or ""
        with psycopg.connect(conninfo(self.database_url), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def settle(self) -> None:
        """Writes out what earlier benchmarks left in PostgreSQL's buffers and WAL (a CHECKPOINT), so
        the next one does not share the disk with a checkpoint spread over the minutes after them."""
        with psycopg.connect(conninfo(self.database_url), autocommit=True) as connection:
            connection.execute("CHECKPOINT")


def backends(run: Run) -> Backends:
    """The backends handed down in BENCH_BACKENDS, or new ones under the run's temp dir."""
    inherited = os.environ.get(ENV)
    if inherited:
        return Backends(**json.loads(inherited))
    run.progress("starting PostgreSQL and OpenBao")
    postgres = EmbeddedPostgres(run.dir)
    run.defer("stop PostgreSQL", postgres.stop)
    postgres.start()
    _allow_connections(postgres, MAX_CONNECTIONS)
    vault = EmbeddedOpenBao(run.dir, mode="ephemeral")
    run.defer("stop OpenBao", vault.stop)
    vault_addr, vault_token = vault.start()
    vault_pid = int((vault.dir / PID_FILE).read_text())
    return Backends(postgres.url(), vault_addr, vault_token, vault_pid)


def _allow_connections(postgres: EmbeddedPostgres, count: int) -> None:
    """Raise max_connections (initdb's default is 100) and restart the server to apply it."""
    with psycopg.connect(conninfo(postgres.url()), autocommit=True) as connection:
        connection.execute(sql.SQL("ALTER SYSTEM SET max_connections = {}").format(sql.Literal(count)))
    postgres.stop()
    postgres.start()
