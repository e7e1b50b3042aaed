"""One process of each role, run until it is signalled: a server (gRPC and HTTP, no workers), a
worker (the delivery pool), and the standalone REST gateway.

Each starts its parts in order and stops them in reverse, on SIGTERM/SIGINT or at once when a later
part fails to start; then it prints one `webhookd: cannot start: ...` line and returns 2. The lines
it prints once running are what `webhookd serve` waits for (supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from webhookd import app, config
from webhookd.config import Settings
from webhookd.domain.errors import Unavailable
from webhookd.gateway.playground import DevTokenSource
from webhookd.http.operations import grpc_serving_check, operations_app, readiness_route
from webhookd.http.receiver import inbound_route
from webhookd.http.server import HttpServer, listening_socket
from webhookd.observability import Metrics
from webhookd.services.readiness import Readiness
from webhookd.store import migrate
from webhookd.store.database import connection_limit

log = logging.getLogger("webhookd")
SERVER_READY = "webhookd server ready:"
WORKER_READY = "webhookd worker running"
# Set by `webhookd serve` for its children: a child whose parent is gone stops (no orphans).
PARENT_PID_VARIABLE = "WEBHOOKD_PARENT_PID"
# Container objects allocated, net of those freed, before the collector's youngest generation runs
# (Python's default: 700). Reference counting frees nearly all the hot paths make: in two e2e turns
# of 10,000 deliveries fewer than this many survived, so the collector never ran, where the default
# ran it 494 times, 44 times on the older generation and 4 on all (0.22 s of the worker's CPU, ~9 µs
# a delivery). The worker's and server's CPU per delivery fell 3-5% (bench/delivery.py's load,
# alternating runs). Cycles are still collected once this many objects survive.
YOUNG_GENERATION_THRESHOLD = 20_000
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")
# What stopping may take past the grace (releasing deliveries not finished, closing connections); the
# supervisor kills a child that is not gone a second after it.
STOP_ALLOWANCE_SECONDS = 4.0


class StartError(Exception):
    """A part of the process could not start; the message is the one line the command prints."""


async def started(what: str, start: Callable[[], Awaitable[T]]) -> T:
    """Runs `start` and returns what it gives; StartError when what it needs refused it. Partition
    upkeep speaks to PostgreSQL through psycopg itself, whose errors SQLAlchemy does not wrap."""
    try:
        return await start()
    except (Unavailable, OSError, SQLAlchemyError, psycopg.Error, RuntimeError) as error:
        # The first line: the server's message may go on with the statement and a caret under it.
        said = str(error).splitlines()
        raise StartError(f"{what}: {said[0] if said else type(error).__name__}") from error


async def backends_started(settings: Settings) -> app.Backends:
    """The backends, with the embedded ones started under the data directory for what the settings
    leave unset; StartError (naming the directory) when they cannot be, e.g. a file is where it goes."""
    where = f"embedded backends under WEBHOOKD_DATA_DIR ({settings.data_dir})"
    return await started(where, lambda: asyncio.to_thread(app.start_backends, settings))


async def check_connection_room(settings: Settings, backends: app.Backends) -> None:
    """StartError when one server process's connections alone exceed the database's max_connections:
    it would hold every connection there is, and its workers and every other client would be refused."""
    await _check_room(
        settings,
        backends,
        _server_connections(settings),
        f"WEBHOOKD_DATABASE_POOL_SIZE ({settings.database_pool_size}) and the"
        f" {app.SERVER_CONNECTIONS_BESIDE_POOL} connections a server process opens beside its pool need",
    )


async def check_fleet_connection_room(settings: Settings, backends: app.Backends) -> None:
    """StartError when the processes `serve` starts need more connections together than the database
    allows: each would start, and they would take turns being refused."""
    await _check_room(
        settings,
        backends,
        fleet_connections(settings),
        f"WEBHOOKD_SERVER_PROCESSES ({settings.server_processes}) x {_server_connections(settings)}"
        f" (WEBHOOKD_DATABASE_POOL_SIZE + {app.SERVER_CONNECTIONS_BESIDE_POOL}) and WEBHOOKD_WORKER_PROCESSES"
        f" ({settings.worker_processes}) x {_worker_connections(settings)} need",
    )


def fleet_connections(settings: Settings) -> int:
    """The connections the processes `serve` starts hold together (README: Connection budget)."""
    return settings.server_processes * _server_connections(settings) + settings.worker_processes * _worker_connections(
        settings
    )


def _server_connections(settings: Settings) -> int:
    return settings.database_pool_size + app.SERVER_CONNECTIONS_BESIDE_POOL


def _worker_connections(settings: Settings) -> int:
    return min(app.WORKER_POOL_SIZE, settings.database_pool_size) + app.WORKER_CONNECTIONS_BESIDE_POOL


async def _check_room(settings: Settings, backends: app.Backends, needed: int, who_needs: str) -> None:
    allowed = await connection_limit(backends.database_url, settings.database_timeout_seconds)
    if allowed is not None and needed > allowed:
        raise StartError(f"{who_needs} {needed} connections; the database's max_connections is {allowed}")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _stop_with_parent(stop: asyncio.Event) -> None:
    """Under `webhookd serve`: SIGTERM when the supervisor dies, however it dies (Linux's parent-death
    signal), and stop now if it is already gone."""
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if not parent or not parent.isdigit():
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        stop.set()


# Ends a running process as a start-up that failed would: stopped in order, one line, exit 2.
End = Callable[[str], None]
Start = Callable[[contextlib.AsyncExitStack, app.Backends, End], Awaitable[str]]


async def _run(settings: Settings, start: Start) -> int:
    """Starts the backends, then `start` (which registers what it starts on the exit stack and
    returns the line to print once running); runs until signalled, or until what started calls its
    `end` with the reason it cannot go on."""
    stop = _stop_on_signals()
    _stop_with_parent(stop)
    ended: list[str] = []

    def end(reason: str) -> None:
        ended.append(reason)
        stop.set()

    try:
        backends = await backends_started(settings)
    except StartError as error:
        print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
        return 2
    stopped = True  # False once stopping overran its bound: the process is then ended at once
    try:
        running = contextlib.AsyncExitStack()
        try:
            await started("backends", lambda: app.check_backends(settings, backends))
            line = await start(running, backends, end)
        except StartError as error:
            await running.aclose()
            print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
            return 2
        except BaseException:
            await running.aclose()
            raise
        # What start-up made lives as long as the process: kept out of the collector's scans, a
        # worker under the e2e load paused for the collector at most 7-9 ms instead of 60-66 ms.
        gc.freeze()
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
        print(line, flush=True)
        try:
            await stop.wait()
        finally:
            stopped = await _stopped_within(running, settings.shutdown_grace_seconds + STOP_ALLOWANCE_SECONDS)
        if ended:
            # The line a start-up on the same state would print (and will, if the process is started again).
            print(f"webhookd: cannot start: {ended[0]}", file=sys.stderr, flush=True)
            return 2
        return 0
    finally:
        await asyncio.to_thread(backends.stop)
        if not stopped:
            _leave(2 if ended else 0)


async def _stopped_within(running: contextlib.AsyncExitStack, seconds: float) -> bool:
    """Stops what started; False when it has not stopped within `seconds`. Against a frozen database
    each close waited out its own timeout, one after another (a worker with a 3 s grace took 25 s),
    though nothing it could still write would get there."""
    stopping = asyncio.ensure_future(running.aclose())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    if done:
        stopping.result()
        return True
    log.warning("stopped without waiting for the rest of shutdown", extra={"after_seconds": seconds})
    return False


def _leave(code: int) -> None:
    """Ends the process now, its output flushed: what did not stop is left, not cancelled. A cancelled
    query on a frozen database is waited on for 10 s more (psycopg asks the server to cancel it, then
    waits for it to end), and asyncio.run cancels every task left and waits for each. Leases expire,
    so a delivery left is sent again; the kernel closes the connections."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_server(settings: Settings, *, dev_token: DevTokenSource | None = None, reuse_port: bool = False) -> int:
    """gRPC and HTTP (REST through the servicers in this process, the inbound receiver, the
    Playground, operations routes), without delivery workers."""

    async def start(running: contextlib.AsyncExitStack, backends: app.Backends, _: End) -> str:
        metrics = Metrics()
        await check_connection_room(settings, backends)
        await started("database schema", lambda: migrate.upgrade(backends.database_url))
        resolved, listening = settings, None  # the settings with the HTTP port drawn, where it was 0
        if not reuse_port and settings.http_addr.endswith(":0"):
            listening = await started("HTTP gateway", lambda: _listening_at_once(settings))
            running.callback(listening.close)  # served from here on; closed if a later part fails
            # Drawn before the core starts, which makes inbound callback URLs from the public URL
            # (under `serve` the supervisor draws the port and passes it on: supervisor.py).
            host = settings.http_addr.rpartition(":")[0]
            resolved = config.on_http_addr(settings, f"{host}:{listening.getsockname()[1]}")
        service = app.Service(resolved, backends, metrics=metrics, reuse_port=reuse_port)
        await started("gRPC server", service.start)
        gateway = app.Gateway(
            resolved,
            service.local_channel(),
            extra_routes=service.http_routes(),
            metrics=metrics,
            dev_token=dev_token,
            reuse_port=reuse_port,
            listening=listening,
        )
        try:
            await started("HTTP gateway", gateway.start)
        except StartError:
            await service.stop()
            raise
        running.push_async_callback(_stop_front_doors, gateway, service)
        return f"{SERVER_READY} gRPC on {service.grpc_target}, HTTP on port {gateway.port}"

    return asyncio.run(_run(settings, start))


