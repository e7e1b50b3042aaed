"""What the fault tests share: `webhookd serve` on the fault backends, a steady publisher that records every
answer, the operator's probes (gRPC health, /readyz), and the delivery ledger a receiver keeps.

Times are measured and recorded as figures (printed at the end of the run), never asserted on: a loaded
machine makes any bound flaky. What is asserted is behaviour: the codes calls end with, that none hangs,
and what was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from backends import FaultyOpenBao, FaultyPostgres
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ports import free_port
from receivers import Received
from support import JWT_SECRET, SERVING_LINE, Database

SERVICE = "cpod.integration.v1.WebhookService"
READY_WITHIN = 60.0
# No call may take longer than this; a call that does is a hang (DEADLINE_EXCEEDED is asserted against).
CALL_DEADLINE_SECONDS = 30.0
# The bounds the fault tests run webhookd with: short, so a fault is noticed within seconds.
DATABASE_TIMEOUT_SECONDS = 2
VAULT_TIMEOUT_SECONDS = 2

# test name -> figure -> value, in the order recorded
FIGURES: dict[str, dict[str, Any]] = {}


def record(test: str, **figures: Any) -> None:
    FIGURES.setdefault(test, {}).update(
        {name: round(value, 2) if isinstance(value, float) else value for name, value in figures.items()}
    )


@dataclass
class FaultBackends:
    postgres: FaultyPostgres
    openbao: FaultyOpenBao
    database_url: str
    vault_addr: str
    vault_token: str
    directory: Path


@dataclass
class Serving:
    """A running `webhookd serve`: one server and one worker process."""

    process: asyncio.subprocess.Process
    grpc_target: str
    http_url: str
    log: Path


@contextlib.asynccontextmanager
async def serving(backends: FaultBackends, name: str, **settings: str) -> AsyncIterator[Serving]:
    grpc_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "WEBHOOKD_DATABASE_URL": backends.database_url,
        "VAULT_ADDR": backends.vault_addr,
        "VAULT_TOKEN": backends.vault_token,
        "WEBHOOKD_JWT_SECRET": JWT_SECRET,
        "WEBHOOKD_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "WEBHOOKD_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "WEBHOOKD_ALLOW_INSECURE_URLS": "1",
        "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOKD_DATA_DIR": str(backends.directory / name),
        "WEBHOOKD_SERVER_PROCESSES": "1",
        "WEBHOOKD_WORKER_PROCESSES": "1",
        "WEBHOOKD_WORKERS": "16",
        "WEBHOOKD_METRICS_ADDR": "",
        "WEBHOOKD_DATABASE_TIMEOUT_SECONDS": str(DATABASE_TIMEOUT_SECONDS),
        "WEBHOOKD_VAULT_TIMEOUT_SECONDS": str(VAULT_TIMEOUT_SECONDS),
        "WEBHOOKD_SHUTDOWN_GRACE_SECONDS": "2",
        "WEBHOOKD_LOG_LEVEL": "WARNING",
        **settings,
    }
    log = backends.directory / f"{name}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "webhookd"),
            "serve",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    running = Serving(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log)
    try:
        deadline = time.monotonic() + READY_WITHIN
        async with httpx.AsyncClient(base_url=running.http_url, timeout=3.0) as http:
            while True:
                assert process.returncode is None, log.read_text()[-5000:]
                # The serving line too: /readyz is a server's, and a worker still starting when a test
                # freezes OpenBao fails its start, which ends the whole `serve` (exit 2).
                with contextlib.suppress(httpx.TransportError):
                    if SERVING_LINE in log.read_text() and (await http.get("/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()[-5000:]
                await asyncio.sleep(0.1)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        elif process.returncode != -signal.SIGKILL:
            # Shown with a failing test's output: a service that ended by itself fails its tests far from why.
            print(f"{name} exited with {process.returncode} by itself; the end of its log:\n{log.read_text()[-5000:]}")
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- calls and what they ended with ---------------------------------------------------------------------


def has_retry_info(error: grpc.aio.AioRpcError) -> bool:
    status = rpc_status.from_call(error)
    return status is not None and any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


@dataclass
class Outcome:
    started: float  # time.monotonic()
    seconds: float
    code: str  # "OK" or the status name
    retry_info: bool = False


@dataclass
class Calls:
    """Every call's outcome, to find when failures began and ended and what they were."""

    outcomes: list[Outcome] = field(default_factory=list)

    async def make(self, call: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            result = await call()
        except grpc.aio.AioRpcError as error:
            self.outcomes.append(Outcome(started, time.monotonic() - started, error.code().name, has_retry_info(error)))
            return None
        self.outcomes.append(Outcome(started, time.monotonic() - started, "OK"))
        return result

    def codes(self) -> Counter[str]:
        return Counter(outcome.code for outcome in self.outcomes)

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.code != "OK"]

    def first(self, code: str, after: float) -> Outcome | None:
        found = [o for o in self.outcomes if o.code == code and o.started >= after]
        return min(found, key=lambda o: o.started + o.seconds, default=None)


