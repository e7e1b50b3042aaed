"""services/to_its_end.py: work a cancelled caller started runs to its end before the cancellation goes on."""

from __future__ import annotations

import asyncio

import pytest

from fakes import within
from webhookd.services.to_its_end import to_its_end


async def test_work_runs_to_its_end_and_then_the_cancellation_goes_on() -> None:
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        await release.wait()
        finished.set()
        return "done"

    caller = asyncio.ensure_future(to_its_end(work()))
    await within(started.wait())
    caller.cancel()
    release.set()

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished.is_set()


async def test_work_that_fails_after_the_caller_went_away_still_ends_cancelled() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        await release.wait()
        raise ConnectionError("the database went away too")

    caller = asyncio.ensure_future(to_its_end(work()))
    await within(started.wait())
    caller.cancel()
    release.set()

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
