"""The default process counts fit the database a fresh machine has: PostgreSQL's default
max_connections (100), the embedded one's included, whatever the core count."""

from __future__ import annotations

import pytest

from webhookd import config, runners

POSTGRESQL_DEFAULT_MAX_CONNECTIONS = 100


@pytest.mark.parametrize("cores", [1, 2, 8, 10, 16, 64, 256])
def test_the_defaults_connections_fit_postgresqls_default_whatever_the_cores(
    cores: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config.os, "cpu_count", lambda: cores)
    settings = config.load({})
    assert settings.server_processes >= 1 and settings.worker_processes >= 1
    assert runners.fleet_connections(settings) <= POSTGRESQL_DEFAULT_MAX_CONNECTIONS


def test_half_the_cores_each_while_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.os, "cpu_count", lambda: 6)
    settings = config.load({})
    assert (settings.server_processes, settings.worker_processes) == (3, 3)


def test_a_set_count_is_taken_as_set_and_checked_against_the_database_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config.os, "cpu_count", lambda: 64)
    settings = config.load({"WEBHOOKD_SERVER_PROCESSES": "10", "WEBHOOKD_WORKER_PROCESSES": "2"})
    assert (settings.server_processes, settings.worker_processes) == (10, 2)
    assert runners.fleet_connections(settings) == 10 * 15 + 2 * 7
