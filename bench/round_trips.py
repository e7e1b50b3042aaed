"""What a hand-off to an idle process costs on this machine: a `SELECT 1` round trip to the embedded
PostgreSQL after 5 ms and 50 ms idle, against the same round trip back to back; and what an idle gap
costs a gRPC server in CPU: the bare grpc.aio echo's CPU per call after those gaps, against back to back.

Not a target of its own. Publish to first attempt crosses about ten such hand-offs between processes
(the caller, the server, PostgreSQL, the worker's listener and claim, the receiver; README,
Performance), so at idle this cost, not the work at each hop, sets most of it. And a load the service
keeps up with spaces its calls out, so each costs its server more than under a saturating load.

Run: `.venv/bin/python bench/round_trips.py`. The load generators (bench/load/round_trips.py,
bench/load/paced_calls.py) and the echo server are processes of their own, one call at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.report import Row, main, value_row
from harness.run import Run
from webhookd.store.conninfo import conninfo

Gap = dict[str, float]  # one gap's figures, as the load generator printed them

COUNT = 200
GAPS = (0.005, 0.05)
LIMIT = 120.0


def measure(run: Run) -> list[Row]:
    return [*_round_trips(run), *_echo_calls(run)]


def _round_trips(run: Run) -> list[Row]:
    database = conninfo(backends(run).new_database("round-trips"))
    result = run.load(
        "round-trips",
        "load.round_trips",
        ["--database", database, "--count", str(COUNT), "--gaps", _gaps()],
        timeout=LIMIT,
    )
    return _against_back_to_back(
        result,
        "SELECT 1 round trip after {} ms idle, vs back to back",
        "p50",
        "ms",
        lambda gap, back: f"{COUNT} round trips each; p90 {gap['p90']:.3f} ms vs {back['p90']:.3f} ms",
    )


def _echo_calls(run: Run) -> list[Row]:
    target, echo = run.server_process("echo", "servers.echo")
    result = run.load(
        "paced-calls",
        "load.paced_calls",
        ["--target", target, "--server-pid", str(echo.pid), "--count", str(COUNT), "--gaps", _gaps()],
        timeout=LIMIT,
    )
    return _against_back_to_back(
        result,
        "bare grpc.aio echo's CPU per call after {} ms idle, vs back to back",
        "cpu_us",
        "µs",
        lambda gap, back: (
            f"{gap['calls']:,} and {back['calls']:,} calls, one at a time;"
            f" p50 call {gap['p50']:.3f} ms vs {back['p50']:.3f} ms"
        ),
    )


def _gaps() -> str:
    return ",".join(str(gap) for gap in (0.0, *GAPS))


def _against_back_to_back(
    result: dict[str, Gap], benchmark: str, key: str, unit: str, note: Callable[[Gap, Gap], str]
) -> list[Row]:
    """A row per idle gap: the load generator's `key` figure after it (`benchmark` names the gap in
    ms), against the same figure back to back."""
    back_to_back = result["0.0"]
    return [
        value_row(
            benchmark.format(f"{gap * 1000:g}"),
            result[str(gap)][key],
            back_to_back[key],
            unit,
            notes=[note(result[str(gap)], back_to_back)],
        )
        for gap in GAPS
    ]


if __name__ == "__main__":
    main("round_trips", measure)
