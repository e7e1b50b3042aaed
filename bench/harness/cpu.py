"""CPU time and process count of a child's session, read from /proc (Linux).

CPU seconds per operation is steadier than throughput on a shared machine: other load slows a process
down without making it spend more CPU per call. Sessions are counted whole, so a service that forks
worker or server processes is measured with all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class SessionUsage:
    processes: int
    cpu_seconds: float
    # The same CPU by what each process runs: `webhookd server`, `webhookd worker`, or the rest (the
    # supervisor, with its reaped children). Live processes only, as cpu_seconds.
    by_role: Mapping[str, float] = field(default_factory=dict)

    def role_seconds_since(self, before: SessionUsage) -> dict[str, float]:
        return {role: seconds - before.by_role.get(role, 0.0) for role, seconds in self.by_role.items()}


def session_usage(session_id: int) -> SessionUsage:
    """Processes alive in the session and their CPU time, with that of their reaped children."""
    processes = 0
    ticks = 0
    by_role: dict[str, int] = {}
    with contextlib.suppress(OSError):
        entries = os.listdir("/proc")
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it exited meanwhile
            # fields[0] is field 3 of proc(5): state; 6 is session, 14..17 utime stime cutime cstime.
            if int(fields[3]) == session_id:
                processes += 1
                used = sum(int(value) for value in fields[11:15])
                ticks += used
                role = _role(entry)
                by_role[role] = by_role.get(role, 0) + used
    return SessionUsage(processes, ticks / _TICKS, {role: role_ticks / _TICKS for role, role_ticks in by_role.items()})


def _role(pid: str) -> str:
    """`server` or `worker` for a process started as `python -m webhookd.cli server|worker`, else `other`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return "other"
    if "webhookd.cli" in args[:-1]:
        command = args[args.index("webhookd.cli") + 1]
        if command in ("server", "worker"):
            return command
    return "other"


def process_seconds(pids: list[int]) -> float:
    """CPU time of these processes (those that have exited count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


def database_backends(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (a libpq URL) now, the asking one left out: a
    service's pooled and listening connections, which it keeps for as long as it runs."""
    with psycopg.connect(database, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def backend_seconds(database: str) -> dict[int, float]:
    """The CPU so far of each PostgreSQL backend serving `database` (a libpq URL) now, by pid."""
    return {pid: process_seconds([pid]) for pid in database_backends(database)}


def seconds_since(now: Mapping[int, float], before: Mapping[int, float]) -> float:
    """What the processes read both times spent in between: one that started meanwhile would count its
    whole life, and one that ended has no reading now (a service's pool keeps its backends open)."""
    return sum(seconds - before[pid] for pid, seconds in now.items() if pid in before)
