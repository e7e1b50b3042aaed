"""`make bench`: every benchmark, each a ratio to a bare baseline from the same run, in one table.

Run: `.venv/bin/python bench/all.py`. Starts one embedded PostgreSQL and one OpenBao for all of them
(passed on in BENCH_BACKENDS; each benchmark's service gets a database of its own), then runs each
benchmark script as a process of its own, one after another, each bounded by BENCHMARK_LIMIT and each
after a CHECKPOINT (harness/backends.py: settle), so none shares the disk with what another wrote. Their
progress goes to stderr; their rows come back through a file (BENCH_ROWS) and are printed together,
with the machine and its load average, since every figure depends on both. A benchmark that fails is a
FAILED row and makes the exit status 1; the others still run.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.procs import ChildFailed
from harness.report import ROWS_ENV, Row, failed_row, read_rows, table
from harness.run import BENCH_DIR, PYTHON, Run

BENCHMARKS = ("crud", "gateway", "delivery", "deliverylog", "inbound", "fanout", "claim")
BENCHMARK_LIMIT = 300.0
CLEANUP_GRACE = 60.0  # a benchmark stopped at its limit stops its own processes first


def run_benchmark(run: Run, name: str, env: dict[str, str]) -> list[Row]:
    rows_file = run.dir / f"{name}.rows"
    child = run.child(
        name,
        [PYTHON, str(BENCH_DIR / f"{name}.py")],
        env={**env, ROWS_ENV: str(rows_file)},
        console=True,
        grace=CLEANUP_GRACE,
    )
    try:
        code = child.wait(BENCHMARK_LIMIT)
    except ChildFailed:
        return [failed_row(name, f"stopped after {BENCHMARK_LIMIT:.0f} s")]
    rows = read_rows(str(rows_file)) if rows_file.exists() else []
    if code != 0 and not rows:
        rows = [failed_row(name, f"exited with {code}")]
    return rows


def machine(loads: tuple[float, float]) -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end"
    )


def main() -> int:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    try:
        with Run("all") as run:
            shared = backends(run)
            env = shared.to_env()
            for name in BENCHMARKS:
                shared.settle()
                rows += run_benchmark(run, name, env)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print()
    print(table(rows))
    print(f"\n{machine((load_before, os.getloadavg()[0]))}")
    print(f"make bench took {time.monotonic() - started:.0f} s")
    return 1 if any(row.webhookd == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
