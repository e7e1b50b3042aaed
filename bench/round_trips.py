"""What a hand-off to an idle process costs on this machine: a `SELECT 1` round trip to the embedded
PostgreSQL after 5 ms and 50 ms idle, against the same round trip back to back.

Not a target of its own. Publish to first attempt crosses about ten such hand-offs between processes
(the caller, the server, PostgreSQL, the worker's listener and claim, the receiver; README,
Performance), so at idle this cost, not the work at each hop, sets most of it.

Run: `.venv/bin/python bench/round_trips.py`. The load generator (bench/load/round_trips.py) is a
process of its own, on one connection, one round trip at a time.
"""

from __future__ import annotations

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.report import Row, main, value_row
from harness.run import Run
from webhookd.store.conninfo import conninfo

COUNT = 200
GAPS = (0.005, 0.05)
LIMIT = 120.0


def measure(run: Run) -> list[Row]:
    database = conninfo(backends(run).new_database("round-trips"))
    gaps = ",".join(str(gap) for gap in (0.0, *GAPS))
    result = run.load(
        "round-trips",
        "load.round_trips",
        ["--database", database, "--count", str(COUNT), "--gaps", gaps],
        timeout=LIMIT,
    )
    back_to_back = result["0.0"]
    return [
        value_row(
            f"SELECT 1 round trip after {gap * 1000:g} ms idle, vs back to back",
            result[str(gap)]["p50"],
            back_to_back["p50"],
            "ms",
            notes=[f"{COUNT} round trips each; p90 {result[str(gap)]['p90']:.3f} ms vs {back_to_back['p90']:.3f} ms"],
        )
        for gap in GAPS
    ]


if __name__ == "__main__":
    main("round_trips", measure)
