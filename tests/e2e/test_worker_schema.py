"""`webhookd worker` started alone migrates nothing: on a database whose schema is not this release's
newest, a newer release's or an older one's, it refuses as `migrate` and `server` do, one line, exit 2."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from test_migrate_command import FUTURE_REVISION, migrated_by_a_newer_release

from webhookd.app import Backends
from webhookd.runners import WORKER_READY
from webhookd.store import migrate

pytestmark = pytest.mark.slow

WEBHOOKD = str(Path(sys.executable).parent / "webhookd")


def _head_and_the_one_before() -> tuple[str, str]:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    assert head is not None
    before = scripts.get_revision(head).down_revision
    assert isinstance(before, str)
    return head, before


async def _worker(backends: Backends, database_url: str, data_dir: Path, within: float = 60) -> tuple[int, str, str]:
    """Runs a worker until it exits; one that reports running instead is stopped, and its output returned."""
    env = os.environ | {
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_DATA_DIR": str(data_dir),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        "WEBHOOKD_METRICS_ADDR": "",  # no port shared with anything else running
    }
    process = await asyncio.create_subprocess_exec(
        WEBHOOKD,
        "worker",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        out = await asyncio.wait_for(process.stdout.readline(), within)  # the ready line, or EOF on exit
        if WORKER_READY in out.decode():
            process.terminate()
        rest, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, (out + rest).decode(), err.decode()


async def test_a_worker_alone_refuses_a_database_a_newer_release_migrated(backends, own_database, tmp_path) -> None:
    await migrated_by_a_newer_release(own_database)

    code, out, err = await _worker(backends, own_database, tmp_path)

    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("webhookd: cannot start: database schema: ") and FUTURE_REVISION in err, err


async def test_a_worker_alone_refuses_a_database_not_yet_migrated_to_its_schema(
    backends, own_database, tmp_path
) -> None:
    head, before = _head_and_the_one_before()
    await migrate.upgrade(own_database, revision=before)

    code, out, err = await _worker(backends, own_database, tmp_path)

    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("webhookd: cannot start: database schema: ") and before in err and head in err, err
    assert "webhookd migrate" in err, err
