"""Fan-out: PublishEvent of one event to FANOUT webhooks (call latency) as a ratio to a bare COPY of as many
delivery-shaped rows; and the same fan-out to FANOUT webhooks that listen on channels, of an event carrying
channels, as a ratio to the plain one.

Run: `.venv/bin/python bench/fanout.py`. Besides this one: `webhookd serve` with no delivery workers
(NO_DELIVERIES: nothing is sent, so nothing runs beside the publishes), on an embedded PostgreSQL
and OpenBao, and a load generator process per measurement (bench/load/fanout.py). One webhook made
through the API is copied in SQL to FANOUT webhooks of one tenant (harness/fixtures.py). The baseline
COPYs FANOUT rows shaped like the deliveries the first publish queued into a bare copy of the
deliveries table (no index, no constraint). One unmeasured publish and copy warm up, then ROUNDS of
each in turn; the figures are medians. Target (issue 11): <= 1.5 x the bare COPY.

With channels (issue 15): a second tenant's FANOUT webhooks each listen on two channels (`all` and one
of ten others); its event carries `all` and one of the ten, so every webhook matches through the
channel condition. Its publish takes turns with the plain one; target: <= 1.5 x the plain publish.
"""

from __future__ import annotations

import statistics

import psycopg
from psycopg import sql

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness.backends import backends
from harness.fixtures import clone_rows, same_shape_id
from harness.report import Row, main, ratio_row
from harness.run import Run
from harness.service import UNUSED_URL, Client, start_service

FANOUT = 10_000
ROUNDS = 5
LIMIT = 60.0
COPY_TABLE = "bench_copy"
CHANNELS = "all,c3"
# Nothing delivers (either setting does it: no worker slots, or no worker processes once the service
# runs them apart), so nothing runs beside the publishes and the queued deliveries stay put.
NO_DELIVERIES = {"WEBHOOKD_WORKERS": "0", "WEBHOOKD_WORKER_PROCESSES": "0"}


def make_webhooks(client: Client, database: str, channels: list[str] | None = None) -> None:
    template = client.create_webhook(
        name="fanout", url=UNUSED_URL, event_types=["bench.fanout"], channels=channels or []
    ).webhook.id
    overrides = {"id": same_shape_id("id"), "name": sql.SQL("t.name || ' ' || g")}
    if channels:
        overrides["channels"] = sql.SQL("ARRAY['all', 'c' || (g %% 10)]")
    clone_rows(database, "webhooks", template, FANOUT - 1, overrides)
    if channels:
        return
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE TABLE {} (LIKE deliveries INCLUDING DEFAULTS)").format(sql.Identifier(COPY_TABLE))
        )


def measure(run: Run) -> list[Row]:
    service = start_service(run, backends(run), "fanout", NO_DELIVERIES)
    client = Client(run, service, "tnt_bench_fanout")
    make_webhooks(client, service.database)
    on_channels = Client(run, service, "tnt_bench_channels")
    make_webhooks(on_channels, service.database, channels=["all", "c0"])
    run.progress(f"{FANOUT:,} webhooks ready, and {FANOUT:,} more on channels")
    publish = ["--kind", "publish", "--count", str(FANOUT), "--target", service.grpc_target, "--token", client.token]
    event = run.load("publish-warm-up", "load.fanout", publish, timeout=LIMIT)["event_id"]
    copy = ["--kind", "copy", "--count", str(FANOUT), "--database", service.database, "--table", COPY_TABLE]
    copy += ["--event", str(event)]
    run.load("copy-warm-up", "load.fanout", copy, timeout=LIMIT)
    channelled = ["--kind", "publish", "--count", str(FANOUT), "--target", service.grpc_target]
    channelled += ["--token", on_channels.token, "--channels", CHANNELS]
    run.load("channels-warm-up", "load.fanout", channelled, timeout=LIMIT)
    publish_ms: list[float] = []
    copy_ms: list[float] = []
    channels_ms: list[float] = []
    for turn in range(1, ROUNDS + 1):
        publish_ms.append(float(run.load(f"publish-{turn}", "load.fanout", publish, timeout=LIMIT)["ms"]))
        copy_ms.append(float(run.load(f"copy-{turn}", "load.fanout", copy, timeout=LIMIT)["ms"]))
        channels_ms.append(float(run.load(f"channels-{turn}", "load.fanout", channelled, timeout=LIMIT)["ms"]))
        run.progress(
            f"round {turn}/{ROUNDS}: publish {publish_ms[-1]:,.0f} ms, copy {copy_ms[-1]:,.0f} ms,"
            f" on channels {channels_ms[-1]:,.0f} ms"
        )
    return [
        ratio_row(
            f"fan-out 1 event to {FANOUT:,} webhooks",
            statistics.median(publish_ms),
            statistics.median(copy_ms),
            "ms",
            at_most=1.5,
            notes=[
                f"PublishEvent call vs a bare COPY of {FANOUT:,} delivery-shaped rows and commit; medians of {ROUNDS}; "
                f"turns ranged publish {min(publish_ms):,.0f}-{max(publish_ms):,.0f}, "
                f"copy {min(copy_ms):,.0f}-{max(copy_ms):,.0f} ms"
            ],
        ),
        ratio_row(
            f"fan-out 1 event on channels to {FANOUT:,} webhooks with channels",
            statistics.median(channels_ms),
            statistics.median(publish_ms),
            "ms",
            at_most=1.5,
            notes=[
                f"PublishEvent with channels [{CHANNELS}] to {FANOUT:,} webhooks listening on 2 channels each,"
                f" vs the plain fan-out above; medians of {ROUNDS}; turns ranged"
                f" {min(channels_ms):,.0f}-{max(channels_ms):,.0f} ms"
            ],
        ),
    ]


if __name__ == "__main__":
    main("fanout", measure)
