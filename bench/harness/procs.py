"""One child process of a benchmark: a session of its own, output to files, always stopped.

Each child leads a new session (and so a process group): a Ctrl-C in the terminal reaches only the
orchestrator, which then stops its children in order, and stopping a child signals its whole group
(a service that forks worker processes is stopped with them). Output goes to files rather than pipes,
so a chatty child can never block on a full pipe; a server's ready line is read back from its file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05
TAIL_LINES = 25


class ChildFailed(RuntimeError):
    """A child exited badly, printed no result, or missed a deadline; the message carries its log's tail."""


class Child:
    """A started subprocess whose stdout and stderr go to `<logs>/<name>.out` and `.err` (or, with
    `console`, to this process's own). `grace`: how long `stop()` lets it finish after SIGTERM."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        logs: Path,
        console: bool = False,
        grace: float = 5.0,
    ) -> None:
        self.name = name
        self.grace = grace
        self.out_path = logs / f"{name}.out"
        self.err_path = logs / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=None if console else out,
                stderr=None if console else err,
                env=dict(env),
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stdout line matching `pattern`; ChildFailed if the child exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.out_path.read_text(errors="replace").splitlines():
                match = pattern.search(line)
                if match:
                    return match
            if not self.running():
                raise ChildFailed(f"{self.name} exited ({self.proc.returncode}) before ready\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ChildFailed(f"{self.name} not ready after {timeout:.0f} s\n{self.tail()}")
            time.sleep(POLL_SECONDS)

    def wait(self, timeout: float) -> int:
        """Its exit code; after `timeout` it is stopped and ChildFailed raised."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ChildFailed(f"{self.name} still running after {timeout:.0f} s: stopped\n{self.tail()}") from None

    def result(self, timeout: float) -> dict[str, Any]:
        """The JSON object on the last line of stdout, once the child exits 0 within `timeout`."""
        code = self.wait(timeout)
        if code != 0:
            raise ChildFailed(f"{self.name} exited with {code}\n{self.tail()}")
        lines = self.out_path.read_text(errors="replace").strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise ChildFailed(f"{self.name} printed no JSON result\n{self.tail()}") from None
        if not isinstance(result, dict):
            raise ChildFailed(f"{self.name} printed {lines[-1][:200]!r}, not a JSON object")
        return result

    def ask_to_finish(self) -> None:
        """SIGTERM, without waiting: a load generator that runs until told then prints its result."""
        if self.running():
            self._signal_group(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM to the child's process group, SIGKILL after its grace period; then nothing of it is left."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(self.grace)
        # Whatever it forked and left behind in its group goes too.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of its stderr (then stdout), for error messages."""
        text = ""
        for path in (self.err_path, self.out_path):
            with contextlib.suppress(OSError):
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if text.strip():
                break
        return f"--- {self.name} (last lines) ---\n{text}" if text.strip() else f"--- {self.name}: no output ---"
