"""REST GetWebhook through the gateway as a ratio to gRPC GetWebhook, on the same service in the same run.

Run: `.venv/bin/python bench/gateway.py`. Besides this one, two processes: `webhookd serve` (gRPC and
the REST gateway, on an embedded PostgreSQL and OpenBao) and the load generator (bench/load/unary.py),
started afresh for each turn: CONCURRENCY calls in flight (REST: one aiohttp session of CONCURRENCY
connections, JSON decoded; gRPC: CHANNELS connections), WARMUP then SECONDS measured, the two loads
taking ROUNDS turns in order. The gateway's cost (JSON both ways, HTTP, its hop to the servicers)
shows as how far below 1 the ratio is. Target (issue 11): REST >= 0.6 of gRPC.
"""

from __future__ import annotations

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
WEBHOOKS = 64


def measure(run: Run) -> list[Row]:
    service = start_service(run, backends(run), "gateway")
    client = Client(run, service, "tnt_bench_gateway")
    ids = ",".join(
        client.create_webhook(name=f"bench-{n}", url=UNUSED_URL, event_types=["bench.*"]).webhook.id
        for n in range(WEBHOOKS)
    )
    common = ["--token", client.token, "--ids", ids, "--concurrency", str(CONCURRENCY)]
    common += ["--warmup", str(WARMUP), "--seconds", str(SECONDS)]
    rates = alternate(
        run,
        {
            "grpc": Load(
                "load.unary",
                ["--kind", "get", "--target", service.grpc_target, "--channels", str(CHANNELS), *common],
                on_service=True,
            ),
            "rest": Load("load.unary", ["--kind", "rest-get", "--target", service.http_url, *common], on_service=True),
        },
        rounds=ROUNDS,
        service=service,
    )
    return [
        ratio_row(
            "REST GetWebhook vs gRPC GetWebhook",
            rates["rest"].rate,
            rates["grpc"].rate,
            "calls/s",
            at_least=0.6,
            notes=[
                f"{rates['rest'].cpu_note('REST')}; {rates['grpc'].cpu_note('gRPC')}; {spread_note(rates, 'calls/s')}"
            ],
        )
    ]


if __name__ == "__main__":
    main("gateway", measure)
