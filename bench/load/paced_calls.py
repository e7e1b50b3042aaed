"""Load generator: one unary call at a time to the bare grpc.aio echo, back to back and after idle gaps,
to show what an idle gap costs a gRPC server in CPU per call (the server's, read from /proc).

For each `--gaps` value (seconds) it makes a few unmeasured calls, then `--count` calls each after
sleeping that long (back to back, `--count` times `--back-to-back-factor`: the CPU clock ticks every
10 ms, and a call back to back takes a fraction of one). Prints one JSON line: per gap, the calls'
p50 in ms and the server's CPU per call in µs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import grpc

from harness.cpu import process_seconds
from load.loop import emit
from servers.echo import PATH as ECHO_PATH

WARMUP = 20
PAYLOAD = b"x" * 330  # a GetWebhookResponse's size, as bench/crud.py's echo turns send


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, help="the echo server's host:port")
    parser.add_argument("--server-pid", type=int, required=True, help="its process, whose CPU is counted")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--back-to-back-factor", type=int, default=10)
    parser.add_argument("--gaps", default="0,0.005,0.05")
    args = parser.parse_args()
    result: dict[str, dict[str, float]] = {}
    with grpc.insecure_channel(args.target) as channel:
        echo = channel.unary_unary(ECHO_PATH)
        for gap in (float(text) for text in args.gaps.split(",")):
            count = args.count * (args.back_to_back_factor if gap == 0 else 1)
            for _ in range(WARMUP):
                echo(PAYLOAD)
            took = []
            cpu_before = process_seconds([args.server_pid])
            for _ in range(count):
                time.sleep(gap)
                started = time.perf_counter()
                echo(PAYLOAD)
                took.append((time.perf_counter() - started) * 1000)
            cpu = process_seconds([args.server_pid]) - cpu_before
            result[str(gap)] = {"p50": statistics.median(took), "cpu_us": cpu / count * 1e6, "calls": count}
    emit(result)


if __name__ == "__main__":
    main()
