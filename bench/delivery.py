"""End-to-end deliveries and publish-to-first-attempt latency, each against a bare aiohttp baseline.

Run: `.venv/bin/python bench/delivery.py`. Besides this one: one `webhookd serve` per WORKER_PROCESSES
setting (on one embedded PostgreSQL and OpenBao, a database each; all started up front, each idle while
another is measured), the receiver (bench/servers/receiver.py: counts requests, checks every signature,
notes arrival times) and the load generators, each a process:

  e2e        bench/load/e2e.py publishes events, each fanned out to HOOKS webhooks pointing at the
             receiver, and times first publish -> last 2xx attempt recorded in the attempts table; as
             many events per turn as fill about TURN_SECONDS (within bounds) at the pace of the
             warm-up for the first round and of the slowest setting's last turn after it;
  baseline   bench/load/bare_posts.py signs (Standard Webhooks, HMAC-SHA256) and POSTs bodies of the size
             the service's deliveries had to the same receiver, WORKERS in flight (the service's
             WEBHOOKD_WORKERS): deliveries/s against posts/s;
  latency    bench/load/probe.py, running alongside each of those loads, publishes (or, for the baseline,
             POSTs) one probe every PROBE_PACE s to a webhook of its own and takes call start -> arrival at
             the receiver (one monotonic clock for every process on the machine). Probes before any load
             give the idle line;
  paced      after the rounds, one e2e turn publishing at PACED_SHARE of the 1-worker-process setting's
             e2e rate (not as fast as it can) and one bare turn POSTing at as many per second, each
             with its probe: latency and CPU per delivery at a load the service keeps up with, where a
             saturating load's latency is mostly its queues.

ROUNDS rounds of: the first setting, the baseline, the other settings. The scaling line compares
WEBHOOKD_WORKER_PROCESSES=2 with =1 (WORKER_PROCESSES: add a setting there for another line; a build
that does not know the setting ignores it, and the notes then show the same process count for both).
Targets (issue 11): e2e >= 0.35 of the baseline; publish to first attempt while the e2e load runs
p50 <= 5 ms, p99 <= 25 ms.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import harness  # noqa: F401 - first: it sets gRPC's environment before grpc loads
from harness import batching, signing
from harness.backends import Backends, backends
from harness.cpu import backend_seconds, seconds_since
from harness.procs import Child
from harness.report import Row, main, ratio_row, value_row
from harness.run import Run
from harness.service import Client, Service, start_service

WORKERS = 32
WORKER_PROCESSES = (1, 2)
CAPS_OUT_OF_THE_WAY = 1000  # the per-webhook cap's largest setting: past what every process can hold
HOOKS = 10
TURN_SECONDS = 4.0  # the e2e turns' aim: long enough for the probe's samples and a small polling error
EVENTS = (20, 500)  # bounds on the events per e2e turn, each fanned out to HOOKS webhooks
ROUNDS = 2
PUBLISHERS = 16  # PublishEvent calls in flight
PAYLOAD_BYTES = 200
WARMUP_EVENTS = 20
BARE_POSTS = 5_000  # per turn: enough for the baseline to run a few seconds, so its probe gets samples
PROBE_PACE = 0.05
PACED_SHARE = 0.5
IDLE_PROBES = 20
E2E_LIMIT = 60.0
SETTLE = 10.0


@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)  # call start -> arrival
    missing: int = 0
    calls: list[float] = field(default_factory=list)  # the calls alone: what of the wait came before the answer

    def add(self, other: Latency) -> None:
        self.samples = sorted(self.samples + other.samples)
        self.missing += other.missing
        self.calls = sorted(self.calls + other.calls)

    def percentile(self, fraction: float) -> float:
        return _percentile(self.samples, fraction)

    def note(self, what: str) -> str:
        missing = f", {self.missing} never arrived (counted as the wait)" if self.missing else ""
        return (
            f"{what}: {len(self.samples)} probes{missing}, p50 {self.percentile(0.5):,.1f} ms "
            f"(the call alone {_percentile(self.calls, 0.5):,.1f} ms)"
        )


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Totals:
    """What a load's turns add up to."""

    done: int = 0  # deliveries recorded as 2xx, or bare POSTs answered
    events: int = 0
    expected: int = 0
    turns: list[float] = field(default_factory=list)  # each turn's rate: how noisy the machine was
    seconds: float = 0.0
    db_seconds: float = 0.0
    publish_seconds: float = 0.0
    cpu_seconds: float = 0.0
    role_cpu_seconds: dict[str, float] = field(default_factory=dict)  # the same by process role (harness/cpu.py)
    db_cpu_seconds: float = 0.0  # the backends serving the service's database
    processes: int = 0
    latency: Latency = field(default_factory=Latency)
    batching: batching.Batching = field(default_factory=batching.Batching)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def cpu_note(self) -> str:
        """The service's and its database's CPU per delivery, the service's by process role."""
        per = 1e6 / max(1, self.done)
        roles = ", ".join(f"{role} {seconds * per:,.0f}" for role, seconds in sorted(self.role_cpu_seconds.items()))
        return (
            f"CPU {self.cpu_seconds * per:,.0f} µs per delivery ({roles}), its database's PostgreSQL backends "
            f"{self.db_cpu_seconds * per:,.0f} µs"
        )


