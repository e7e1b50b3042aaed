"""A `webhookd worker` already running when a newer release migrates the database notices (it reads
the revision again every WEBHOOKD_SCHEMA_CHECK_SECONDS), claims nothing more, gives back what it holds
(a lease is never lost: the deliveries are pending again, unleased) and exits 2 with the one line
start-up prints for the same schema."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from test_migrate_command import FUTURE_REVISION

from support import Database, running_service
from webhookd.app import Backends
from webhookd.runners import WORKER_READY

pytestmark = pytest.mark.slow

WEBHOOKD = str(Path(sys.executable).parent / "webhookd")
EVENTS = 3
BOUND_SECONDS = 30.0  # a bound on each wait, never a figure the test measures


async def test_a_running_worker_gives_back_its_deliveries_and_exits_when_a_newer_release_migrates(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    answer = asyncio.Event()  # the receiver answers nothing until the end: the worker holds every delivery

    async def held(request: web.Request, count: int) -> web.StreamResponse:
        await answer.wait()
        return web.Response(text="ok")

    receiver.respond = held
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    database = Database(own_database)
    process: asyncio.subprocess.Process | None = None
    try:
        async with running_service(settings, isolated) as caller:
            await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="schema", url=receiver.url, event_types=["s.*"]))
            )
            for _ in range(EVENTS):
                await caller.PublishEvent(pb.PublishEventRequest(event_type="s.tick", payload_json="{}"))

        process = await asyncio.create_subprocess_exec(
            WEBHOOKD,
            "worker",
            env=os.environ
            | {
                "WEBHOOKD_DATABASE_URL": own_database,
                "VAULT_ADDR": backends.vault_addr,
                "VAULT_TOKEN": backends.vault_token,
                "WEBHOOKD_DATA_DIR": str(tmp_path),
                "WEBHOOKD_LOG_LEVEL": "WARNING",
                "WEBHOOKD_METRICS_ADDR": "",
                "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
                "WEBHOOKD_SHUTDOWN_GRACE_SECONDS": "0.5",
                "WEBHOOKD_SCHEMA_CHECK_SECONDS": "0.2",
            },
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), BOUND_SECONDS)
        assert WORKER_READY in ready.decode()
        await receiver.wait_for(EVENTS, within=BOUND_SECONDS)

        await database.execute(f"UPDATE alembic_version SET version_num = '{FUTURE_REVISION}'")
        _, err = await asyncio.wait_for(process.communicate(), BOUND_SECONDS)
    finally:
        answer.set()
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    try:
        lines = err.decode().splitlines()
        assert process.returncode == 2, err.decode()
        said = [line for line in lines if line.startswith("webhookd: ")]
        assert said == lines[-1:], err.decode()
        assert said[0].startswith("webhookd: cannot start: database schema: ") and FUTURE_REVISION in said[0]
        rows = await database.rows("SELECT status, lease_token FROM deliveries")
        assert [(row.status, row.lease_token) for row in rows] == [("pending", None)] * EVENTS
        assert len(receiver.received) == EVENTS
    finally:
        await database.close()
