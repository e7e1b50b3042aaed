"""The fault suite's backends (a PostgreSQL and an OpenBao of its own, which tests freeze and kill) and
the figures each test records, printed at the end of the run and written to test-artifacts/."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import FaultyOpenBao, FaultyPostgres

from harness import FIGURES, FaultBackends

FIGURES_FILE = Path(__file__).resolve().parents[2] / "test-artifacts" / "fault-figures.json"


@pytest.fixture(scope="session")
def fault_backends() -> Iterator[FaultBackends]:
    with tempfile.TemporaryDirectory(prefix="webhookd-faults-") as directory:
        postgres, openbao = FaultyPostgres(Path(directory)), FaultyOpenBao(Path(directory))
        try:
            postgres.start()
            addr, token = openbao.start()
            yield FaultBackends(postgres, openbao, postgres.create_database("faults"), addr, token, Path(directory))
        finally:
            openbao.stop()
            postgres.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for name, figures in FIGURES.items():
        shown = ", ".join(f"{key} {value}" for key, value in figures.items())
        terminalreporter.write_line(f"{name}: {shown}")
    FIGURES_FILE.parent.mkdir(exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2) + "\n")
