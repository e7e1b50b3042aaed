"""A rotation is seen at once by a `webhookd worker` in another process than the one that rotated.

The service (in this process) and one worker process share a database of their own. The worker has
already signed with the first secret (so it holds it), then the secret is rotated here, and the very
next delivery, published as soon as RotateWebhookSecret returns, is checked with the official
`standardwebhooks` library: it verifies with the new secret, and after a 0 s overlap with nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2, struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from support import running_service
from webhookd.app import Backends

pytestmark = pytest.mark.slow
FIRST_DELIVERY_WITHIN = 30.0  # the worker process starts first


def verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        StandardWebhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def publish(caller, n: int) -> None:
    payload = struct_pb2.Struct()
    payload.update({"n": n})
    published = await caller.PublishEvent(pb.PublishEventRequest(event_type="order.paid", payload=payload))
    assert published.deliveries_queued == 1


async def test_worker_in_another_process_signs_with_the_new_secret_right_after_rotation(
    settings, backends, own_database, receiver, tmp_path
) -> None:
    isolated = Backends(own_database, backends.vault_addr, backends.vault_token)
    env = {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": own_database,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_DATA_DIR": str(tmp_path),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        # No metrics server: on its default port it met another test's worker process and could not start.
        "WEBHOOKD_METRICS_ADDR": "",
    }
    log = tmp_path / "worker.log"
    async with running_service(settings, isolated) as caller:
        # Started once running_service has migrated the database: a worker alone refuses a schema
        # older than its release's, one still being migrated too, and exits (its log then says
        # "the database is at revision 0006, older than ...").
        with log.open("ab") as out:
            worker = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "webhookd"), "worker", env=env, stdout=out, stderr=out
            )
        try:
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url, event_types=["order.*"]))
            )
            await publish(caller, 1)
            try:
                [first] = await receiver.wait_for(1, within=FIRST_DELIVERY_WITHIN)
            except TimeoutError:
                pytest.fail(f"the worker process delivered nothing; its log:\n{log.read_text()}")
            assert verifies(created.signing_secret, first.body, first.headers)

            overlapping = await caller.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=created.webhook.id))
            await publish(caller, 2)
            _, during = await receiver.wait_for(2)

            retiring = await caller.RotateWebhookSecret(
                pb.RotateWebhookSecretRequest(id=created.webhook.id, overlap=duration_pb2.Duration(seconds=0))
            )
            await publish(caller, 3)
            *_, after = await receiver.wait_for(3)
        finally:
            if worker.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), 20)

    assert verifies(overlapping.signing_secret, during.body, during.headers)
    assert verifies(created.signing_secret, during.body, during.headers)  # the overlap keeps the old one
    assert verifies(retiring.signing_secret, after.body, after.headers)
    assert len(after.headers["webhook-signature"].split()) == 1
    assert not verifies(overlapping.signing_secret, after.body, after.headers)
    assert not verifies(created.signing_secret, after.body, after.headers)
