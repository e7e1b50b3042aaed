"""Load generator: one `SELECT 1` round trip at a time on one connection, back to back and after idle
gaps, to show what a hand-off to a process that was idle costs on this machine.

For each `--gaps` value (seconds) it sleeps that long before each of `--count` round trips, after a
few unmeasured ones. Prints one JSON line: per gap, the round trips' p50 and p90 in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from load.loop import emit

WARMUP = 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True, help="libpq URL")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--gaps", default="0,0.005,0.05")
    args = parser.parse_args()
    result: dict[str, dict[str, float]] = {}
    with psycopg.connect(args.database, autocommit=True) as connection:
        for gap in (float(text) for text in args.gaps.split(",")):
            for _ in range(WARMUP):
                connection.execute("SELECT 1")
            took = []
            for _ in range(args.count):
                time.sleep(gap)
                started = time.perf_counter()
                connection.execute("SELECT 1").fetchone()
                took.append((time.perf_counter() - started) * 1000)
            deciles = statistics.quantiles(took, n=10)  # as load/claim.py takes its quartiles
            result[str(gap)] = {"p50": statistics.median(took), "p90": deciles[8]}
    emit(result)


if __name__ == "__main__":
    main()
