"""The fault tests' freeze (backends._stop_all) returns once nothing of the frozen server can run, a
child that exited and waits to be reaped included: a PostgreSQL backend that exited as its postmaster
froze stayed a zombie until the thaw, and the freeze waited for it to stop until it gave up (10 s), with
the server left frozen for every test after it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from backends import _all_threads_stopped, _stop_all, _thread_states

WITHIN = 10.0


def state_reached(pid: int, state: str) -> bool:
    deadline = time.monotonic() + WITHIN
    while state not in _thread_states(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A child process of the test's, reaped (and killed if still running) at the end."""
    # It waits on its stdin, which the test never writes to, until it is killed.
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.communicate(timeout=WITHIN)


def test_a_child_that_exited_unreaped_counts_as_stopped(child: subprocess.Popen[bytes]) -> None:
    child.kill()  # not waited for: a zombie until the fixture reaps it
    assert state_reached(child.pid, "Z")

    assert _all_threads_stopped(child.pid)
    _stop_all([psutil.Process(child.pid)])  # returns at once, where it used to time out


def test_a_running_process_is_stopped_before_the_freeze_returns(child: subprocess.Popen[bytes]) -> None:
    _stop_all([psutil.Process(child.pid)])

    assert set(_thread_states(child.pid)) <= {"T", "t"}
