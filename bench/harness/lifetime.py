"""How a child process (a baseline server or a load generator) ends: on SIGTERM/SIGINT, or with its parent.

The orchestrator stops its children itself; should it be killed outright, a child notices that its
parent is gone within a second and ends rather than lingering.
"""

from __future__ import annotations

import asyncio
import os
import signal

PARENT_CHECK_SECONDS = 1.0
_watchers: set[asyncio.Task[None]] = set()


def stop_event() -> asyncio.Event:
    """Set on SIGTERM or SIGINT, or when the parent process goes away. Call inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 - nothing to wait on: the parent's death is polled
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        stop.set()

    task = loop.create_task(watch_parent())
    _watchers.add(task)
    task.add_done_callback(_watchers.discard)
    return stop
