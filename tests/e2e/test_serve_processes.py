"""`webhookd serve` runs its server and worker processes: they share the ports, every one of them
serves, metrics cover them all, a killed worker is started again, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import hvac
import hvac.exceptions
import psutil
import psycopg
import pytest
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb

from certificates import self_signed
from log_streams import until
from ports import free_port
from proxies import forward_proxy
from receivers import Receiver
from support import JWT_SECRET, SERVING_LINE, in_schema_of_its_own, make_caller
from webhookd.secrets.embedded import wait_for_kv2
from webhookd.store.conninfo import conninfo

pytestmark = pytest.mark.slow
READY_WITHIN = 60.0


@contextlib.asynccontextmanager
async def serving(backends, database_url: str, tmp_path: Path, **settings: str) -> AsyncIterator[tuple[int, int, int]]:
    """`webhookd serve` with `settings`, once every child is ready (serve prints its serving line: a
    server answers /readyz before the workers are up, and a worker killed while it starts makes
    serve stop as one that cannot start) and /readyz answers; yields (pid, gRPC port, HTTP port)."""
    grpc_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_JWT_SECRET": JWT_SECRET,
        "WEBHOOKD_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "WEBHOOKD_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "WEBHOOKD_ALLOW_INSECURE_URLS": "1",
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_DATA_DIR": str(tmp_path),
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        **settings,
    }
    with (tmp_path / "serve.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "webhookd"), "serve", env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + READY_WITHIN
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=2.0) as http:
            while True:
                assert process.returncode is None, (tmp_path / "serve.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    serve_log = (tmp_path / "serve.log").read_text()
                    if SERVING_LINE in serve_log and (await http.get("/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.1)
        yield process.pid, grpc_port, http_port
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 40)


def children(pid: int, role: str) -> list[psutil.Process]:
    """The running children of `pid` in `role` (a killed one not yet reaped is not running)."""
    found = []
    try:
        listed = psutil.Process(pid).children()
    except psutil.NoSuchProcess:  # a child ended while being listed: ask again
        return []
    for child in listed:
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):
            if role in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found


async def attempts_counted(http_port: int, n: int) -> None:
    """Reads /metrics until it counts `n` succeeded attempts: a worker counts its attempt just after
    the receiver has answered it."""
    counted = f'webhookd_delivery_attempts_total{{outcome="succeeded"}} {float(n)}'
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5.0) as http:
        deadline = time.monotonic() + 10
        while counted not in (metrics := (await http.get("/metrics")).text):
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.05)


async def publish_and_wait(caller, receiver: Receiver, n: int) -> None:
    await caller.PublishEvent(pb.PublishEventRequest(event_type="order.created"))
    await receiver.wait_for(n)


async def serve_and_deliver_one(backends, database_url: str, tmp_path: Path, **settings: str) -> wpb.Webhook:
    """`webhookd serve` with `settings` creates a webhook to a receiver and delivers an event to it."""
    receiver = await Receiver().start()
    try:
        async with (
            serving(backends, database_url, tmp_path, **settings) as (_, grpc_port, _),
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
        ):
            caller = make_caller(channel)
            created = await caller.CreateWebhook(
                pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url, event_types=["order.*"]))
            )
            await publish_and_wait(caller, receiver, 1)
    finally:
        await receiver.stop()
    return created.webhook


async def test_servers_share_the_ports_and_a_killed_worker_comes_back(backends, own_database, tmp_path) -> None:
    receiver = await Receiver().start()
    try:
        async with serving(
            backends, own_database, tmp_path, WEBHOOKD_SERVER_PROCESSES="2", WEBHOOKD_WORKER_PROCESSES="2"
        ) as (pid, grpc_port, http_port):
            servers, workers = children(pid, "server"), children(pid, "worker")
            assert (len(servers), len(workers)) == (2, 2)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                caller = make_caller(channel)
                await caller.CreateWebhook(
                    pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url=receiver.url, event_types=["order.*"]))
                )
                await publish_and_wait(caller, receiver, 1)
                await attempts_counted(http_port, 1)  # the attempt is counted before its worker is killed

                killed = workers[0].pid
                workers[0].kill()
                try:
                    # A first death waits restart_backoff.FIRST_DELAY_SECONDS; the rest is a busy machine's headroom.
                    await until(lambda: len([w for w in children(pid, "worker") if w.pid != killed]) == 2, 30)
                except AssertionError as failed:
                    try:
                        alive: object = [(w.pid, w.status()) for w in psutil.Process(pid).children()]
                    except psutil.NoSuchProcess:
                        alive = "none: serve itself has exited"  # its log says why
                    log = (tmp_path / "serve.log").read_text()[-4000:]
                    raise AssertionError(
                        f"no worker in the killed one's place; children {alive}; log:\n{log}"
                    ) from failed
                await publish_and_wait(caller, receiver, 2)

            # Both server processes listen on the one port.
            listening = {
                conn.pid for conn in psutil.net_connections("tcp") if conn.laddr and conn.laddr.port == http_port
            } & {server.pid for server in servers}
            assert listening == {server.pid for server in servers}
            # The worker processes' attempts (the killed one's included) are in the servers' /metrics.
            await attempts_counted(http_port, 2)
        assert not psutil.pid_exists(servers[0].pid) and not psutil.pid_exists(servers[1].pid)
    finally:
        await receiver.stop()


async def test_serve_keeps_everything_in_the_schema_its_database_url_names(backends, own_database, tmp_path) -> None:
    """The URL's `options` reach every connection of every process: migrations, the servers' pool,
    the workers' claims and records, the notifications between them (store/conninfo.py)."""
    schema = "webhookd_own"
    schema_url = await in_schema_of_its_own(own_database, schema)
    await serve_and_deliver_one(backends, schema_url, tmp_path, WEBHOOKD_WORKER_PROCESSES="1")
    async with await psycopg.AsyncConnection.connect(conninfo(own_database), autocommit=True) as admin:
        placed = await (
            await admin.execute(
                f"SELECT to_regclass('public.webhooks') IS NULL, (SELECT count(*) FROM {schema}.attempts)"
            )
        ).fetchone()
    assert placed == (True, 1)


