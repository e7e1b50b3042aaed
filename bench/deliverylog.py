"""DeliveryLog backlog replay (entries/s) as a ratio to a bare grpc.aio stream of messages the same size.

Run: `.venv/bin/python bench/deliverylog.py`. Besides this one: `webhookd serve` (on an embedded
PostgreSQL and OpenBao), the receiver (bench/servers/receiver.py), the bare stream server
(bench/servers/stream.py) and the load generator (bench/load/stream.py), started afresh for each turn.
The backlog: one real delivery to the receiver makes one log entry, which is copied in SQL to BACKLOG
entries of the same tenant (harness/fixtures.py). Each turn reads DeliveryLog without follow to the end
(the whole backlog) or the bare stream of as many messages of the first entry's serialized size; one
unmeasured read warms up first, then ROUNDS turns each in order. Target (issue 11): >= 0.8 of the bare stream.
"""

from __future__ import annotations

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.fixtures import clone_rows, same_shape_id, wait_for_value
from harness.report import Row, main, ratio_row
from harness.run import Run
from harness.service import Client, start_service
from harness.turns import Load, alternate, spread_note

BACKLOG = 20_000
ROUNDS = 3
TEMPLATE_LIMIT = 30.0
READ_LIMIT = 60.0


def make_backlog(run: Run, client: Client, database: str) -> None:
    """One delivery through the service, its log entry copied to BACKLOG entries."""
    receiver = run.server("receiver", "servers.receiver")
    webhook = client.create_webhook(name="bench-log", url=f"http://{receiver}/hook/log", event_types=["bench.*"])
    client.publish("bench.logged", {"order": 7}, webhook_id=webhook.webhook.id)
    template = wait_for_value(
        database, "SELECT id FROM attempts WHERE webhook_id = %s LIMIT 1", (webhook.webhook.id,), TEMPLATE_LIMIT
    )
    copies = {column: same_shape_id(column) for column in ("id", "delivery_id", "event_id")}
    clone_rows(database, "attempts", template, BACKLOG - 1, copies)
    run.progress(f"backlog of {BACKLOG:,} log entries ready")


def measure(run: Run) -> list[Row]:
    service = start_service(run, backends(run), "deliverylog")
    client = Client(run, service, "tnt_bench_log")
    make_backlog(run, client, service.database)
    log_args = ["--kind", "log", "--target", service.grpc_target, "--token", client.token, "--count", str(BACKLOG)]
    warm = run.load("log-warm-up", "load.stream", log_args, timeout=READ_LIMIT)
    if warm["errors"]:
        raise RuntimeError(f"DeliveryLog: {warm['first_error']}")
    size = int(warm["size"])
    bare = run.server("stream", "servers.stream")
    rates = alternate(
        run,
        {
            "log": Load("load.stream", log_args, on_service=True),
            "bare": Load(
                "load.stream", ["--kind", "bare", "--target", bare, "--count", str(BACKLOG), "--size", f"{size}"]
            ),
        },
        rounds=ROUNDS,
        service=service,
    )
    return [
        ratio_row(
            "DeliveryLog backlog replay",
            rates["log"].rate,
            rates["bare"].rate,
            "entries/s",
            at_least=0.8,
            notes=[
                f"{BACKLOG:,} entries of {size} B, one stream; baseline: bare grpc.aio stream of as many "
                f"{size} B messages; {rates['log'].cpu_note('DeliveryLog', per='entry')}; "
                f"{spread_note(rates, 'entries/s')}"
            ],
        )
    ]


if __name__ == "__main__":
    main("deliverylog", measure)
