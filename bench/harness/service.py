"""The service under test: `<venv>/bin/webhookd serve` in a process of its own, and a client to set it up.

The service gets a fresh database on the run's backends, free loopback ports, a JWT secret the
benchmark mints tokens with (`webhookd token`), http:// and loopback targets allowed, and whatever
settings the benchmark adds (WEBHOOKD_WORKERS, WEBHOOKD_WORKER_PROCESSES, WEBHOOKD_SERVER_PROCESSES...),
passed through unchanged. Settings already in the environment pass through too; the benchmark's win.
It is ready once it prints its "webhookd serving gRPC on ..." line and /readyz answers 200.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from google.protobuf import struct_pb2

from harness.backends import Backends
from harness.cpu import SessionUsage, session_usage
from harness.run import Run
from webhookd.store.conninfo import conninfo

HOST = "127.0.0.1"
WEBHOOKD = Path(sys.executable).with_name("webhookd")
JWT_SECRET = "bench-only-jwt-secret-bench-only-jwt-secret"
# "webhookd serving gRPC on H:P, HTTP on port P" today; "... HTTP on H:P (n server and m worker processes)"
# once the service runs several processes. Only the start of the line is relied on: the ports are ours.
SERVING = re.compile(r"^webhookd serving gRPC on ")
START_LIMIT = 90.0
READY_LIMIT = 30.0
CALL_LIMIT = 30.0
STOP_GRACE = 15.0  # its own shutdown grace is 2 s (WEBHOOKD_SHUTDOWN_GRACE_SECONDS) per part
# Never called: benchmarks that publish nothing still need a valid outbound URL.
UNUSED_URL = f"http://{HOST}:9/hook"


@dataclass(frozen=True)
class Service:
    grpc_target: str
    http_url: str
    database: str  # libpq connection string, for the benchmark's own SQL (timing reads and fixtures)
    session: int  # the serve process leads a session: every process it forks is in it
    vault_pid: int  # the OpenBao it writes secrets to, whose CPU the benchmarks count beside its own

    def usage(self) -> SessionUsage:
        return session_usage(self.session)


def free_port(*taken: int) -> int:
    """A loopback port nothing listens on, and none of `taken`: the kernel may hand the port it just
    gave out again, and a service given one port for gRPC and HTTP refuses to start."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError(f"the kernel kept handing out ports already taken: {sorted(taken)}")


def start_service(run: Run, backends: Backends, label: str, env: Mapping[str, str] | None = None) -> Service:
    database_url = backends.new_database(label)
    run.defer(f"drop database of {label}", backends.drop_database, database_url)
    grpc_port = free_port()
    http_port = free_port(grpc_port)
    metrics_port = free_port(grpc_port, http_port)
    settings = {
        "WEBHOOKD_DATA_DIR": str(run.dir / f"webhookd-{label}"),
        "WEBHOOKD_DATABASE_URL": database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_JWT_SECRET": JWT_SECRET,
        "WEBHOOKD_GRPC_ADDR": f"{HOST}:{grpc_port}",
        "WEBHOOKD_HTTP_ADDR": f"{HOST}:{http_port}",
        # Where worker processes serve /metrics (a setting of the multi-process service); two services
        # of one benchmark must not both take the default port.
        "WEBHOOKD_METRICS_ADDR": f"{HOST}:{metrics_port}",
        "WEBHOOKD_ALLOW_INSECURE_URLS": "1",
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_SHUTDOWN_GRACE_SECONDS": "2",
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    if not WEBHOOKD.exists():
        raise RuntimeError(f"{WEBHOOKD} not found: run the benchmarks with the venv's python (make bench)")
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    run.progress(f"starting webhookd serve ({label}{', ' + shown if shown else ''})")
    started = time.monotonic()
    child = run.child(f"webhookd-{label}", [str(WEBHOOKD), "serve"], env=settings, grace=STOP_GRACE)
    line = child.wait_for_line(SERVING, START_LIMIT).string
    grpc_target, http_url = f"{HOST}:{grpc_port}", f"http://{HOST}:{http_port}"
    _wait_ready(http_url)
    run.progress(f"{line.strip()} ({time.monotonic() - started:.1f} s)")
    return Service(grpc_target, http_url, conninfo(database_url), child.pid, backends.vault_pid)


def _wait_ready(http_url: str) -> None:
    deadline = time.monotonic() + READY_LIMIT
    last = ""
    while True:
        try:
            with urllib.request.urlopen(f"{http_url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (OSError, urllib.error.URLError) as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{http_url}/readyz not ready after {READY_LIMIT:.0f} s (last: {last})")
        time.sleep(0.1)


def mint_token(tenant_id: str) -> str:
    """A bearer token for `tenant_id`, minted by `webhookd token` with the service's JWT secret."""
    # Only the JWT settings matter here; other WEBHOOKD_* settings in the environment are left out.
    env = {key: value for key, value in os.environ.items() if not key.startswith("WEBHOOKD_")}
    done = subprocess.run(
        [str(WEBHOOKD), "token", "--tenant", tenant_id, "--ttl", "7200"],
        env={**env, "WEBHOOKD_JWT_SECRET": JWT_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"webhookd token exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


class Client:
    """A blocking gRPC client of one tenant, for setting up what a benchmark measures."""

    def __init__(self, run: Run, service: Service, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.token = mint_token(tenant_id)
        self._channel = grpc.insecure_channel(service.grpc_target)
        run.defer("close the set-up channel", self._channel.close)
        self._stub = rpc.WebhookServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {self.token}"),)

    def create_webhook(self, *, signing_secret: str = "", **fields: Any) -> pb.CreateWebhookResponse:
        request = pb.CreateWebhookRequest(webhook=wpb.Webhook(**fields), signing_secret=signing_secret)
        created: pb.CreateWebhookResponse = self._stub.CreateWebhook(
            request, metadata=self._metadata, timeout=CALL_LIMIT
        )
        return created

    def get_webhook(self, webhook_id: str) -> pb.GetWebhookResponse:
        request = pb.GetWebhookRequest(id=webhook_id)
        got: pb.GetWebhookResponse = self._stub.GetWebhook(request, metadata=self._metadata, timeout=CALL_LIMIT)
        return got

    def publish(self, event_type: str, payload: Mapping[str, Any], webhook_id: str = "") -> pb.PublishEventResponse:
        data = struct_pb2.Struct()
        data.update(dict(payload))
        request = pb.PublishEventRequest(event_type=event_type, payload=data, webhook_id=webhook_id)
        published: pb.PublishEventResponse = self._stub.PublishEvent(
            request, metadata=self._metadata, timeout=CALL_LIMIT
        )
        return published