class Publisher:
    """Publishes events n = 0, 1, ... from a few tasks at a steady pace until stopped; `acknowledged`
    maps n to the event id of every publish that was answered OK."""

    def __init__(self, caller: Any, event_type: str, *, tasks: int = 2, pause: float = 0.05) -> None:
        self.caller = caller
        self.event_type = event_type
        self.calls = Calls()
        self.acknowledged: dict[int, str] = {}
        self.started_at: dict[int, float] = {}  # when each event's publish call began
        self._next = 0
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(pause)) for _ in range(tasks)]

    async def _run(self, pause: float) -> None:
        while not self._stop.is_set():
            n, self._next = self._next, self._next + 1
            payload = struct_pb2.Struct()
            payload.update({"n": n})
            request = pb.PublishEventRequest(event_type=self.event_type, payload=payload)
            self.started_at[n] = time.monotonic()
            published = await self.calls.make(
                lambda request=request: self.caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS)
            )
            if published is not None:
                self.acknowledged[n] = published.event_id
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    async def until_acknowledged(self, count: int, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} of {count} acknowledged"
            await asyncio.sleep(0.02)

    def published_before(self, moment: float) -> set[int]:
        return {n for n, started in self.started_at.items() if started < moment}

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def until(condition: Callable[[], Any], what: str, within: float = 30.0) -> float:
    """Polls `condition` (sync or async) until true; returns when it became true (monotonic)."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.05)


# -- the operator's view ----------------------------------------------------------------------------------


async def health_status(channel: grpc.aio.Channel, service: str = SERVICE) -> str:
    """What grpc.health.v1 Check says of `service` ("" is the server as a whole)."""
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def health_is(channel: grpc.aio.Channel, status: str, service: str = SERVICE) -> bool:
    return await health_status(channel, service) == status


async def readyz(http_url: str) -> tuple[int, float]:
    """/readyz's status and how long it took to answer (None would be a hang: the client bound is 30 s)."""
    async with httpx.AsyncClient(base_url=http_url, timeout=CALL_DEADLINE_SECONDS) as http:
        started = time.monotonic()
        response = await http.get("/readyz")
        return response.status_code, time.monotonic() - started


# -- what receivers got ------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """The requests a receiver got, by event number n (from the payload)."""

    by_n: dict[int, list[Received]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def of(cls, received: list[Received]) -> Ledger:
        ledger = cls()
        for request in received:
            ledger.by_n[int(json.loads(request.body)["data"]["n"])].append(request)
        return ledger

    def webhook_ids(self, n: int) -> set[str]:
        return {request.headers["webhook-id"] for request in self.by_n[n]}

    def duplicates(self) -> int:
        return sum(len(requests) - 1 for requests in self.by_n.values())


def assert_delivered(ledger: Ledger, acknowledged: dict[int, str], repeatable: set[int]) -> None:
    """Every acknowledged event arrived with its own event id as webhook-id; only events in `repeatable`
    (in flight when the fault struck) may have arrived more than once, and then with the same webhook-id."""
    missing = sorted(set(acknowledged) - set(ledger.by_n))
    assert not missing, f"acknowledged but never delivered: {missing}"
    for n, event_id in acknowledged.items():
        assert ledger.webhook_ids(n) == {event_id}, (n, ledger.webhook_ids(n), event_id)
    for n, requests in ledger.by_n.items():
        assert len(ledger.webhook_ids(n)) == 1, f"event {n} arrived under several webhook-ids"
        if n not in repeatable:
            assert len(requests) == 1, f"event {n} arrived {len(requests)} times"


async def all_settled(database: Database, tenant_id: str) -> bool:
    """No delivery of the tenant is still owed: every one succeeded (then no further request can come)."""
    rows = await database.rows(
        "SELECT count(*) FILTER (WHERE status <> 'succeeded') AS owed, count(*) AS total"
        " FROM deliveries WHERE tenant_id = :t",
        t=tenant_id,
    )
    return bool(rows[0].total) and rows[0].owed == 0
