"""OpenBao stopped (SIGSTOP) the moment a secret change's row commits: the change answers OK without
another Vault call, and what it replaced (a credential, a secret rotated out without overlap) leaves
Vault's record at the workers' sweep, which the commit marked the row due for.

Before, the change took the replaced material out of the record itself before answering, so a Vault
frozen at that moment held an OK answer for up to one Vault timeout. The webhook service runs here on the
fault suite's own PostgreSQL and OpenBao (real stores, real Vault client), so the test can stop OpenBao
exactly between the commit and the answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from backends import in_thread

from fakes import FakeNotifications
from harness import VAULT_TIMEOUT_SECONDS, FaultBackends, record
from support import new_tenant_id
from webhookd.config import Settings
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import Webhook, WebhookSpec
from webhookd.secrets.vault import VaultSecretStore
from webhookd.services.ended_overlaps import EndedOverlaps
from webhookd.services.webhooks import Webhooks
from webhookd.store import migrate
from webhookd.store.database import Database as Pool
from webhookd.store.secret_overlaps import SecretOverlapStore
from webhookd.store.webhooks import WebhookStore

pytestmark = pytest.mark.slow
SPEC = WebhookSpec(name="retired", url="https://receiver.example/hooks")


class VaultCalls:
    """The real Vault client, noting each call it is asked for while `noting`."""

    def __init__(self, vault: VaultSecretStore) -> None:
        self._vault = vault
        self.noting = False
        self.noted: list[str] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._vault, name)
        if not self.noting or not callable(call):
            return call
        self.noted.append(name)
        return call


class FrozenAfterCommit(WebhookStore):
    """The real store: once a change's row update has committed, OpenBao is frozen and Vault calls noted."""

    def __init__(self, pool: Pool, freeze: Callable[[], Awaitable[None]], calls: VaultCalls) -> None:
        super().__init__(pool)
        self.armed = False
        self._freeze = freeze
        self._calls = calls

    async def set_credential(self, *args: Any, **kwargs: Any) -> Webhook:
        return await self._then_freeze(await super().set_credential(*args, **kwargs))

    async def set_fingerprint(self, *args: Any, **kwargs: Any) -> Webhook:
        return await self._then_freeze(await super().set_fingerprint(*args, **kwargs))

    async def _then_freeze(self, committed: Webhook) -> Webhook:
        if self.armed:
            await self._freeze()
            self._calls.noting = True
        return committed


@pytest.fixture
async def pool(fault_backends: FaultBackends) -> AsyncIterator[Pool]:
    await migrate.upgrade(fault_backends.database_url)
    opened = Pool(fault_backends.database_url, size=2)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def vault(fault_backends: FaultBackends) -> AsyncIterator[VaultCalls]:
    client = VaultSecretStore(fault_backends.vault_addr, fault_backends.vault_token, timeout=VAULT_TIMEOUT_SECONDS)
    try:
        yield VaultCalls(client)
    finally:
        client.close()


@pytest.fixture
async def store(pool: Pool, vault: VaultCalls, fault_backends: FaultBackends) -> AsyncIterator[FrozenAfterCommit]:
    openbao = fault_backends.openbao
    store = FrozenAfterCommit(pool, lambda: in_thread(openbao.freeze), vault)
    try:
        yield store
    finally:
        await in_thread(openbao.thaw)


@pytest.fixture
async def webhooks(store: FrozenAfterCommit, vault: VaultCalls) -> AsyncIterator[Webhooks]:
    service = Webhooks(store, vault, FakeNotifications(), public_url="https://hooks.test", allow_insecure_urls=False)  # type: ignore[arg-type]
    try:
        yield service
    finally:
        await service.close()


async def swept(pool: Pool, vault: VaultCalls, store: WebhookStore) -> None:
    sweep = EndedOverlaps(store, SecretOverlapStore(pool), vault, batch=Settings().secret_sweep_batch)  # type: ignore[arg-type]
    try:
        await sweep.sweep()
    finally:
        await sweep.close()


async def test_a_credential_change_answers_without_vault_once_committed_and_the_sweep_takes_the_old_one_out(
    fault_backends: FaultBackends, pool: Pool, vault: VaultCalls, store: FrozenAfterCommit, webhooks: Webhooks
) -> None:
    scope = Scope(new_tenant_id(), person_id="person_1")
    webhook, _, _ = await webhooks.create(scope, SPEC, None)
    await webhooks.set_credential(scope, webhook.id, header_name="X-Api-Key", header_value="key-number-one")

    store.armed = True
    began = time.monotonic()
    answered = await webhooks.set_credential(scope, webhook.id, header_name="X-Api-Key", header_value="key-number-two")
    record("openbao SIGSTOP at a credential change's commit", answered_in_s=time.monotonic() - began)
    during = list(vault.noted)
    store.armed = vault.noting = False
    await in_thread(fault_backends.openbao.thaw)
    kept_until_the_sweep = "key-number-one" in (await vault.read(webhook.vault_path)).values()
    await swept(pool, vault, store)
    after = await vault.read(webhook.vault_path)

    assert answered.credential_header == "X-Api-Key"
    assert during == []  # answered while OpenBao was frozen, with no Vault call after the commit
    assert kept_until_the_sweep
    assert "key-number-one" not in after.values()
    assert after["credential_value"] == "key-number-two"


async def test_a_rotation_without_overlap_answers_without_vault_once_committed_and_the_sweep_takes_the_old_one_out(
    fault_backends: FaultBackends, pool: Pool, vault: VaultCalls, store: FrozenAfterCommit, webhooks: Webhooks
) -> None:
    scope = Scope(new_tenant_id(), person_id="person_1")
    webhook, old_secret, _ = await webhooks.create(scope, SPEC, None)

    store.armed = True
    began = time.monotonic()
    rotation = await webhooks.rotate_secret(scope, webhook.id, overlap=timedelta(0), signing_secret=None)
    record("openbao SIGSTOP at a rotation's commit (overlap 0)", answered_in_s=time.monotonic() - began)
    during = list(vault.noted)
    store.armed = vault.noting = False
    await in_thread(fault_backends.openbao.thaw)
    await swept(pool, vault, store)
    after = await vault.read(webhook.vault_path)

    assert rotation.signing_secret != old_secret
    assert during == []
    assert after == {"current": rotation.signing_secret}
