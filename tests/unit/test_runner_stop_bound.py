"""A process stopping (server, worker, gateway) is done within its grace and a fixed allowance even when
what it stops does not finish: a frozen PostgreSQL made a worker with a 3 s grace take 12 s idle and
25 s with deliveries in flight, past the supervisor's SIGKILL and a container's stop timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from webhookd import app, runners
from webhookd.config import Settings

# Far past the bound: reached only when stopping hangs.
GIVE_UP_SECONDS = 30.0


@pytest.fixture
def no_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backends already running and answering; the process's collector left as it was."""

    async def answering(settings: Settings, backends: app.Backends) -> None:
        return None

    monkeypatch.setattr(app, "start_backends", lambda settings: app.Backends("postgresql+psycopg://", "http://v", "t"))
    monkeypatch.setattr(app, "check_backends", answering)
    monkeypatch.setattr(runners.gc, "freeze", lambda: None)
    monkeypatch.setattr(runners.gc, "set_threshold", lambda *thresholds: None)


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The codes the process ended with, not ending this one."""
    codes: list[int] = []
    monkeypatch.setattr(runners, "_leave", codes.append)
    return codes


async def test_a_part_that_never_finishes_stopping_is_left_and_the_process_exits_0(
    no_backends: None, exits: list[int]
) -> None:
    running = asyncio.Event()
    stopping = asyncio.Event()
    never = asyncio.Event()

    async def stop_that_hangs() -> None:
        stopping.set()
        await never.wait()  # as a close on a frozen database's connection may

    async def start(stack: contextlib.AsyncExitStack, backends: app.Backends, _: runners.End) -> str:
        stack.push_async_callback(stop_that_hangs)
        running.set()
        return "running"

    process = asyncio.create_task(runners._run(Settings(shutdown_grace_seconds=0.0), start))
    await running.wait()
    os.kill(os.getpid(), signal.SIGTERM)  # to the handler _run installed
    await stopping.wait()

    assert await asyncio.wait_for(process, GIVE_UP_SECONDS) == 0
    assert exits == [0]


async def test_a_stop_that_finishes_ends_the_process_the_usual_way(no_backends: None, exits: list[int]) -> None:
    running = asyncio.Event()
    stopped = asyncio.Event()

    async def start(stack: contextlib.AsyncExitStack, backends: app.Backends, _: runners.End) -> str:
        stack.push_async_callback(_set, stopped)
        running.set()
        return "running"

    process = asyncio.create_task(runners._run(Settings(shutdown_grace_seconds=0.0), start))
    await running.wait()
    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(process, GIVE_UP_SECONDS) == 0
    assert stopped.is_set() and exits == []


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_part_that_cannot_go_on_stops_the_process_in_order_with_one_line_and_exit_2(
    no_backends: None, exits: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker that found the database's schema changed under it: stopped as a signal stops it, then
    the line start-up prints for the same state."""
    stopped = asyncio.Event()

    async def start(stack: contextlib.AsyncExitStack, backends: app.Backends, end: runners.End) -> str:
        stack.push_async_callback(_set, stopped)
        asyncio.get_running_loop().call_soon(end, "database schema: the database is at revision 9999")
        return "running"

    code = await asyncio.wait_for(runners._run(Settings(shutdown_grace_seconds=0.0), start), GIVE_UP_SECONDS)

    assert code == 2 and stopped.is_set() and exits == []
    assert capsys.readouterr().err == "webhookd: cannot start: database schema: the database is at revision 9999\n"