async def _listening_at_once(settings: Settings) -> socket.socket:
    return listening_socket(settings.http_addr, bounds=app.http_bounds(settings))


async def _stop_front_doors(gateway: app.Gateway, service: app.Service) -> None:
    """Both doors at once, within one grace (the supervisor kills a server that takes longer than it
    plus its allowance), then the core they share."""
    await asyncio.gather(gateway.stop(), service.stop_serving())
    await service.close()


def run_worker(settings: Settings) -> int:
    """The delivery pool, and /metrics, /healthz and /readyz on WEBHOOKD_METRICS_ADDR when set."""

    async def start(running: contextlib.AsyncExitStack, backends: app.Backends, end: End) -> str:
        # Servers and `serve` migrate as they start; a worker alone finds the schema as its release
        # left it, or refuses: its queries are written for that schema and no other. So does one
        # running when a newer release migrates: it claims nothing more, gives back what it holds
        # (the stop a signal makes) and exits with the same line.
        await started("database schema", lambda: migrate.check_newest(backends.database_url))
        metrics = Metrics()
        workers = app.DeliveryWorkers(settings, backends, metrics=metrics)
        await started("delivery workers", workers.start)
        running.push_async_callback(workers.stop)
        schema = asyncio.create_task(_end_when_schema_changes(workers, end), name="schema-end")
        running.push_async_callback(_cancelled, schema)
        if settings.metrics_addr:
            http = HttpServer(
                operations_app(workers.readiness, metrics),
                settings.metrics_addr,
                bounds=app.http_bounds(settings),
                shutdown_grace_seconds=settings.shutdown_grace_seconds,
            )
            await started("metrics server", http.start)
            running.push_async_callback(http.stop)
            return f"{WORKER_READY} ({settings.workers} workers, /metrics on port {http.port})"
        return f"{WORKER_READY} ({settings.workers} workers)"

    return asyncio.run(_run(settings, start))


