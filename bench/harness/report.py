"""The rows benchmarks produce and the one table they are printed in.

A benchmark script measures inside a Run and returns Rows; `main()` prints them as a table, or, under
`bench/all.py` (BENCH_ROWS names a file), appends them there as JSON lines for the combined table.
A benchmark that fails is one FAILED row, and the script exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from harness.procs import ChildFailed
from harness.run import Run

ROWS_ENV = "BENCH_ROWS"
COLUMNS = ("benchmark", "webhookd", "baseline", "ratio", "target", "meets")


@dataclass(frozen=True)
class Row:
    benchmark: str
    webhookd: str
    baseline: str
    ratio: float | None
    target: str  # as the issue words it; "" when the issue sets none
    meets: bool | None  # None: no target, or nothing measured
    notes: list[str] = field(default_factory=list)


def _meets(value: float, at_least: float | None, at_most: float | None) -> bool | None:
    if at_least is not None:
        return value >= at_least
    if at_most is not None:
        return value <= at_most
    return None


def _target(prefix: str, at_least: float | None, at_most: float | None, unit: str = "") -> str:
    if at_least is not None:
        return f"{prefix}≥ {at_least:g}{unit}"
    if at_most is not None:
        return f"{prefix}≤ {at_most:g}{unit}"
    return ""


def ratio_row(
    benchmark: str,
    value: float,
    baseline: float,
    unit: str,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    notes: Sequence[str] = (),
) -> Row:
    """A figure and its baseline in the same unit; the target applies to value / baseline."""
    ratio = value / baseline if baseline else float("nan")
    return Row(
        benchmark,
        f"{value:,.{_decimals(value)}f} {unit}",
        f"{baseline:,.{_decimals(baseline)}f} {unit}",
        ratio,
        _target("ratio ", at_least, at_most),
        _meets(ratio, at_least, at_most),
        list(notes),
    )


def value_row(
    benchmark: str,
    value: float,
    baseline: float,
    unit: str,
    *,
    at_most: float | None = None,
    notes: Sequence[str] = (),
) -> Row:
    """A figure with an absolute target (a latency), printed beside its baseline and their ratio."""
    return Row(
        benchmark,
        f"{value:,.{_decimals(value)}f} {unit}",
        f"{baseline:,.{_decimals(baseline)}f} {unit}",
        value / baseline if baseline else float("nan"),
        _target("", None, at_most, f" {unit}"),
        _meets(value, None, at_most),
        list(notes),
    )


def failed_row(benchmark: str, reason: str) -> Row:
    """A benchmark that could not measure: its reason's first line, and its last (a child's last words)."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()] or ["failed"]
    said = lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"
    return Row(benchmark, "FAILED", "", None, "", False, [said[:400]])


def _decimals(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


def table(rows: Sequence[Row]) -> str:
    """The rows as one aligned table, with their notes numbered underneath."""
    notes: list[str] = []
    cells: list[tuple[str, ...]] = []
    for row in rows:
        marks = []
        for note in row.notes:
            notes.append(note)
            marks.append(f"[{len(notes)}]")
        meets = "-" if row.meets is None else "yes" if row.meets else "NO"
        # Three decimals: 0.496 must not print as 0.50 beside a "NO" for a target of 0.5.
        ratio = "" if row.ratio is None else f"{row.ratio:.3f}" if abs(row.ratio) < 10 else f"{row.ratio:,.0f}"
        name = f"{row.benchmark} {' '.join(marks)}".strip()
        target = row.target or ("" if row.webhookd == "FAILED" else "(none)")
        cells.append((name, row.webhookd, row.baseline, ratio, target, meets))
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(COLUMNS)]
    right = {1, 2, 3}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out = [line(COLUMNS), line(["-" * w for w in widths]), *(line(c) for c in cells)]
    out += [f"[{n}] {note}" for n, note in enumerate(notes, 1)]
    return "\n".join(text.rstrip() for text in out)


def write_rows(rows: Sequence[Row]) -> None:
    """Appends the rows to BENCH_ROWS as JSON lines, or prints them as a table."""
    path = os.environ.get(ROWS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")
    else:
        print(table(rows), flush=True)


def read_rows(path: str) -> list[Row]:
    with open(path, encoding="utf-8") as rows:
        return [Row(**json.loads(line)) for line in rows if line.strip()]


def main(name: str, measure: Callable[[Run], list[Row]]) -> None:
    """Runs one benchmark script: measure in a Run, print (or hand over) its rows; exit 1 on failure."""
    try:
        with Run(name) as run:
            rows = measure(run)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - one FAILED row, then exit 1
        if not isinstance(error, ChildFailed):
            traceback.print_exc()
        print(f"{name} failed:\n{error}", file=sys.stderr)
        write_rows([failed_row(name, f"{type(error).__name__}: {error}")])
        sys.exit(1)
    write_rows(rows)
