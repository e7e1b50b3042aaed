"""The embedded PostgreSQL and OpenBao servers: start, keep data across restarts, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from webhookd.secrets.embedded import EmbeddedOpenBao, EmbeddedOpenBaoError
from webhookd.store.embedded import EmbeddedPostgres

# Each test starts and stops a PostgreSQL or OpenBao of its own.
pytestmark = pytest.mark.slow

SERVER_DIR = Path(__file__).resolve().parents[2] / "server"


async def scalar(url: str, query: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return (await conn.execute(text(query))).scalar()
    finally:
        await engine.dispose()


def port_open(addr: str) -> bool:
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SERVER_DIR)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root, PostgreSQL runs as the `pgserver` user and needs every parent
    # of its data directory traversable, but each pytest start resets /tmp/pytest-of-<user> to 0700,
    # which would break a server of a concurrently running test session.
    path = Path(tempfile.mkdtemp(prefix="webhookd-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres(pg_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(pg_dir)
    yield pg
    pg.stop()


async def test_postgres_url_is_psycopg_over_the_unix_socket(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()

    assert url.startswith("postgresql+psycopg://postgres@/postgres?host=")
    assert await scalar(url, "SELECT current_database()") == "postgres"


async def test_postgres_data_survives_stop_and_start(postgres: EmbeddedPostgres) -> None:
    url = postgres.start()
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE kept (v text)"))
        await conn.execute(text("INSERT INTO kept VALUES ('still here')"))
    await engine.dispose()

    postgres.stop()
    assert not (postgres.pgdata / "postmaster.pid").exists()
    url = postgres.start()

    assert await scalar(url, "SELECT v FROM kept") == "still here"


async def test_create_database_gives_a_separate_database(postgres: EmbeddedPostgres) -> None:
    postgres.start()

    url = postgres.create_database("webhookd_test")

    assert postgres.create_database("webhookd_test") == url  # already there: same URL, no error
    assert await scalar(url, "SELECT current_database()") == "webhookd_test"
    postgres.drop_database("webhookd_test")
    with pytest.raises(ValueError):
        postgres.create_database('x"; DROP DATABASE postgres; --')


def test_process_exit_stops_the_server_it_started(pg_dir: Path) -> None:
    result = run_python(
        "import sys; from pathlib import Path; from webhookd.store.embedded import EmbeddedPostgres\n"
        f"print(EmbeddedPostgres(Path({str(pg_dir)!r})).start())"
    )

    assert result.returncode == 0, result.stderr
    assert not (pg_dir / "postgres" / "postmaster.pid").exists()


def test_server_left_by_a_killed_process_is_reused_then_stopped(pg_dir: Path) -> None:
    killed = run_python(
        "import os, signal; from pathlib import Path; from webhookd.store.embedded import EmbeddedPostgres\n"
        f"EmbeddedPostgres(Path({str(pg_dir)!r})).start(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert killed.returncode == -signal.SIGKILL
    assert (pg_dir / "postgres" / "postmaster.pid").exists()  # orphaned, still running

    pg = EmbeddedPostgres(pg_dir)
    pg.start()
    pg.stop()

    assert not (pg_dir / "postgres" / "postmaster.pid").exists()


# -- OpenBao -------------------------------------------------------------------------------------


def test_ephemeral_openbao_serves_kv2_at_secret_and_stops(tmp_path: Path) -> None:
    bao = EmbeddedOpenBao(tmp_path, mode="ephemeral")
    addr, token = bao.start()
    try:
        client = hvac.Client(url=addr, token=token)
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        assert mounts["secret/"]["type"] == "kv"
        assert mounts["secret/"]["options"]["version"] == "2"
        assert bao.log_path.exists()
    finally:
        bao.stop()

    assert not bao.running
    assert not port_open(addr)
    assert not (Path.home() / ".vault-token").exists() or token not in (Path.home() / ".vault-token").read_text()


def test_persistent_openbao_keeps_secrets_across_restart(tmp_path: Path) -> None:
    bao = EmbeddedOpenBao(tmp_path, mode="persistent")
    addr, token = bao.start()
    try:
        client = hvac.Client(url=addr, token=token)
        client.secrets.kv.v2.create_or_update_secret("kept", secret={"k": "v1"}, mount_point="secret")
    finally:
        bao.stop()

    keys = tmp_path / "openbao" / "unseal.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert not port_open(addr)

    addr, token_again = bao.start()
    try:
        assert token_again == token
        client = hvac.Client(url=addr, token=token)
        read = client.secrets.kv.v2.read_secret_version("kept", mount_point="secret", raise_on_deleted_version=True)
        assert read["data"]["data"] == {"k": "v1"}
    finally:
        bao.stop()


def test_persistent_openbao_without_its_key_file_says_so(tmp_path: Path) -> None:
    bao = EmbeddedOpenBao(tmp_path, mode="persistent")
    bao.start()
    bao.stop()
    (tmp_path / "openbao" / "unseal.json").unlink()

    with pytest.raises(EmbeddedOpenBaoError, match="key file"):
        bao.start()
    assert not bao.running
