"""Throughput loads measured in alternating turns, each turn a load generator process of its own.

With `rounds` turns per load taken in order (a, b, c, a, b, c, ...), whatever else the machine does
meanwhile weighs on a figure and its baseline alike. A load's figure is its completions over all turns
divided by its measured seconds over all turns. For loads on the service under test, the CPU the
service's processes spent during each turn is summed too (CPU per call is steadier than throughput on a
busy machine), and so is what its dependencies spent: the PostgreSQL backends serving its database, and
OpenBao. Any failed call fails the benchmark: errors are never throughput.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.cpu import backend_seconds, process_seconds, seconds_since
from harness.run import Run
from harness.service import Service

TURN_LIMIT = 60.0


@dataclass
class Load:
    module: str  # a bench/load/ module printing a load.loop result
    args: Sequence[str]
    on_service: bool = False  # count the service's CPU during its turns


@dataclass
class Throughput:
    ops: int = 0
    seconds: float = 0.0
    calls: int = 0
    service_cpu: float = 0.0
    database_cpu: float = 0.0  # the PostgreSQL backends serving the service's database
    vault_cpu: float = 0.0  # OpenBao's process
    turns: list[float] = field(default_factory=list)  # each turn's rate: how noisy the machine was

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def cpu_note(self, what: str, per: str = "call") -> str:
        """The service's CPU per call (or entry...), for a row's notes."""
        if not self.calls:
            return f"{what}: nothing completed"
        per_call = 1e6 / self.calls
        return (
            f"{what}: service CPU {self.service_cpu * per_call:,.0f} µs per {per} (all its processes), its "
            f"database's PostgreSQL backends {self.database_cpu * per_call:,.0f} µs, "
            f"OpenBao {self.vault_cpu * per_call:,.0f} µs"
        )


def alternate(
    run: Run, loads: Mapping[str, Load], *, rounds: int, service: Service | None = None
) -> dict[str, Throughput]:
    totals = {name: Throughput() for name in loads}
    for turn in range(1, rounds + 1):
        for name, load in loads.items():
            before = _usage(service) if service is not None and load.on_service else None
            result = run.load(f"{name}-{turn}", load.module, load.args, timeout=TURN_LIMIT)
            if result["errors"]:
                raise RuntimeError(f"{name}: {result['errors']} failed calls; first: {result['first_error']}")
            total = totals[name]
            total.ops += int(result["ops"])
            total.seconds += float(result["seconds"])
            total.calls += int(result["calls"])
            total.turns.append(int(result["ops"]) / float(result["seconds"]) if result["seconds"] else 0.0)
            if service is not None and before is not None:
                after = _usage(service)
                total.service_cpu += after.service - before.service
                total.database_cpu += seconds_since(after.backends, before.backends)
                total.vault_cpu += after.vault - before.vault
        run.progress(f"round {turn}/{rounds}: " + ", ".join(f"{name} {totals[name].rate:,.0f}/s" for name in loads))
    return totals


@dataclass(frozen=True)
class _Usage:
    """CPU seconds so far: the service's processes, its database's backends (by pid), OpenBao."""

    service: float
    backends: dict[int, float]
    vault: float


def _usage(service: Service) -> _Usage:
    return _Usage(service.usage().cpu_seconds, backend_seconds(service.database), process_seconds([service.vault_pid]))


def spread_note(rates: Mapping[str, Throughput], unit: str = "/s") -> str:
    """Each load's lowest and highest turn, for a row's notes: a wide spread means a busy machine."""
    spans = ", ".join(f"{name} {min(t.turns):,.0f}-{max(t.turns):,.0f}" for name, t in rates.items() if t.turns)
    return f"turns ranged {spans} {unit}"