@dataclass
class UnderTest:
    """One running service, with WEBHOOKD_WORKER_PROCESSES=`worker_processes`, set up for e2e turns."""

    worker_processes: int
    service: Service
    e2e_args: list[str]
    probe_args: list[str]
    totals: Totals = field(default_factory=Totals)


def receiver_stats(receiver: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{receiver}/stats", timeout=10) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def check_signed(before: dict[str, int], after: dict[str, int], done: int) -> None:
    """Every request the receiver got meanwhile carried a valid signature, and none counted done is missing."""
    delta = {key: after[key] - before[key] for key in after}
    if delta["unsigned"] or delta["bad"]:
        raise RuntimeError(f"receiver got {delta['unsigned']} unsigned and {delta['bad']} badly signed requests")
    if delta["verified"] < done:
        raise RuntimeError(f"{done} deliveries recorded as 2xx but the receiver verified only {delta['verified']}")


def start_probe(run: Run, name: str, args: list[str], receiver: str, *, started_file: Path | None = None) -> Child:
    wait = ["--wait-file", str(started_file)] if started_file else ["--max-samples", str(IDLE_PROBES)]
    common = ["--receiver", f"http://{receiver}", "--pace", str(PROBE_PACE), "--settle", str(SETTLE)]
    return run.python(name, "load.probe", [*args, *common, "--limit", str(E2E_LIMIT), *wait])


def probe_result(child: Child, *, finish: bool) -> Latency:
    if finish:
        child.ask_to_finish()
    result = child.result(E2E_LIMIT + SETTLE + 20)
    return Latency(result["latencies_ms"], int(result["missing"]), sorted(result["call_ms"]))


def start(run: Run, backs: Backends, receiver: str, worker_processes: int) -> UnderTest:
    """The service with its HOOKS webhooks (and one for the probe) pointing at the receiver."""
    env = {
        "WEBHOOKD_WORKERS": str(WORKERS),
        "WEBHOOKD_WORKER_PROCESSES": str(worker_processes),
        # The fleet-wide per-webhook and per-tenant caps out of the way of every worker of every
        # process: all the webhooks are one tenant's, and what is measured is how fast the service moves.
        # A lease counts against the caps from its claim until its result is recorded, and each process
        # claims ahead of its workers (delivery/claim_ahead.py): caps of WORKERS x processes held the
        # claims to one batch in hand, and workers waited on the recorder (claims came back empty
        # with thousands due).
        "WEBHOOKD_PER_WEBHOOK_CONCURRENCY": str(CAPS_OUT_OF_THE_WAY),
        "WEBHOOKD_PER_TENANT_CONCURRENCY": str(CAPS_OUT_OF_THE_WAY),
    }
    service = start_service(run, backs, f"e2e{worker_processes}", env)
    client = Client(run, service, f"tnt_bench_e2e{worker_processes}")
    for n in range(HOOKS):
        url = f"http://{receiver}/hook/e2e-{n}"
        client.create_webhook(name=f"e2e-{n}", url=url, event_types=["bench.created"], signing_secret=signing.SECRET)
    probe_hook = client.create_webhook(
        name="probe", url=f"http://{receiver}/hook/probe", event_types=["bench.probe"], signing_secret=signing.SECRET
    ).webhook.id
    publish = ["--target", service.grpc_target, "--token", client.token]
    e2e_args = [*publish, "--database", service.database, "--tenant", client.tenant_id, "--hooks", str(HOOKS)]
    e2e_args += ["--limit", str(E2E_LIMIT)]
    e2e_args += ["--concurrency", str(PUBLISHERS), "--payload-bytes", str(PAYLOAD_BYTES)]
    return UnderTest(worker_processes, service, e2e_args, ["--mode", "publish", *publish, "--webhook", probe_hook])


def warm_up(run: Run, test: UnderTest, receiver: str) -> tuple[int, float]:
    """A few events end to end, unmeasured; returns the mean body size the receiver got and the pace
    (deliveries/s, a rough one)."""
    before = receiver_stats(receiver)
    args = [*test.e2e_args, "--events", str(WARMUP_EVENTS)]
    warm = run.load(f"e2e{test.worker_processes}-warm-up", "load.e2e", args, timeout=E2E_LIMIT + 30)
    after = receiver_stats(receiver)
    if warm["errors"] or warm["recorded"] < warm["expected"]:
        raise RuntimeError(f"e2e warm-up failed: {warm}")
    body_bytes = (after["body_bytes"] - before["body_bytes"]) // max(1, after["received"] - before["received"])
    return body_bytes, warm["recorded"] / warm["seconds"]


def events_per_turn(pace: float) -> int:
    """Events that keep an e2e turn going for about TURN_SECONDS at `pace` deliveries/s, within EVENTS."""
    return max(EVENTS[0], min(EVENTS[1], round(pace * TURN_SECONDS / HOOKS)))


def e2e_turn(run: Run, test: UnderTest, receiver: str, events: int, turn: str, totals: Totals, rate: float = 0) -> None:
    """`events` events end to end (at `rate` events/s; 0: as fast as they go), with a probe alongside;
    adds to `totals`."""
    name = f"e2e{test.worker_processes}-{turn}"
    started_file = run.dir / f"{name}.started"
    prober = start_probe(run, f"{name}-probe", test.probe_args, receiver, started_file=started_file)
    before, cpu_before = receiver_stats(receiver), test.service.usage()
    batched_before = batching.read(test.service.http_url)
    db_cpu_before = backend_seconds(test.service.database)
    args = [*test.e2e_args, "--events", str(events), "--started-file", str(started_file), "--rate", f"{rate:.3f}"]
    result = run.load(name, "load.e2e", args, timeout=E2E_LIMIT + 30)
    cpu_after = test.service.usage()
    batched = batching.read(test.service.http_url).since(batched_before)
    totals.db_cpu_seconds += seconds_since(backend_seconds(test.service.database), db_cpu_before)
    latency = probe_result(prober, finish=True)
    if result["errors"]:
        raise RuntimeError(f"{name}: {result['errors']} failed publishes; first: {result['first_error']}")
    if result["queued"] != result["expected"]:
        raise RuntimeError(f"{name}: the service queued {result['queued']} deliveries, not {result['expected']}")
    check_signed(before, receiver_stats(receiver), int(result["recorded"]))
    totals.done += int(result["recorded"])
    totals.turns.append(int(result["recorded"]) / float(result["seconds"]))
    totals.events += events
    totals.expected += int(result["expected"])
    totals.seconds += float(result["seconds"])
    totals.db_seconds += float(result["db_seconds"] or "nan")
    totals.publish_seconds += float(result["publish_seconds"])
    totals.cpu_seconds += cpu_after.cpu_seconds - cpu_before.cpu_seconds
    for role, seconds in cpu_after.role_seconds_since(cpu_before).items():
        totals.role_cpu_seconds[role] = totals.role_cpu_seconds.get(role, 0.0) + seconds
    totals.processes = cpu_after.processes
    totals.latency.add(latency)
    totals.batching.add(batched)


def bare_turn(
    run: Run, receiver: str, body_bytes: int, totals: Totals, turn: str, posts: int = BARE_POSTS, rate: float = 0
) -> None:
    """`posts` signed POSTs, WORKERS in flight (at `rate` posts/s; 0: as fast as they go), with a probe
    alongside; adds to totals."""
    started_file = run.dir / f"bare-{turn}.started"
    probe_args = ["--mode", "post", "--url", f"http://{receiver}/hook/bare-probe"]
    prober = start_probe(run, f"bare-{turn}-probe", probe_args, receiver, started_file=started_file)
    before = receiver_stats(receiver)
    args = ["--url", f"http://{receiver}/hook/bare", "--count", str(posts), "--concurrency", str(WORKERS)]
    args += ["--body-bytes", str(body_bytes), "--started-file", str(started_file), "--limit", str(E2E_LIMIT)]
    args += ["--rate", f"{rate:.3f}"]
    result = run.load(f"bare-{turn}", "load.bare_posts", args, timeout=E2E_LIMIT + 30)
    latency = probe_result(prober, finish=True)
    if result["errors"]:
        raise RuntimeError(f"bare posts: {result['errors']} failed; first: {result['first_error']}")
    check_signed(before, receiver_stats(receiver), int(result["posts"]))
    totals.done += int(result["posts"])
    totals.turns.append(int(result["posts"]) / float(result["seconds"]))
    totals.expected += posts
    totals.seconds += float(result["seconds"])
    totals.latency.add(latency)


def e2e_notes(test: UnderTest) -> list[str]:
    totals = test.totals
    incomplete = "" if totals.done >= totals.expected else f"; ONLY {totals.done} of {totals.expected} recorded in time"
    settings = f"WEBHOOKD_WORKER_PROCESSES={test.worker_processes}, WEBHOOKD_WORKERS={WORKERS}"
    return [
        f"{settings}: {ROUNDS} turns, {totals.events} events x {HOOKS} webhooks, {totals.seconds:.2f} s in all from "
        f"first publish to last 2xx recorded (by the attempts' own occurred_at: {totals.db_seconds:.2f} s)"
        f"{incomplete}; publishing alone {totals.events / totals.publish_seconds:,.0f} events/s; the service ran "
        f"{totals.processes} process(es), {totals.cpu_note()}; "
        f"turns: {', '.join(f'{rate:,.0f}' for rate in totals.turns)}/s; {totals.batching.note(totals.done)}"
    ]


def rows(tests: list[UnderTest], bare: Totals, idle: Latency, bare_idle: Latency, body_bytes: int) -> list[Row]:
    first = tests[0]
    out = []
    for test in tests:
        baseline = [
            f"baseline: bare aiohttp sign-and-POST loop, {WORKERS} in flight, {body_bytes} B bodies; turns: "
            f"{', '.join(f'{rate:,.0f}' for rate in bare.turns)}/s"
        ]
        out.append(
            ratio_row(
                f"e2e deliveries, {test.worker_processes} worker process{'es' if test.worker_processes > 1 else ''}",
                test.totals.rate,
                bare.rate,
                "deliveries/s",
                at_least=0.35,
                notes=e2e_notes(test) + (baseline if test is first else []),
            )
        )
    for test in tests[1:]:
        same = first.totals.processes == test.totals.processes
        out.append(
            ratio_row(
                f"e2e scaling, {test.worker_processes} vs {first.worker_processes} worker processes",
                test.totals.rate,
                first.totals.rate,
                "deliveries/s",
                notes=[
                    f"the service ran {first.totals.processes} then {test.totals.processes} process(es)"
                    + (": the same count, so the setting looks ignored by this build" if same else "")
                ],
            )
        )
    under_load, bare_load = first.totals.latency, bare.latency
    others = "; ".join(t.totals.latency.note(f"with {t.worker_processes} worker processes") for t in tests[1:])
    out += [
        value_row(
            "publish -> first attempt p50",
            under_load.percentile(0.5),
            bare_load.percentile(0.5),
            "ms",
            at_most=5,
            notes=[
                f"{under_load.note(f'during the e2e turns, {first.worker_processes} worker process')}, one every "
                f"{PROBE_PACE} s; baseline: a bare signed POST's start -> arrival during the bare turns: "
                f"{bare_load.note('bare')}" + (f"; {others}" if others else "")
            ],
        ),
        value_row(
            "publish -> first attempt p99",
            under_load.percentile(0.99),
            bare_load.percentile(0.99),
            "ms",
            at_most=25,
        ),
        value_row(
            "publish -> first attempt p50, idle",
            idle.percentile(0.5),
            bare_idle.percentile(0.5),
            "ms",
            notes=[
                f"nothing else running, one every {PROBE_PACE} s: {idle.note('webhookd')}; {bare_idle.note('bare')}"
            ],
        ),
    ]
    return out


def measure(run: Run) -> list[Row]:
    backs = backends(run)
    receiver = run.server("receiver", "servers.receiver")
    # Every setting's service runs from the start; each is idle while another is measured.
    tests = [start(run, backs, receiver, processes) for processes in WORKER_PROCESSES]
    body_bytes, pace = [warm_up(run, test, receiver) for test in tests][0]  # noqa: RUF015 - every one warms up
    events = events_per_turn(pace)
    idle = probe_result(start_probe(run, "idle-probe", tests[0].probe_args, receiver), finish=False)
    bare_probe = ["--mode", "post", "--url", f"http://{receiver}/hook/bare-probe"]
    bare_idle = probe_result(start_probe(run, "bare-idle-probe", bare_probe, receiver), finish=False)
    bare = Totals()
    for turn in range(1, ROUNDS + 1):
        e2e_turn(run, tests[0], receiver, events, str(turn), tests[0].totals)
        bare_turn(run, receiver, body_bytes, bare, str(turn))
        for test in tests[1:]:
            e2e_turn(run, test, receiver, events, str(turn), test.totals)
        run.progress(
            f"round {turn}/{ROUNDS}: "
            + ", ".join(f"{t.worker_processes} worker process(es) {t.totals.rate:,.0f}/s" for t in tests)
            + f", bare {bare.rate:,.0f}/s"
        )
        # The warm-up's pace is a small batch's, mostly start-up: later rounds are sized from the
        # slowest setting's last turn, so each turn lasts about TURN_SECONDS as intended.
        events = events_per_turn(min(test.totals.turns[-1] for test in tests))
    paced, bare_paced = Totals(), Totals()
    pace = tests[0].totals.rate * PACED_SHARE  # deliveries/s
    e2e_turn(run, tests[0], receiver, events_per_turn(pace), "paced", paced, rate=pace / HOOKS)
    bare_turn(run, receiver, body_bytes, bare_paced, "paced", posts=round(pace * TURN_SECONDS), rate=pace)
    return rows(tests, bare, idle, bare_idle, body_bytes) + paced_rows(tests[0], paced, bare_paced, pace)


def paced_rows(test: UnderTest, paced: Totals, bare: Totals, pace: float) -> list[Row]:
    """Publish -> first attempt at a load the service keeps up with (PACED_SHARE of its e2e rate)."""
    share = f"{PACED_SHARE:g} of the e2e rate"
    notes = [
        f"{test.worker_processes} worker process, one e2e turn publishing {pace / HOOKS:,.0f} events/s x {HOOKS} "
        f"webhooks ({share}, {pace:,.0f} deliveries/s; it delivered {paced.rate:,.0f}/s); service "
        f"{paced.cpu_note()}; {paced.batching.note(paced.done)}; "
        f"{paced.latency.note('probes')}; baseline: a bare "
        f"signed POST's start -> arrival while the bare loop POSTs {pace:,.0f}/s: {bare.latency.note('bare')}"
    ]
    return [
        value_row(
            f"publish -> first attempt p50 at {share}",
            paced.latency.percentile(0.5),
            bare.latency.percentile(0.5),
            "ms",
            notes=notes,
        ),
        value_row(
            f"publish -> first attempt p99 at {share}",
            paced.latency.percentile(0.99),
            bare.latency.percentile(0.99),
            "ms",
        ),
    ]


if __name__ == "__main__":
    main("delivery", measure)
