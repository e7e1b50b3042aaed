"""PostgreSQL and OpenBao of the fault tests' own, which a test freezes (SIGSTOP), thaws (SIGCONT), kills
(SIGKILL) and starts again on the same address, with the data they had.

They are not the session's backends: every other test would hang on a frozen one. PostgreSQL is the
embedded one (pgserver) on a data directory of its own; OpenBao runs with persistent storage (the mode
`webhookd dev` uses), so a killed server comes back with its secrets, on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from webhookd.secrets.embedded import CONFIG_FILE, KEYS_FILE, EmbeddedOpenBao, find_bao_binary
from webhookd.store.embedded import EmbeddedPostgres

START_WITHIN = 30.0
STOPPED_WITHIN = 10.0


def _signal_all(processes: list[psutil.Process], signum: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def _stop_all(processes: list[psutil.Process]) -> None:
    """SIGSTOP, returning once every thread of every process has stopped.

    kill() returns when the signal is pending, not when it has taken effect: each thread stops the
    next time it is scheduled, which on a busy machine was up to 27 ms later for OpenBao. A thread
    still running can answer a request the test sends "after" the freeze.
    """
    _signal_all(processes, signal.SIGSTOP)
    deadline = time.monotonic() + STOPPED_WITHIN
    while running := [process.pid for process in processes if not _all_threads_stopped(process.pid)]:
        if time.monotonic() > deadline:
            # Resumed, so the tests after this one do not all meet a server left frozen.
            _signal_all(processes, signal.SIGCONT)
            states = {pid: _thread_states(pid) for pid in running}
            raise TimeoutError(f"processes {states} (thread states) did not stop within {STOPPED_WITHIN} s of SIGSTOP")
        time.sleep(0.001)


# A thread stopped (T, t), or one that runs nothing any more: a zombie (Z) waits for its parent to reap
# it, and a PostgreSQL backend that exited as the postmaster froze stays one until the thaw (an
# autovacuum worker ending, say), so waiting for it to stop waited out STOPPED_WITHIN.
_NOT_RUNNING = frozenset("tTZX")


def _all_threads_stopped(pid: int) -> bool:
    """Whether no thread of `pid` can run (_NOT_RUNNING); a process that has exited counts as stopped."""
    return all(state in _NOT_RUNNING for state in _thread_states(pid))


def _thread_states(pid: int) -> list[str]:
    """The state letter of each thread of `pid` (/proc), none for a process that has exited."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    states = []
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except FileNotFoundError:
            continue  # the thread has exited
        # The state follows the command name, which is in parentheses and may itself hold ") ".
        states.append(stat[stat.rindex(")") + 2])
    return states


class FaultyPostgres:
    """The embedded PostgreSQL: the postmaster and every backend freeze, thaw or die together, as a whole
    machine or container would."""

    def __init__(self, data_dir: Path) -> None:
        self._embedded = EmbeddedPostgres(data_dir)
        self._frozen: list[psutil.Process] = []

    def start(self) -> None:
        self._embedded.start()

    def create_database(self, name: str) -> str:
        return self._embedded.create_database(name)

    def _server(self) -> Any:
        return self._embedded._server

    def processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(self._server().get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> None:
        self._frozen = self.processes()
        _stop_all(self._frozen)

    def thaw(self) -> None:
        frozen, self._frozen = self._frozen, []
        _signal_all(frozen, signal.SIGCONT)

    def kill(self) -> None:
        processes = self.processes()
        _signal_all(processes, signal.SIGKILL)
        psutil.wait_procs(processes, timeout=10)

    def restart(self) -> None:
        """Starts the killed server again on its data directory and socket (crash recovery runs)."""
        server = self._server()
        with server._lock:
            server.ensure_postgres_running()

    def stop(self) -> None:
        self.thaw()
        self._embedded.stop()


class FaultyOpenBao:
    """OpenBao with persistent storage: after a kill it starts again on the same port and is unsealed
    with the key it was initialised with, so every secret is still there."""

    def __init__(self, data_dir: Path) -> None:
        self._embedded = EmbeddedOpenBao(data_dir, mode="persistent")
        self._restarted: subprocess.Popen[bytes] | None = None
        self.addr = ""
        self.token = ""

    def start(self) -> tuple[str, str]:
        self.addr, self.token = self._embedded.start()
        return self.addr, self.token

    @property
    def pid(self) -> int:
        process = self._restarted or self._embedded._proc
        assert process is not None
        return process.pid

    def freeze(self) -> None:
        _stop_all([psutil.Process(self.pid)])

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        with_process = self._restarted or self._embedded._proc
        assert with_process is not None
        with_process.wait(10)

    def restart(self) -> None:
        """Runs the server again with the same configuration (same ports, same storage) and unseals it."""
        directory = self._embedded.dir
        log = (directory / "bao-restarted.log").open("ab")
        self._restarted = subprocess.Popen(
            [find_bao_binary(), "server", f"-config={directory / CONFIG_FILE}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        keys = json.loads((directory / KEYS_FILE).read_text())
        deadline = time.monotonic() + START_WITHIN
        with httpx.Client(base_url=self.addr, timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    status = http.get("/v1/sys/health").status_code
                    if status == 200:
                        return
                    if status == 503:  # sealed, as after every start
                        http.put("/v1/sys/unseal", json={"key": keys["unseal_key"]})
                assert time.monotonic() < deadline, f"OpenBao did not come back; see {directory}/bao-restarted.log"
                time.sleep(0.05)

    def stop(self) -> None:
        if self._restarted is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._restarted.pid, signal.SIGCONT)
            self._restarted.terminate()
            self._restarted.wait(10)
        else:
            with contextlib.suppress(ProcessLookupError):
                self.thaw()
        self._embedded.stop()


async def in_thread(function: Any, *args: Any) -> Any:
    """Blocking backend control off the event loop."""
    return await asyncio.to_thread(function, *args)
