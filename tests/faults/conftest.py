"""The fault suite's backends (a PostgreSQL and an OpenBao of its own, which tests freeze and kill) and
the figures each test records, put on its report for tests/conftest.py to print and write."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import FaultyOpenBao, FaultyPostgres

from harness import FIGURES, FaultBackends
from support import FAULT_FIGURES_PROPERTY


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


@pytest.fixture(autouse=True)
def figures_on_the_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """The figures this test recorded go with its report (tests/conftest.py prints them): under
    pytest-xdist only the reports reach the process that prints the run's summary."""
    before = {name: dict(figures) for name, figures in FIGURES.items()}
    yield
    recorded = {name: figures for name, figures in FIGURES.items() if before.get(name) != figures}
    if recorded:
        request.node.user_properties.append((FAULT_FIGURES_PROPERTY, recorded))
