"""/readyz asks Vault what start-up asks: whether the token may read where the secrets go. A KV mount
disabled, or a policy changed, while the process runs fails every CreateWebhook; readiness says so
(503 naming the setting) and is ready again once Vault is put right, without a restart."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import hvac
import pytest
from starlette.applications import Starlette
from ulid import ULID

from webhookd.app import Backends, Core, Service
from webhookd.config import Settings
from webhookd.domain.errors import Unavailable
from webhookd.domain.scope import Scope
from webhookd.domain.webhooks import WebhookSpec
from webhookd.observability import Metrics
from webhookd.secrets.embedded import wait_for_kv2

PREFIX = "webhookd"
ReadyzGet = Callable[[], Awaitable[tuple[int, object]]]


def kv_mount(admin: hvac.Client) -> str:
    mount = f"readyz-{secrets.token_hex(4)}"
    admin.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    wait_for_kv2(admin, mount, within=30)
    return mount


def reading_policy(mount: str, prefix: str) -> str:
    return f'path "{mount}/data/{prefix}/*" {{ capabilities = ["read"] }}'


@pytest.fixture(autouse=True)
def migrated(service: Service) -> None:
    """The session's server has brought the schema up; the cores here share its database."""


@asynccontextmanager
async def server_core(settings: Settings, backends: Backends) -> AsyncIterator[tuple[Core, ReadyzGet]]:
    """A server process's core on these settings and backends, and a GET of its /readyz: (status, vault's answer)."""
    core = Core(settings, backends, metrics=Metrics())
    await core.start()
    app = Starlette(routes=core.http_routes())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:

            async def get() -> tuple[int, object]:
                response = await http.get("/readyz")
                return response.status_code, response.json()["checks"]["vault"]

            yield core, get
    finally:
        await core.close()


async def test_a_kv_mount_disabled_while_running_is_not_ready_until_it_is_back(
    settings: Settings, backends: Backends
) -> None:
    admin = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    mount = kv_mount(admin)
    try:
        async with server_core(dataclasses.replace(settings, vault_mount=mount), backends) as (core, get):
            assert await get() == (200, "ok")

            admin.sys.disable_secrets_engine(mount)
            with pytest.raises(Unavailable):  # what every create meets meanwhile
                await core.webhooks.create(Scope(f"ten_{ULID()}"), WebhookSpec("n", "https://a.example/"), None)
            assert await get() == (
                503,
                f"vault: no KV v2 secrets engine is mounted at {mount!r} (WEBHOOKD_VAULT_MOUNT)",
            )

            admin.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
            wait_for_kv2(admin, mount, within=30)
            assert await get() == (200, "ok")
    finally:
        admin.sys.disable_secrets_engine(mount)


async def test_a_policy_that_stops_naming_the_prefix_is_not_ready_until_it_names_it_again(
    settings: Settings, backends: Backends
) -> None:
    admin = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    mount = kv_mount(admin)
    policy = f"readyz-{secrets.token_hex(4)}"
    admin.sys.create_or_update_policy(policy, reading_policy(mount, PREFIX))
    token = admin.auth.token.create(policies=[policy], ttl="10m")["auth"]["client_token"]
    own = Backends(backends.database_url, backends.vault_addr, token)
    try:
        async with server_core(dataclasses.replace(settings, vault_mount=mount, vault_prefix=PREFIX), own) as (_, get):
            assert await get() == (200, "ok")

            admin.sys.create_or_update_policy(policy, reading_policy(mount, "elsewhere"))
            status, reason = await get()
            assert status == 503
            assert reason == (
                f"vault: the token may not read secrets under {mount}/data/{PREFIX}/ (WEBHOOKD_VAULT_MOUNT,"
                " WEBHOOKD_VAULT_PREFIX): give it docs/vault-policy.hcl with their values"
            )
            assert token not in str(reason)

            admin.sys.create_or_update_policy(policy, reading_policy(mount, PREFIX))
            assert await get() == (200, "ok")
    finally:
        admin.auth.token.revoke(token)
        admin.sys.delete_policy(policy)
        admin.sys.disable_secrets_engine(mount)


async def test_a_revoked_token_is_still_named_as_the_reason(settings: Settings, backends: Backends) -> None:
    admin = hvac.Client(url=backends.vault_addr, token=backends.vault_token)
    token = admin.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    own = Backends(backends.database_url, backends.vault_addr, token)
    async with server_core(settings, own) as (_, get):
        admin.auth.token.revoke(token)
        assert await get() == (503, "vault unreachable: token rejected (HTTP 403)")
