"""A benchmark run: its temp dir, the processes it starts, and the guarantee that all of it is undone.

    with Run("crud") as run:
        echo = run.server("echo", "servers.echo")
        result = run.load("get", "load.unary", ["--kind", "echo", "--target", echo], timeout=30)

Whatever a run starts is stopped in reverse order when the `with` block ends, normally, on an error,
on Ctrl-C or on SIGTERM/SIGHUP (turned into KeyboardInterrupt so the block unwinds), and the temp dir
is removed. Cleanup ignores further signals so that a second Ctrl-C cannot leave processes behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from harness.procs import Child

BENCH_DIR = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
READY = re.compile(r"listening on (\S+:\d+)")
SERVER_START_LIMIT = 30.0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Run:
    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.dir = Path()
        self.logs = Path()
        self._cleanup = contextlib.ExitStack()
        self._numbers = itertools.count(1)
        self._signals: dict[int, Any] = {}

    def __enter__(self) -> Run:
        self._signals[signal.SIGINT] = signal.getsignal(signal.SIGINT)  # Ctrl-C: KeyboardInterrupt already
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._signals[signum] = signal.signal(signum, _interrupt)
        self.dir = Path(tempfile.mkdtemp(prefix=f"webhookd-bench-{self.name}-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ignored in self._signals:
            signal.signal(ignored, signal.SIG_IGN)
        try:
            self._cleanup.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            for restored, handler in self._signals.items():
                signal.signal(restored, handler)

    # -- undoing -----------------------------------------------------------------------------------

    def defer(self, what: str, callback: Callable[..., object], *args: object) -> None:
        """Runs `callback(*args)` at the end of the run (last deferred, first run); an error is reported,
        never allowed to skip the rest of the cleanup."""
        self._cleanup.callback(_quietly, what, callback, *args)

    # -- processes ---------------------------------------------------------------------------------

    def child(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        console: bool = False,
        grace: float = 5.0,
    ) -> Child:
        """A started process, stopped at the end of the run; its logs go under the run's temp dir (or, with
        `console`, to the terminal). `grace`: the time it gets to finish after SIGTERM."""
        number = next(self._numbers)
        environment = {**os.environ, **(env or {})}
        child = Child(f"{number:02d}-{name}", argv, env=environment, logs=self.logs, console=console, grace=grace)
        self.defer(f"stop {child.name}", child.stop)
        return child

    def python(self, name: str, module: str, args: Sequence[str], *, env: Mapping[str, str] | None = None) -> Child:
        """`python -m module args` with bench/ on the path (servers.*, load.*, harness.*)."""
        path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
        return self.child(
            name, [PYTHON, "-m", module, *args], env={"PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(env or {})}
        )

    def server(self, name: str, module: str, args: Sequence[str] = ()) -> str:
        """Starts a baseline server (bench/servers/) and returns its host:port once it listens."""
        return self.server_process(name, module, args)[0]

    def server_process(self, name: str, module: str, args: Sequence[str] = ()) -> tuple[str, Child]:
        """`server`'s host:port and its process, for a benchmark that reads the server's CPU."""
        child = self.python(name, module, args)
        return child.wait_for_line(READY, SERVER_START_LIMIT).group(1), child

    def load(self, name: str, module: str, args: Sequence[str], *, timeout: float) -> dict[str, Any]:
        """Runs a load generator (bench/load/) to its end and returns the JSON object it printed."""
        child = self.python(name, module, args)
        try:
            return child.result(timeout)
        finally:
            child.stop()

    def progress(self, message: str) -> None:
        print(f"[{self.name} {time.monotonic() - self.started:5.1f} s] {message}", file=sys.stderr, flush=True)


def _quietly(what: str, callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:  # noqa: BLE001 - cleanup goes on; the failure is shown
        print(f"bench cleanup: {what} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
