"""`webhookd serve` and `webhookd dev`: start the backends, then server and worker processes, so every
core is used.

A Python process runs on one core at a time, so one process for everything left the machine's other
cores idle and let each path (gRPC, REST, workers) starve the others. The supervisor starts
embedded PostgreSQL/OpenBao when none are configured, migrates, and then runs
`WEBHOOKD_SERVER_PROCESSES` `webhookd server` processes, which share the gRPC and HTTP ports
(SO_REUSEPORT: the kernel spreads connections over them), and `WEBHOOKD_WORKER_PROCESSES`
`webhookd worker` processes. The children are told where the backends are through the same
variables an operator would set, and share one metrics directory (observability/metrics.py).

A child that fails to start stops everything with its one line (exit 2); a child that dies later is
started again, after a delay that grows while it keeps dying (restart_backoff.py). On SIGTERM the
servers stop first (front doors), then the workers, then the backends. The children run in a
process group of their own, so a terminal's Ctrl-C (SIGINT to the foreground group) reaches only
the supervisor, which stops them in that order; pressed during start-up, it ends the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field

from prometheus_client import multiprocess

from webhookd import app, config
from webhookd.auth.tokens import check_keys
from webhookd.config import Settings
from webhookd.observability.metrics import MULTIPROCESS_DIRECTORY_VARIABLE
from webhookd.restart_backoff import RestartBackoff
from webhookd.runners import (
    PARENT_PID_VARIABLE,
    SERVER_READY,
    STOP_ALLOWANCE_SECONDS,
    WORKER_READY,
    StartError,
    backends_started,
    check_fleet_connection_room,
    started,
)
from webhookd.store import migrate

log = logging.getLogger("webhookd.supervisor")
START_TIMEOUT_SECONDS = 120.0
_READ_BYTES = 64 * 1024
# A log line this long is passed on in pieces rather than held whole.
_LONGEST_LINE = 1024 * 1024
_REASON_PREFIX = "webhookd: "
# How long the supervisor waits for a child that exited to close its stderr, whose last line may say why.
REASON_WAIT_SECONDS = 1.0


@dataclass
class Child:
    """One child process of a role, and how to tell it is running."""

    role: str  # "server" or "worker"
    args: list[str]
    ready_prefix: str
    process: asyncio.subprocess.Process | None = None
    ready_line: str = ""
    restarts: int = 0
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    # Its output passed through, for as long as it runs.
    relays: list[asyncio.Task[object]] = field(default_factory=list)


# Hosts a held port takes for every address of the machine.
_WILDCARDS = frozenset({"0.0.0.0", "::"})
# Tries at a port for an address given port 0: the kernel may hand out a port the supervisor holds
# already (it holds them without listening, so the free-port probe can bind it too).
PORT_PICKS = 5


def _clash(held: socket.socket, other: socket.socket) -> bool:
    """Whether two held ports are one: the same port on the same host, or on a wildcard. SO_REUSEPORT
    lets both be bound, and the kernel would then spread gRPC's and HTTP's connections over both
    protocols' servers, failing about half of each."""
    host, port = held.getsockname()[:2]
    other_host, other_port = other.getsockname()[:2]
    return port == other_port and (host == other_host or host in _WILDCARDS or other_host in _WILDCARDS)


