"""services/to_its_end.py: work a cancelled caller started runs to its end before the cancellation goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from fakes import within
from webhookd.services.to_its_end import to_its_end


async def cancelled_while_running(ending: Callable[[], Awaitable[str]]) -> asyncio.Future[str]:
    """The caller of to_its_end for work that starts, waits to be let go, then ends as `ending` does;
    the caller is cancelled while the work waits. Returned once the caller is done."""
    started, release = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        await release.wait()
        return await ending()

    caller = asyncio.ensure_future(to_its_end(work()))
    await within(started.wait())
    caller.cancel()
    release.set()
    await asyncio.wait([caller])
    return caller


async def test_work_runs_to_its_end_and_then_the_cancellation_goes_on() -> None:
    finished = asyncio.Event()

    async def finishes() -> str:
        finished.set()
        return "done"

    caller = await cancelled_while_running(finishes)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished.is_set()


async def test_work_that_fails_after_the_caller_went_away_still_ends_cancelled() -> None:
    async def fails() -> str:
        raise ConnectionError("the database went away too")

    caller = await cancelled_while_running(fails)
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_without_a_cancel_it_is_the_works_result_or_error() -> None:
    async def fails() -> None:
        raise ConnectionError("refused")

    async def works() -> int:
        return 7

    assert await to_its_end(works()) == 7
    with pytest.raises(ConnectionError):
        await to_its_end(fails())
