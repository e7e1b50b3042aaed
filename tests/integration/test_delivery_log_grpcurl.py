"""Operators tail the delivery log with the real grpcurl binary, as the README shows."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cpod.integration.v1 import webhook_service_pb2 as pb
from webhook_calls import create_webhook

from webhookd.ports import Topic

# It runs grpcurl as a process.
pytestmark = pytest.mark.slow

GRPCURL = Path(sys.executable).parent / "grpcurl"
METHOD = "cpod.integration.v1.WebhookService/DeliveryLog"


async def next_message(stdout: asyncio.StreamReader, within: float) -> dict[str, Any]:
    """The next JSON message grpcurl prints (one pretty-printed object per response)."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    while True:
        line = await asyncio.wait_for(stdout.readline(), max(0.0, deadline - time.monotonic()))
        assert line, f"grpcurl ended its output; it printed {''.join(lines)!r}"
        lines.append(line.decode())
        if line.rstrip() == b"}":
            message: dict[str, Any] = json.loads("".join(lines))
            return message


async def test_grpcurl_tails_a_live_delivery_log(service, caller, workers, receiver) -> None:
    await create_webhook(caller, url=receiver.url, event_types=["*"])
    # The server runs in this event loop: the subprocess is awaited, never waited on in a blocking way.
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-H",
        f"authorization: Bearer {caller.token}",
        "-d",
        json.dumps({"follow": True}),
        service.grpc_target,
        METHOD,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 15
        while service.core.notifications.subscribers(Topic.ATTEMPTS) == 0:
            assert process.returncode is None, (await process.communicate())[1].decode()
            assert time.monotonic() < deadline, "grpcurl never opened the stream"
            await asyncio.sleep(0.02)
        published = await caller.PublishEvent(pb.PublishEventRequest(event_type="tail.live"))
        message = await next_message(process.stdout, within=15)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)

    entry = message["entry"]
    assert entry["event_id"] == published.event_id
    assert (entry["event_type"], entry["outcome"], entry["attempt"], entry["http_status"]) == (
        "tail.live",
        "succeeded",
        1,
        200,
    )
    assert entry["delivery_id"].startswith("dlv_") and entry["cursor"]
