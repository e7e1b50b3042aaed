"""The closed loop every throughput load generator runs, and the one JSON line each prints.

`concurrency` calls are kept in flight; after `warmup` s, completions are counted for `duration` s or
until `max_ops` completed, whichever comes first. A call that raises is an error, never a completion;
after MAX_ERRORS the loop stops early. The loop also ends when `stop` is set (SIGTERM, parent gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

MAX_ERRORS = 50


@dataclass
class LoopResult:
    ops: int  # completions in the measured window
    seconds: float  # length of the measured window
    calls: int  # every completion, warm-up included (for CPU per call)
    errors: int
    first_error: str


async def closed_loop(
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    max_ops: int,
    stop: asyncio.Event,
) -> LoopResult:
    result = LoopResult(0, 0.0, 0, 0, "")
    measuring = False
    done = asyncio.Event()

    async def worker() -> None:
        while not done.is_set():
            try:
                await call()
            except Exception as error:  # noqa: BLE001 - counted and reported, never as throughput
                result.errors += 1
                result.first_error = result.first_error or f"{type(error).__name__}: {error}"[:500]
                if result.errors >= MAX_ERRORS:
                    done.set()
                continue
            result.calls += 1
            if measuring:
                result.ops += 1
                if result.ops >= max_ops:
                    done.set()

    async def until_stopped() -> None:
        await stop.wait()
        done.set()

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    watcher = asyncio.create_task(until_stopped())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), warmup)
        measuring = True
        started = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), duration)
        measuring = False
        result.seconds = time.perf_counter() - started
        done.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        for task in [*tasks, watcher]:
            task.cancel()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)
    return result


def emit(result: LoopResult | Mapping[str, Any]) -> None:
    """The load generator's one line of output: a JSON object on stdout."""
    print(json.dumps(asdict(result) if isinstance(result, LoopResult) else dict(result)), flush=True)
