"""Work that must not be cut short when its caller goes away.

grpc.aio cancels a call's task when the caller cancels or its deadline passes. A write cancelled
while its COMMIT is under way may still land, and what follows it (telling the caches, putting a
secret back on failure) must then happen too: so such work runs to its end, awaited, not left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def to_its_end(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; when the caller is cancelled meanwhile, `work` still runs to its end and then
    the cancellation goes on."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # How it ended was the caller's to hear; a second cancel stops this wait, not `work`, whose
        # error is then marked seen so asyncio does not log it as never retrieved.
        task.add_done_callback(_seen)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
        raise


def _seen(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
