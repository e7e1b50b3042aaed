"""supervisor.py: a child that dies is started again, even when a first attempt to do so fails, and
waits longer each time it keeps dying."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webhookd import supervisor
from webhookd.config import Settings
from webhookd.restart_backoff import RestartBackoff
from webhookd.runners import WORKER_READY, StartError
from webhookd.supervisor import Child, Supervisor


class FakeProcess:
    """What the supervisor reads of a child process: its pid, and waiting for its end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = asyncio.Event()

    def die(self) -> None:
        self.returncode = -9
        self._ended.set()

    def kill(self) -> None:
        self.die()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode


def no_wait() -> RestartBackoff:
    return RestartBackoff(first_delay=0.0)


@pytest.mark.parametrize("first_failure", [StartError("port taken"), OSError("fork failed")])
async def test_a_dead_child_is_started_again_after_a_failed_restart(
    monkeypatch: pytest.MonkeyPatch, first_failure: Exception
) -> None:
    watching = Supervisor(Settings(), dev=False, environment={})
    child = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(100), backoff=no_wait())
    watching._children = [child]
    spawned: list[FakeProcess] = []
    restarted_once = asyncio.Event()
    failures = [first_failure]

    async def spawn(restarted: Child, environment: dict[str, Any]) -> None:
        if failures:
            raise failures.pop()
        restarted.process = FakeProcess(101 + len(spawned))  # type: ignore[assignment]
        spawned.append(restarted.process)  # type: ignore[arg-type]
        restarted_once.set()

    monkeypatch.setattr(watching, "_spawn", spawn)
    watch = asyncio.create_task(watching._keep_running({}))
    try:
        child.process.die()  # type: ignore[union-attr]

        await asyncio.wait_for(restarted_once.wait(), 5)

        assert child.process is spawned[0] and child.restarts == 2 and not watch.done()
    finally:
        watch.cancel()
        watching._metrics_directory.cleanup()


async def test_a_child_whose_restart_hangs_does_not_hold_up_another_childs_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watching = Supervisor(Settings(), dev=False, environment={})
    stuck = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(100), backoff=no_wait())
    other = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(200), backoff=no_wait())
    watching._children = [stuck, other]
    stuck_restarting, other_restarted = asyncio.Event(), asyncio.Event()

    async def spawn(restarted: Child, environment: dict[str, Any]) -> None:
        if restarted is stuck:
            stuck_restarting.set()
            await asyncio.Event().wait()  # never ready, as a child stuck in its start-up
        restarted.process = FakeProcess(201)  # type: ignore[assignment]
        other_restarted.set()

    monkeypatch.setattr(watching, "_spawn", spawn)
    watch = asyncio.create_task(watching._keep_running({}))
    try:
        stuck.process.die()  # type: ignore[union-attr]
        await asyncio.wait_for(stuck_restarting.wait(), 5)
        other.process.die()  # type: ignore[union-attr]

        await asyncio.wait_for(other_restarted.wait(), 5)

        assert other.process.pid == 201 and other.restarts == 1  # type: ignore[union-attr]
    finally:
        watch.cancel()
        watching._metrics_directory.cleanup()


async def test_each_restart_in_a_row_is_logged_with_its_longer_delay(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    watching = Supervisor(Settings(), dev=False, environment={})
    backoff = RestartBackoff(first_delay=0.001)
    child = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(100), backoff=backoff)
    watching._children = [child]
    third_restart = asyncio.Event()

    async def spawn(restarted: Child, environment: dict[str, Any]) -> None:
        if restarted.restarts == 3:
            restarted.process = FakeProcess(103)  # type: ignore[assignment]
            third_restart.set()
        else:
            raise StartError("port taken")  # as a child that dies in its start-up, never ready

    monkeypatch.setattr(watching, "_spawn", spawn)
    watch = asyncio.create_task(watching._keep_running({}))
    try:
        child.process.die()  # type: ignore[union-attr]

        await asyncio.wait_for(third_restart.wait(), 5)

        died = [record for record in caplog.records if record.getMessage().startswith("child process died")]
        assert [(r.restart_delay_seconds, r.crashes_in_a_row, r.role) for r in died] == [  # type: ignore[attr-defined]
            (0.001, 1, "worker"),
            (0.002, 2, "worker"),
            (0.004, 3, "worker"),
        ]
    finally:
        watch.cancel()
        watching._metrics_directory.cleanup()


async def test_a_restart_stuck_in_its_start_up_is_killed_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start has a time limit; a restart has the same, or a child that never reports ready
    would stay down for good."""
    monkeypatch.setattr(supervisor, "START_TIMEOUT_SECONDS", 0.05)
    watching = Supervisor(Settings(), dev=False, environment={})
    child = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(100), backoff=no_wait())
    watching._children = [child]
    started: list[FakeProcess] = []
    ready = asyncio.Event()

    async def spawn(restarted: Child, environment: dict[str, Any]) -> None:
        restarted.process = FakeProcess(101 + len(started))  # type: ignore[assignment]
        started.append(restarted.process)  # type: ignore[arg-type]
        if len(started) == 1:
            await asyncio.Event().wait()  # never prints its ready line
        ready.set()

    monkeypatch.setattr(watching, "_spawn", spawn)
    watch = asyncio.create_task(watching._keep_running({}))
    try:
        child.process.die()  # type: ignore[union-attr]

        await asyncio.wait_for(ready.wait(), 5)

        assert [process.returncode for process in started] == [-9, None]
        assert child.process is started[1]
    finally:
        watch.cancel()
        watching._metrics_directory.cleanup()


async def test_a_child_that_exits_with_its_one_line_is_logged_with_that_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that found the schema changed under it exits 2 with the line start-up would print: the
    supervisor's log of its end says why, not only its exit code."""
    watching = Supervisor(Settings(), dev=False, environment={})
    child = Child("worker", ["worker"], WORKER_READY, process=FakeProcess(100), backoff=no_wait())
    stderr = asyncio.StreamReader()
    child.relays = [asyncio.create_task(supervisor._relay_errors(stderr))]
    watching._children = [child]
    restarted = asyncio.Event()

    async def spawn(again: Child, environment: dict[str, Any]) -> None:
        again.process = FakeProcess(101)  # type: ignore[assignment]
        restarted.set()

    monkeypatch.setattr(watching, "_spawn", spawn)
    watch = asyncio.create_task(watching._keep_running({}))
    try:
        stderr.feed_data(b"webhookd: cannot start: database schema: the database is at revision 9999\n")
        stderr.feed_eof()
        child.process.die()  # type: ignore[union-attr]

        await asyncio.wait_for(restarted.wait(), 5)

        [died] = [record for record in caplog.records if record.getMessage().startswith("child process died")]
        assert died.reason == "database schema: the database is at revision 9999"  # type: ignore[attr-defined]
    finally:
        watch.cancel()
        watching._metrics_directory.cleanup()
