"""`webhookd serve` killed with SIGKILL (all its processes at once, as a machine or container dies)
right after answering 2xx to an inbound request still has the event when it starts again: the receipt
is committed before the answer is sent.

Signed requests go out several at once; the first 200 triggers the kill, and every request that got a
200 before the process died must be readable by a gRPC consumer of the restarted process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from standardwebhooks.webhooks import Webhook as StandardWebhook

from ports import free_port
from support import JWT_SECRET, make_caller, new_tenant_id
from webhookd.auth.tokens import mint

IN_FLIGHT = 16
READY_WITHIN = 30.0


def serve_environment(backends, database_url: str, data_dir: Path, grpc_port: int, http_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_JWT_SECRET": JWT_SECRET,
        "WEBHOOKD_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "WEBHOOKD_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "WEBHOOKD_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
        "WEBHOOKD_ALLOW_INSECURE_URLS": "1",
        "WEBHOOKD_WORKERS": "1",
        "WEBHOOKD_DATA_DIR": str(data_dir),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
    }


async def start_serve(env: dict[str, str], log: Path, base_url: str) -> asyncio.subprocess.Process:
    """`webhookd serve`, once its /readyz answers 200 (at most READY_WITHIN seconds)."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "webhookd"),
            "serve",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # apart from the test's group (its children have a group of their own)
        )
    deadline = time.monotonic() + READY_WITHIN
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as http:
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                pytest.fail(f"webhookd serve exited with {process.returncode}; its log:\n{output}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return process
            if time.monotonic() >= deadline:
                await end(process)
                output = await asyncio.to_thread(log.read_text)
                pytest.fail(f"webhookd serve not ready within {READY_WITHIN}s; its log:\n{output}")
            await asyncio.sleep(0.1)


def kill_all(pid: int) -> None:
    """SIGKILL to the supervisor and every process it started, at once. Not its process group: the
    children run in one of their own, out of reach of a terminal's Ctrl-C."""
    with contextlib.suppress(psutil.NoSuchProcess):
        supervisor = psutil.Process(pid)
        for process in [*supervisor.children(recursive=True), supervisor]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


async def end(process: asyncio.subprocess.Process) -> None:
    """SIGKILL to every process of it (unless it already exited) and wait, bounded, for the exit."""
    kill_all(process.pid)
    await asyncio.wait_for(process.wait(), 15)


@pytest.mark.slow
async def test_event_acknowledged_with_2xx_survives_sigkill(backends, own_database, tmp_path) -> None:
    grpc_port, http_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    env = serve_environment(backends, own_database, tmp_path, grpc_port, http_port)
    log = tmp_path / "serve.log"
    tenant_id = new_tenant_id()
    token = mint(JWT_SECRET, tenant_id=tenant_id, subject="person_1")

    process = await start_serve(env, log, base_url)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
            created = await http.post(
                "/api/v1/integration/webhooks",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "in", "direction": "inbound"},
            )
            assert created.status_code == 200, created.text
            webhook = created.json()["webhook"]
            signer = StandardWebhook(created.json()["signing_secret"])
            assert webhook["url"] == f"{base_url}/api/v1/integration/inbound/{webhook['id']}"

            acknowledged: dict[str, bytes] = {}
            first_ok = asyncio.Event()

            async def send(n: int) -> None:
                message_id, body = f"msg_{n}", json.dumps({"type": "order.paid", "n": n})
                now = datetime.now(UTC)
                headers = {
                    "webhook-id": message_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(message_id, now, body),
                    "content-type": "application/json",
                }
                with contextlib.suppress(httpx.TransportError):  # the ones the kill cuts off
                    response = await http.post(webhook["url"], content=body, headers=headers)
                    if response.status_code == 200:
                        acknowledged[message_id] = body.encode()
                        first_ok.set()

            senders = asyncio.gather(*(send(n) for n in range(IN_FLIGHT)))
            await asyncio.wait_for(first_ok.wait(), 10)
            kill_all(process.pid)
            await asyncio.wait_for(senders, 15)
        await end(process)
        assert process.returncode == -signal.SIGKILL
        assert acknowledged

        process = await start_serve(env, log, base_url)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            caller = make_caller(channel, tenant_id)
            call = caller.StreamInboundEvents(pb.StreamInboundEventsRequest(webhook_id=webhook["id"]))
            stored = {response.event.message_id: response.event.body async for response in call}
    finally:
        await end(process)

    assert set(acknowledged) <= set(stored), f"acknowledged {sorted(acknowledged)}, stored {sorted(stored)}"
    for message_id, body in acknowledged.items():
        assert stored[message_id] == body