async def test_serve_keeps_signing_secrets_in_the_vault_namespace_it_is_given(backends, own_database, tmp_path) -> None:
    """VAULT_NAMESPACE reaches every process: the server writes a new webhook's secret there and the
    worker reads it there to sign the delivery; the root namespace never holds it."""
    namespace = "team_" + secrets.token_hex(4)
    hvac.Client(url=backends.vault_addr, token=backends.vault_token).sys.create_namespace(path=namespace)
    in_namespace = hvac.Client(url=backends.vault_addr, token=backends.vault_token, namespace=namespace)
    in_namespace.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    wait_for_kv2(in_namespace, "secret", within=30)
    # Signed with the secret the worker read from the namespace.
    webhook = await serve_and_deliver_one(backends, own_database, tmp_path, VAULT_NAMESPACE=namespace)
    (tenant,) = in_namespace.secrets.kv.v2.list_secrets(path="webhookd/tenants", mount_point="secret")["data"]["keys"]
    path = f"webhookd/tenants/{tenant}webhooks/{webhook.id}"
    in_namespace.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.InvalidPath):
        hvac.Client(url=backends.vault_addr, token=backends.vault_token).secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )


async def test_serve_renews_a_vault_token_with_a_ttl(backends, own_database, tmp_path) -> None:
    """A token that would run out in seconds is renewed by the running processes (when half its TTL
    is left), so secrets can still be written once its first TTL has passed. The TTL leaves a slow
    start-up (about 3 s here) room to renew in time."""
    admin = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    created = admin.auth.token.create(ttl="12s", renewable=True, policies=["root"], explicit_max_ttl="1h")
    token = created["auth"]["client_token"]

    def expires_at() -> datetime:
        return datetime.fromisoformat(admin.auth.token.lookup(token)["data"]["expire_time"])

    first = expires_at()
    async with (
        serving(backends, own_database, tmp_path, VAULT_TOKEN=token) as (_, grpc_port, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        deadline = time.monotonic() + 30
        while expires_at() <= first:  # renewed by a server or a worker
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            await asyncio.sleep(0.1)
        await until(lambda: datetime.now(UTC) > first, 30)  # the first TTL is over
        created_webhook = await make_caller(channel).CreateWebhook(
            pb.CreateWebhookRequest(webhook=wpb.Webhook(name="w", url="http://127.0.0.1:9/x", event_types=["a.*"]))
        )
        assert created_webhook.webhook.id


SECRET_ID_USES = 10


async def test_serve_logs_in_to_vault_with_approle(backends, own_database, tmp_path) -> None:
    """With an AppRole role id and a secret id file instead of VAULT_TOKEN, the server logs in to write
    a new webhook's secret and the worker logs in to read it and sign the delivery."""
    admin = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    mount = "approle-" + secrets.token_hex(4)
    admin.sys.enable_auth_method("approle", path=mount)
    admin.sys.create_or_update_policy(
        mount, 'path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }'
    )
    admin.auth.approle.create_or_update_approle(
        "webhookd", token_policies=[mount], secret_id_num_uses=SECRET_ID_USES, mount_point=mount
    )
    role_id = admin.auth.approle.read_role_id("webhookd", mount_point=mount)["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("webhookd", mount_point=mount)["data"]["secret_id"]
    (tmp_path / "secret-id").write_text(secret_id)
    login = {
        "VAULT_TOKEN": "",
        "WEBHOOKD_VAULT_ROLE_ID": role_id,
        "WEBHOOKD_VAULT_SECRET_ID_FILE": str(tmp_path / "secret-id"),
        "WEBHOOKD_VAULT_APPROLE_MOUNT": mount,
    }
    await serve_and_deliver_one(backends, own_database, tmp_path, **login)
    serve_log = (tmp_path / "serve.log").read_text()
    assert secret_id not in serve_log
    # Each process logged in for a token of its own (the server's and the worker's logins used the
    # secret id), and revoked it as it stopped.
    left = admin.auth.approle.read_secret_id("webhookd", secret_id, mount_point=mount)["data"]["secret_id_num_uses"]
    assert SECRET_ID_USES - left >= 2
    accessors = admin.auth.token.list_accessors()["data"]["keys"]
    metas = [admin.auth.token.lookup_accessor(accessor)["data"].get("meta") or {} for accessor in accessors]
    assert not [meta for meta in metas if meta.get("role_name") == "webhookd"], serve_log


async def test_serve_delivers_through_the_delivery_proxy_with_its_credentials(backends, own_database, tmp_path) -> None:
    """WEBHOOKD_DELIVERY_PROXY reaches the worker processes: an https delivery goes through the proxy's
    CONNECT tunnel (authenticated there, never inside it), and its password stays out of the log."""
    certificate, key = self_signed("receiver")
    (tmp_path / "ca.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "ca.pem", tmp_path / "key.pem")
    receiver = await Receiver(tls=tls).start()
    password = f"pw-{secrets.token_hex(8)}"
    try:
        with forward_proxy(tmp_path, f"relay:{password}") as proxy:
            settings = {
                "WEBHOOKD_DELIVERY_PROXY": f"http://relay:{password}@{proxy}",
                "WEBHOOKD_LOG_LEVEL": "INFO",
                # The receiver's self-signed certificate, trusted as a CA by OpenSSL in the workers.
                "SSL_CERT_FILE": str(tmp_path / "ca.pem"),
            }
            async with (
                serving(backends, own_database, tmp_path, **settings) as (_, grpc_port, _),
                grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
            ):
                caller = make_caller(channel)
                webhook = wpb.Webhook(name="w", url=receiver.url, event_types=["order.*"])
                await caller.CreateWebhook(pb.CreateWebhookRequest(webhook=webhook))
                await publish_and_wait(caller, receiver, 1)
    finally:
        await receiver.stop()

    [request] = receiver.received
    assert "webhook-signature" in {name.lower() for name in request.headers}
    assert "proxy-authorization" not in {name.lower() for name in request.headers}
    assert f"CONNECT 127.0.0.1:{receiver.port}" in (tmp_path / "proxy.log").read_text()
    assert password not in (tmp_path / "serve.log").read_text()