def _reserve_port(addr: str) -> tuple[socket.socket, str]:
    """Checks the address is free, then holds it (SO_REUSEPORT, not listening) for the children to
    share; returns the socket and host:port with the port resolved when it was 0."""
    host, _, port = addr.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    # Free? Without SO_REUSEPORT a bind fails when anyone listens there, with it or without; with
    # SO_REUSEADDR, connections of a previous run lingering in TIME_WAIT do not count.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((bare, int(port)))
        chosen = probe.getsockname()[1]
    held = socket.socket(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind((bare, chosen))
    return held, f"{host}:{chosen}"


class Supervisor:
    def __init__(self, settings: Settings, *, dev: bool, environment: Mapping[str, str]) -> None:
        self._settings = settings
        self._dev = dev
        self._base_environment = dict(environment)
        self._children: list[Child] = []
        self._held: dict[str, socket.socket] = {}  # by the setting naming the address
        self._metrics_directory = tempfile.TemporaryDirectory(prefix="webhookd-metrics-")
        self._stopping = False
        self.grpc_addr = settings.grpc_addr
        self.http_addr = settings.http_addr

    def _child_environment(self, backends: app.Backends) -> dict[str, str]:
        return self._base_environment | {
            "WEBHOOKD_DATABASE_URL": backends.database_url,
            "VAULT_ADDR": backends.vault_addr,
            "VAULT_TOKEN": backends.vault_token,
            "VAULT_NAMESPACE": backends.vault_namespace,
            "WEBHOOKD_GRPC_ADDR": self.grpc_addr,
            "WEBHOOKD_HTTP_ADDR": self.http_addr,
            # Made again from the HTTP address held: a port 0 in the setting is a drawn port now.
            "WEBHOOKD_PUBLIC_URL": config.on_http_addr(self._settings, self.http_addr).public_url,
            # The servers report every process's metrics; workers serve none of their own.
            "WEBHOOKD_METRICS_ADDR": "",
            MULTIPROCESS_DIRECTORY_VARIABLE: self._metrics_directory.name,
            PARENT_PID_VARIABLE: str(os.getpid()),
        }

    async def start(self, backends: app.Backends) -> None:
        """Everything up and ready, or StartError with the line to print (what started is stopped)."""
        await started("database schema", lambda: migrate.upgrade(backends.database_url))
        self.grpc_addr = self._hold("WEBHOOKD_GRPC_ADDR", self._settings.grpc_addr)
        self.http_addr = self._hold("WEBHOOKD_HTTP_ADDR", self._settings.http_addr)
        environment = self._child_environment(backends)
        mode = ["--dev"] if self._dev else []
        self._children = [
            Child("worker", ["worker", *mode], WORKER_READY) for _ in range(self._settings.worker_processes)
        ] + [Child("server", ["server", *mode], SERVER_READY) for _ in range(self._settings.server_processes)]
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await asyncio.gather(*(self._spawn(child, environment) for child in self._children))
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._keep_running(environment), name="supervise")

    def _hold(self, setting: str, addr: str) -> str:
        for _ in range(PORT_PICKS):
            try:
                held, resolved = _reserve_port(addr)
            except OSError as error:
                raise StartError(f"cannot listen on {addr}: {error.strerror or error}") from error
            taken_by = next((name for name, other in self._held.items() if _clash(held, other)), None)
            if taken_by is None:
                self._held[setting] = held
                return resolved
            held.close()
            if not addr.endswith(":0"):
                raise StartError(f"cannot listen on {addr} ({setting}): {taken_by} names the same port")
        raise StartError(f"cannot listen on {addr} ({setting}): no port apart from the others in {PORT_PICKS} tries")

    async def _spawn(self, child: Child, environment: dict[str, str]) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "webhookd.cli",
            *child.args,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Out of the terminal's foreground group: the supervisor stops its children (they stop
            # with it however it dies: runners.py), and Ctrl-C is not a child's crash mid-start.
            process_group=0,
        )
        child.process = process
        assert process.stdout is not None and process.stderr is not None
        errors = asyncio.create_task(_relay_errors(process.stderr))
        child.relays = [errors]
        while True:
            line = (await process.stdout.readline()).decode().rstrip("\n")
            if not line:
                await process.wait()
                failure = await errors
                raise StartError(failure or f"{child.role} process exited with {process.returncode}")
            if line.startswith(child.ready_prefix):
                child.ready_line = line
                child.backoff.ready()
                child.relays.append(asyncio.create_task(_drain(process.stdout)))
                return
            print(line, flush=True)

    async def _keep_running(self, environment: dict[str, str]) -> None:
        """Starts a child again when it dies (a crash, an OOM kill): the service recovers by itself.
        Each child is watched on its own, so one waiting for its restart holds up no other."""
        async with asyncio.TaskGroup() as watches:
            for child in self._children:
                watches.create_task(self._keep_child_running(child, environment))

    async def _keep_child_running(self, child: Child, environment: dict[str, str]) -> None:
        while not self._stopping and child.process is not None:
            await child.process.wait()
            if self._stopping:
                return
            delay = child.backoff.delay_after_exit()
            log.warning(
                "child process died; starting it again",
                extra={
                    "role": child.role,
                    "pid": child.process.pid,
                    "exit_code": child.process.returncode,
                    # A worker that found the schema changed under it says so in its one line.
                    "reason": await _reason_given(child),
                    "crashes_in_a_row": child.backoff.crashes_in_a_row,
                    "restart_delay_seconds": delay,
                },
            )
            child.restarts += 1
            await asyncio.sleep(delay)
            try:
                multiprocess.mark_process_dead(child.process.pid, self._metrics_directory.name)  # type: ignore[no-untyped-call]
                async with asyncio.timeout(START_TIMEOUT_SECONDS):
                    await self._spawn(child, environment)
            except TimeoutError:
                # Stuck starting: killed, so the next round backs off and tries again.
                log.error("child process did not start in time; killing it", extra={"role": child.role})
                if child.process.returncode is None:
                    child.process.kill()
            except StartError as error:
                log.error("child process could not start again", extra={"role": child.role, "error": str(error)})
            except Exception:
                # Anything else must not end the supervision: the next round tries this child again.
                log.exception("child process could not start again", extra={"role": child.role})

    async def stop(self) -> None:
        """Servers first (no new work is accepted), then workers (they drain), each with its grace."""
        self._stopping = True
        watch = getattr(self, "_watch", None)
        if watch is not None:
            watch.cancel()
        # A child stops within its grace and allowance (runners.py); one still there a second later is killed.
        grace = self._settings.shutdown_grace_seconds + STOP_ALLOWANCE_SECONDS + 1
        for role in ("server", "worker"):
            processes = [c.process for c in self._children if c.role == role and c.process is not None]
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for held in self._held.values():
            held.close()
        self._metrics_directory.cleanup()


