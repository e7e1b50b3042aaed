"""Embedded PostgreSQL (PyPI `pgserver`) for `webhookd dev` and tests, used when no database URL is set.

pgserver keeps one server per data directory and counts the processes using it in
`<pgdata>/.handle_pids.json`; the last process to let go (at `stop()` or at interpreter exit) stops
the server. Data lives in the directory, so starting again on the same directory finds it again.
When run as root, pgserver creates a `pgserver` system user to run PostgreSQL and makes the data
directory's parent folders world-traversable. It listens on a unix socket only (no TCP port).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

POSTGRES_USER = "postgres"
DEFAULT_DATABASE = "postgres"
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LOG_TAIL_LINES = 30


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or used; the message carries the tail of its log."""


class EmbeddedPostgres:
    """One embedded PostgreSQL server under `data_dir / "postgres"`.

    Blocking: call `start()` and `stop()` from a thread when an event loop is running.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (Path(data_dir) / "postgres").expanduser().absolute()
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Start (or attach to) the server and return the SQLAlchemy URL of the `postgres` database."""
        with self._lock:
            if self._server is None:
                self._server = self._start()
            return self.url()

    def stop(self) -> None:
        """Let go of the server; it stops unless another process still uses the same data directory."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            try:
                server.cleanup()
            finally:
                # pgserver registers its cleanup at exit once per handle; this one is done.
                atexit.unregister(server._cleanup)

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """The `postgresql+psycopg://` URL of `database`, reached through the server's unix socket."""
        host, port = self._socket()
        query = {"host": host} if port is None else {"host": host, "port": str(port)}
        url = URL.create("postgresql+psycopg", username=POSTGRES_USER, database=database, query=query)
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists, and return its URL."""
        self._check_name(name)
        with self._connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, closing its connections."""
        self._check_name(name)
        with self._connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self) -> Any:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        pgserver = _import_pgserver()
        self._forget_dead_handles(pgserver)
        try:
            return pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            raise EmbeddedPostgresError(
                f"embedded PostgreSQL failed to start under {self.pgdata}: {exc}\n{self._log_tail()}"
            ) from exc

    def _forget_dead_handles(self, pgserver: Any) -> None:
        # A process killed without running its exit hooks stays in the handle list, and pgserver would
        # then never stop the server again; drop the ids of processes that no longer exist.
        handles = self.pgdata / ".handle_pids.json"
        with pgserver.PostgresServer._lock:
            try:
                pids = json.loads(handles.read_text())
            except (OSError, ValueError):
                return
            alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
            if alive != pids:
                handles.write_text(json.dumps(alive))

    def _socket(self) -> tuple[str, int | None]:
        if self._server is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        info = self._server.get_postmaster_info()
        if info.socket_dir is None:
            raise EmbeddedPostgresError(f"embedded PostgreSQL under {self.pgdata} has no unix socket")
        port = int(info.port) if info.port is not None else None
        return str(info.socket_dir), port

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        host, port = self._socket()
        return psycopg.connect(host=host, port=port, user=POSTGRES_USER, dbname=DEFAULT_DATABASE, autocommit=True)

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name must match {_DATABASE_NAME.pattern}, not {name!r}")

    def _log_tail(self) -> str:
        try:
            lines = (self.pgdata / "log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "last lines of the server log:\n" + "\n".join(lines[-_LOG_TAIL_LINES:])


def _import_pgserver() -> Any:
    # pgserver picks a lock directory at import; without XDG_RUNTIME_DIR platformdirs warns and
    # falls back to /tmp/runtime-<uid>, which is fine here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    return pgserver


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
