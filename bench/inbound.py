"""Inbound webhooks: accepted requests per second as a ratio to a bare Starlette handler doing the same verify.

Run: `.venv/bin/python bench/inbound.py`. Besides this one, three processes: `webhookd serve` (its
inbound route on the HTTP port, on an embedded PostgreSQL and OpenBao; the rate limit raised out of the
way), the bare handler (bench/servers/inbound.py: Starlette on uvicorn configured as the service's,
verifying the same Standard Webhooks signature, no database) and the load generator
(bench/load/inbound.py), started afresh for each turn: CONCURRENCY signed ~1 KiB POSTs in flight, each
under a fresh webhook-id so the service verifies and commits every one, WARMUP then SECONDS measured,
ROUNDS turns each in order. Target (issue 11): >= 0.3 of the bare handler.
"""

from __future__ import annotations

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.report import Row, main, ratio_row
from harness.run import Run
from harness.service import Client, start_service
from harness.turns import Load, alternate, spread_note

CONCURRENCY = 64
ROUNDS = 3
SECONDS = 2.0
WARMUP = 0.5
BODY_BYTES = 1024
INBOUND_PATH = "/api/v1/integration/inbound/"
# The per-webhook token bucket would otherwise be what is measured (its highest settings: far above the rate).
NO_RATE_LIMIT = {"WEBHOOKD_INBOUND_RATE_PER_SECOND": "1000000", "WEBHOOKD_INBOUND_BURST": "1000000"}


def measure(run: Run) -> list[Row]:
    service = start_service(run, backends(run), "inbound", NO_RATE_LIMIT)
    client = Client(run, service, "tnt_bench_inbound")
    created = client.create_webhook(name="bench-inbound", direction="DIRECTION_INBOUND")
    path = f"{INBOUND_PATH}{created.webhook.id}"
    bare = run.server("bare-inbound", "servers.inbound", ["--secret", created.signing_secret])
    common = ["--secret", created.signing_secret, "--body-bytes", str(BODY_BYTES)]
    common += ["--concurrency", str(CONCURRENCY), "--warmup", str(WARMUP), "--seconds", str(SECONDS)]
    rates = alternate(
        run,
        {
            "bare": Load("load.inbound", ["--url", f"http://{bare}{path}", *common]),
            "inbound": Load("load.inbound", ["--url", f"{service.http_url}{path}", *common], on_service=True),
        },
        rounds=ROUNDS,
        service=service,
    )
    return [
        ratio_row(
            "inbound requests accepted",
            rates["inbound"].rate,
            rates["bare"].rate,
            "req/s",
            at_least=0.3,
            notes=[
                f"{CONCURRENCY} signed {BODY_BYTES} B POSTs in flight; baseline: bare Starlette handler verifying the "
                f"same signature; {rates['inbound'].cpu_note('inbound')}; {spread_note(rates, 'req/s')}"
            ],
        )
    ]


if __name__ == "__main__":
    main("inbound", measure)
