"""GetWebhook and CreateWebhook throughput over gRPC, each as a ratio to a bare grpc.aio echo.

Run: `.venv/bin/python bench/crud.py` (or `make bench` for every benchmark). Three processes besides
this one: `webhookd serve` on an embedded PostgreSQL and OpenBao, the bare echo server
(bench/servers/echo.py, answering with a payload the size of a GetWebhookResponse), and the load
generator (bench/load/unary.py), started afresh for each turn: CONCURRENCY calls in flight over
CHANNELS connections, WARMUP then SECONDS measured, the three loads taking ROUNDS turns in order.
Targets (issue 11): GetWebhook >= 0.5 of the echo, CreateWebhook >= 0.15.

The service runs as an API-heavy deployment would: one server process per core
(WEBHOOKD_SERVER_PROCESSES; the default gives half the cores to servers and half to delivery
workers, which sit idle here). On the 2-core machine of the README CreateWebhook was 0.120-0.126
of the echo with the default (1 server process) and 0.149-0.157 with 2, in alternating runs; the
echo gains nothing from a second process (its load generator is what limits it: 14,686 and 16,073
calls in 3 s with one process, 14,781 and 15,090 with two).
"""

from __future__ import annotations

import os

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.report import Row, main, ratio_row
from harness.run import Run
from harness.service import UNUSED_URL, Client, start_service
from harness.turns import Load, alternate, spread_note

CONCURRENCY = 64
CHANNELS = 8
ROUNDS = 3
SECONDS = 2.0
WARMUP = 0.5
WEBHOOKS = 64  # GetWebhook cycles through them
API_PROCESSES = {"WEBHOOKD_SERVER_PROCESSES": str(os.cpu_count() or 1)}


def measure(run: Run) -> list[Row]:
    service = start_service(run, backends(run), "crud", API_PROCESSES)
    client = Client(run, service, "tnt_bench_crud")
    ids = [
        client.create_webhook(name=f"bench-{n}", url=UNUSED_URL, event_types=["bench.*"], tags=["bench"]).webhook.id
        for n in range(WEBHOOKS)
    ]
    size = client.get_webhook(ids[0]).ByteSize()
    echo = run.server("echo", "servers.echo")
    common = ["--concurrency", str(CONCURRENCY), "--channels", str(CHANNELS)]
    common += ["--warmup", str(WARMUP), "--seconds", str(SECONDS)]
    on_service = ["--target", service.grpc_target, "--token", client.token, *common]
    rates = alternate(
        run,
        {
            "echo": Load("load.unary", ["--kind", "echo", "--target", echo, "--size", str(size), *common]),
            "get": Load("load.unary", ["--kind", "get", "--ids", ",".join(ids), *on_service], on_service=True),
            "create": Load("load.unary", ["--kind", "create", *on_service], on_service=True),
        },
        rounds=ROUNDS,
        service=service,
    )
    echo_note = f"baseline: bare grpc.aio echo of {size} B (a GetWebhookResponse); {CONCURRENCY} in flight"
    return [
        ratio_row(
            "GetWebhook (gRPC)",
            rates["get"].rate,
            rates["echo"].rate,
            "calls/s",
            at_least=0.5,
            notes=[f"{echo_note}; {rates['get'].cpu_note('GetWebhook')}"],
        ),
        ratio_row(
            "CreateWebhook (gRPC)",
            rates["create"].rate,
            rates["echo"].rate,
            "calls/s",
            at_least=0.15,
            notes=[f"{rates['create'].cpu_note('CreateWebhook')}; {spread_note(rates, 'calls/s')}"],
        ),
    ]


if __name__ == "__main__":
    main("crud", measure)