async def _end_when_schema_changes(workers: app.DeliveryWorkers, end: End) -> None:
    reason = f"database schema: {await workers.schema_changed()}"
    log.warning("the database schema changed under this worker; stopping", extra={"reason": reason})
    end(reason)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def run_gateway(settings: Settings, grpc_target: str) -> int:
    """The REST gateway in front of a gRPC target; the inbound receiver runs here on the database
    and Vault, since it needs them and not gRPC."""

    async def start(running: contextlib.AsyncExitStack, backends: app.Backends, _: End) -> str:
        # Its own channel, so readiness reports the target's health, not the gateway channel's state.
        upstream = await running.enter_async_context(grpc.aio.insecure_channel(grpc_target))
        core = app.Core(settings, backends, metrics=Metrics())
        await core.start()
        running.push_async_callback(core.close)
        readiness = Readiness({**core.readiness_checks(), "grpc": grpc_serving_check(upstream)})
        running.push_async_callback(readiness.close)
        gateway = app.Gateway(
            settings,
            grpc.aio.insecure_channel(grpc_target),
            extra_routes=[readiness_route(readiness), inbound_route(core.inbound)],
        )
        await started("HTTP gateway", gateway.start)
        running.push_async_callback(gateway.stop)
        return f"webhookd gateway serving HTTP on port {gateway.port}, calling gRPC at {grpc_target}"

    return asyncio.run(_run(settings, start))
