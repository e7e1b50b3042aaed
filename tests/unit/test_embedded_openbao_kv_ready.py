"""The embedded OpenBao is handed out only once its KV v2 engine serves: a mount just made answers
HTTP 400 while it upgrades its storage, and `webhookd dev` took that for Vault refusing it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import hvac
import pytest

from webhookd.secrets.embedded import READY_PROBE, EmbeddedOpenBao, EmbeddedOpenBaoError, wait_for_kv2

UPGRADING = hvac.exceptions.InvalidRequest(
    "Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period",
    errors=["Upgrading from non-versioned to versioned data."],
)
NOT_ROUTED = hvac.exceptions.InvalidPath("no handler for route", errors=['no handler for route "secret/data/"'])
NEVER_WRITTEN = hvac.exceptions.InvalidPath(errors=[])


class KvClient:
    """hvac's client as far as the wait reads it: each read answers with the next of `answers`."""

    def __init__(self, *answers: Exception) -> None:
        self.answers = list(answers)
        self.reads: list[tuple[str, str]] = []
        self.secrets = SimpleNamespace(kv=SimpleNamespace(v2=self))

    def read_secret_version(self, *, path: str, mount_point: str, raise_on_deleted_version: bool) -> dict[str, object]:
        self.reads.append((path, mount_point))
        answer = self.answers.pop(0) if self.answers else UPGRADING
        raise answer


def test_the_wait_reads_again_while_the_engine_upgrades_or_is_not_routed_and_ends_at_its_not_found() -> None:
    client = KvClient(UPGRADING, NOT_ROUTED, UPGRADING, NEVER_WRITTEN, UPGRADING)
    wait_for_kv2(client, "kv", within=30)

    assert client.reads == [(READY_PROBE, "kv")] * 4


def test_an_engine_that_never_serves_fails_the_start_at_its_deadline_saying_why(tmp_path: Path) -> None:
    bao = EmbeddedOpenBao(tmp_path, start_timeout=0)
    with pytest.raises(
        EmbeddedOpenBaoError, match=r"KV v2 engine at secret/ not ready .*upgrading its storage.*; no server log"
    ):
        bao._wait_for_kv2(KvClient())


@pytest.mark.parametrize(
    "refusal",
    [
        hvac.exceptions.Forbidden("permission denied", errors=["permission denied"]),
        hvac.exceptions.InvalidRequest("missing client token", errors=["missing client token"]),
    ],
    ids=["forbidden", "another 400"],
)
def test_a_refusal_is_not_waited_out(refusal: Exception) -> None:
    client = KvClient(refusal)
    with pytest.raises(type(refusal)):
        wait_for_kv2(client, "secret", within=30)
    assert len(client.reads) == 1