async def _reason_given(child: Child) -> str:
    """The `webhookd: ` line a child that exited printed last, or "" (a crash says nothing). Its stderr
    ends with it; one held open past its end (a grandchild) is not waited on."""
    if not child.relays:
        return ""
    errors = child.relays[0]
    await asyncio.wait({errors}, timeout=REASON_WAIT_SECONDS)
    if not errors.done() or errors.cancelled() or errors.exception() is not None:
        return ""
    return str(errors.result())


async def _relay_errors(stream: asyncio.StreamReader) -> str:
    """Passes a child's stderr (its JSON logs) through; returns its `webhookd: cannot start` reason."""
    reason = ""
    async for raw in _lines(stream):
        line = raw.decode(errors="replace")
        # `webhookd: cannot start: ...`, or a settings error (`webhookd: WEBHOOKD_...`): its one line.
        if line.startswith(_REASON_PREFIX):
            reason = line.removeprefix(_REASON_PREFIX).removeprefix("cannot start: ").strip()
        else:
            sys.stderr.write(line)
    return reason


async def _drain(stream: asyncio.StreamReader) -> None:
    async for raw in _lines(stream):
        sys.stdout.write(raw.decode(errors="replace"))


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A child's output line by line, however long a line is (one past _LONGEST_LINE in pieces).
    asyncio's own line reading gives up on a line over its 64 KiB limit, and then nothing reads the
    pipe: once it fills, the child blocks on its next log line, and waiting for it never ends."""
    pending = b""
    while chunk := await stream.read(_READ_BYTES):
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            yield line + b"\n"
        if len(pending) > _LONGEST_LINE:
            yield pending
            pending = b""
    if pending:
        yield pending


async def supervise(
    settings: Settings, *, dev: bool, environment: Mapping[str, str], on_ready: Callable[[Supervisor], None]
) -> int:
    """Runs the whole service until SIGTERM/SIGINT/SIGHUP; 2 with one line when a part cannot start."""
    check_keys(settings)  # what every server would refuse, before anything is started for them
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # A closed terminal's SIGHUP would end this process alone, leaving the embedded PostgreSQL (a
    # daemon of its own) and OpenBao (to which SIGHUP means reload) running; under nohup it stays ignored.
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        loop.add_signal_handler(signal.SIGHUP, stop.set)
    try:
        backends = await backends_started(settings)
    except StartError as error:
        if stop.is_set():  # a Ctrl-C that reached the embedded servers as they started
            return 0
        print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
        return 2
    try:
        supervisor = Supervisor(settings, dev=dev, environment=environment)

        async def start() -> None:
            await started("backends", lambda: app.check_backends(settings, backends))
            await check_fleet_connection_room(settings, backends)
            await supervisor.start(backends)

        try:
            if not await _unless_stopped(start(), stop):
                return 0
        except StartError as error:
            # Ctrl-C also reaches the embedded OpenBao, whose end then fails the start: not a failure.
            if stop.is_set():
                return 0
            print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
            return 2
        on_ready(supervisor)
        await stop.wait()
        await supervisor.stop()
        return 0
    finally:
        await asyncio.to_thread(backends.stop)


async def _unless_stopped(work: Coroutine[object, object, None], stop: asyncio.Event) -> bool:
    """Runs `work` until done (True) or until `stop` is set first (False: `work` is cancelled, which
    stops what it started)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        finished = task.done()
        if not finished:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartError):
                await task
    if finished:
        task.result()
    return finished
