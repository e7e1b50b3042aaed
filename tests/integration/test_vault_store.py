"""VaultSecretStore against a real (ephemeral) OpenBao server."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac
import pytest

from ports import free_port
from webhookd.domain.errors import Aborted, Invalid, NotFound, Unavailable
from webhookd.secrets.embedded import EmbeddedOpenBao, find_bao_binary, wait_for_kv2
from webhookd.secrets.token_renewal import keep_token_alive
from webhookd.secrets.vault import VaultSecretStore


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    bao = EmbeddedOpenBao(tmp_path_factory.mktemp("vault"), mode="ephemeral")
    yield bao.start()
    bao.stop()


@pytest.fixture
def store(vault: tuple[str, str]) -> Iterator[VaultSecretStore]:
    addr, token = vault
    s = VaultSecretStore(addr, token)
    yield s
    s.close()


def tenant() -> str:
    return "ten_" + secrets.token_hex(6)


async def test_written_secret_reads_back(store: VaultSecretStore) -> None:
    path = await store.path_for(tenant(), "whk_01J0000000000000000000000")

    await store.write(path, {"signing_secret": "whsec_abc"})

    assert await store.read(path) == {"signing_secret": "whsec_abc"}


async def test_a_write_replacing_a_version_lands_only_over_that_version(store: VaultSecretStore) -> None:
    """KV v2's check-and-set: a read-modify-write that another write overtook is Aborted, not a lost update."""
    path = await store.path_for(tenant(), "whk_01J0000000000000000000000")
    await store.write(path, {"current": "a"})
    record, version = await store.read_versioned(path)

    await store.write(path, {"current": "b"})  # another change lands in between
    with pytest.raises(Aborted):
        await store.write(path, {**record, "credential_id": "crd_1"}, replacing=version)
    latest, latest_version = await store.read_versioned(path)
    await store.write(path, {**latest, "credential_id": "crd_1"}, replacing=latest_version)

    assert (record, latest_version) == ({"current": "a"}, version + 1)
    assert await store.read_versioned(path) == ({"current": "b", "credential_id": "crd_1"}, version + 2)


async def test_path_is_under_the_prefix_and_tenant(store: VaultSecretStore) -> None:
    assert await store.path_for("t1", "whk_1") == "webhookd/tenants/t1/webhooks/whk_1"


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "", "/abs", "x\n", "a b"])
async def test_path_for_refuses_ids_that_are_not_one_segment(store: VaultSecretStore, bad: str) -> None:
    with pytest.raises(Invalid) as tenant_error:
        await store.path_for(bad, "whk_1")
    with pytest.raises(Invalid) as webhook_error:
        await store.path_for("t1", bad)

    assert tenant_error.value.violations[0].field == "tenant_id"
    assert webhook_error.value.violations[0].field == "webhook_id"


async def test_missing_secret_is_not_found(store: VaultSecretStore) -> None:
    with pytest.raises(NotFound):
        await store.read(await store.path_for(tenant(), "whk_missing"))


async def test_deleted_secret_is_gone_with_all_versions(store: VaultSecretStore, vault: tuple[str, str]) -> None:
    path = await store.path_for(tenant(), "whk_1")
    await store.write(path, {"signing_secret": "one"})
    await store.write(path, {"signing_secret": "two"})
    await store.read(path)

    await store.delete(path)

    with pytest.raises(NotFound):
        await store.read(path)
    client = hvac.Client(url=vault[0], token=vault[1])
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")


async def test_deleting_an_absent_secret_is_fine(store: VaultSecretStore) -> None:
    await store.delete(await store.path_for(tenant(), "whk_never"))


async def test_a_write_is_read_back_at_once(store: VaultSecretStore) -> None:
    path = await store.path_for(tenant(), "whk_1")
    await store.write(path, {"signing_secret": "old"})
    assert await store.read(path) == {"signing_secret": "old"}

    await store.write(path, {"signing_secret": "new"})

    assert await store.read(path) == {"signing_secret": "new"}


async def test_reads_see_changes_made_behind_the_stores_back(vault: tuple[str, str]) -> None:
    addr, token = vault
    store = VaultSecretStore(addr, token)
    path = await store.path_for(tenant(), "whk_1")
    await store.write(path, {"signing_secret": "first"})
    await store.read(path)
    hvac.Client(url=addr, token=token).secrets.kv.v2.create_or_update_secret(
        path, secret={"signing_secret": "changed"}, mount_point="secret"
    )

    # Nothing is cached here (signing caches by fingerprint, services/signing_secrets.py).
    assert await store.read(path) == {"signing_secret": "changed"}
    store.close()


async def test_concurrent_calls_run_on_the_stores_own_threads_each_with_its_own_client(
    vault: tuple[str, str],
) -> None:
    store = VaultSecretStore(*vault, threads=3)
    t = tenant()
    paths = [await store.path_for(t, f"whk_{n}") for n in range(12)]
    await asyncio.gather(*(store.write(path, {"n": str(n)}) for n, path in enumerate(paths)))

    read = await asyncio.gather(*(store.read(path) for path in paths))

    assert read == [{"n": str(n)} for n in range(12)]
    assert 1 <= len(store._clients) <= 3  # one hvac client per thread that ran a call
    store.close()


async def test_a_write_is_sent_from_the_event_loop_while_every_thread_of_the_store_is_busy(
    vault: tuple[str, str],
) -> None:
    """A Create's write goes out from the loop, not through a thread of the store: the hand-off there
    and back cost the service more CPU than the write itself."""
    store = VaultSecretStore(*vault, threads=1)
    path = await store.path_for(tenant(), "whk_loop")
    release = threading.Event()
    busy = store._executor.submit(release.wait, 60)
    try:
        await store.write(path, {"current": "whsec_loop"})
    finally:
        release.set()
    assert busy.result() is True  # the thread was held all along, released only here

    assert await store.read(path) == {"current": "whsec_loop"}
    store.close()


async def test_writes_share_kept_alive_connections_and_a_closed_one_is_replaced(vault: tuple[str, str]) -> None:
    store = VaultSecretStore(*vault, threads=2)
    t = tenant()
    paths = [await store.path_for(t, f"whk_kept_{n}") for n in range(8)]
    await asyncio.gather(*(store.write(path, {"n": str(n)}) for n, path in enumerate(paths)))
    kept = list(store._on_loop._idle)
    assert 1 <= len(kept) <= 2  # never more at once than the limit
    for _, connection in kept:
        assert connection.transport is not None
        connection.transport.close()  # as a Vault restarting or an idle timeout would

    await store.write(paths[0], {"n": "again"})

    assert await store.read(paths[0]) == {"n": "again"}
    assert all(not connection.usable() for _, connection in kept)
    store.close()


async def test_ping_passes_on_a_healthy_vault(store: VaultSecretStore) -> None:
    await store.ping()


async def test_ping_rejects_a_bad_token(vault: tuple[str, str]) -> None:
    store = VaultSecretStore(vault[0], "not-a-token")

    with pytest.raises(Unavailable) as error:
        await store.ping()

    assert "not-a-token" not in error.value.message
    store.close()


async def test_stopped_or_sealed_vault_is_unavailable_without_leaking(tmp_path: Path) -> None:
    bao = EmbeddedOpenBao(tmp_path, mode="ephemeral")
    addr, token = bao.start()
    store = VaultSecretStore(addr, token)
    path = await store.path_for(tenant(), "whk_1")
    await store.write(path, {"signing_secret": "whsec_topsecret"})
    hvac.Client(url=addr, token=token).sys.seal()

    with pytest.raises(Unavailable, match="sealed"):
        await store.ping()

    bao.stop()
    calls: list[Callable[[], Awaitable[object]]] = [
        store.ping,
        lambda: store.read(path),
        lambda: store.write(path, {"signing_secret": "whsec_x"}),
        lambda: store.delete(path),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as error:
            await call()
        message = str(error.value)
        assert message.startswith("vault unreachable: ")
        assert token not in message and "whsec_" not in message
        assert error.value.public_message == "vault unavailable: retry later"
    store.close()


async def test_tenants_and_their_webhook_ids_are_listed_in_order(vault: tuple[str, str]) -> None:
    addr, token = vault
    store = VaultSecretStore(addr, token, prefix=f"listing-{secrets.token_hex(4)}")
    try:
        assert await store.tenants() == []
        for tenant_id, webhook_id in (("t2", "whk_b"), ("t1", "whk_z"), ("t2", "whk_a")):
            await store.write(await store.path_for(tenant_id, webhook_id), {"current": "whsec_x"})

        assert await store.tenants() == ["t1", "t2"]
        assert await store.webhook_ids("t2") == ["whk_a", "whk_b"]
        assert await store.webhook_ids("t3") == []
    finally:
        store.close()


async def test_written_at_is_the_last_write_and_none_once_deleted(store: VaultSecretStore) -> None:
    path = await store.path_for(tenant(), "whk_1")
    await store.write(path, {"current": "whsec_x"})

    written = await store.written_at(path)
    await store.delete(path)

    assert written is not None and abs(written - datetime.now(UTC)) < timedelta(minutes=1)
    assert await store.written_at(path) is None


@pytest.fixture
def tls_vault(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """An OpenBao dev server on TLS (`-dev-tls`: it makes a CA and a certificate for 127.0.0.1)."""
    port = free_port()
    token = secrets.token_urlsafe(16)
    args = [find_bao_binary(), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={tmp_path}", "-dev-no-store-token"]
    args.append(f"-dev-listen-address=127.0.0.1:{port}")
    with (tmp_path / "bao.log").open("wb") as log:
        bao = subprocess.Popen(args, env={**os.environ, "BAO_DEV_ROOT_TOKEN_ID": token}, stdout=log, stderr=log)
    try:
        ca, deadline = tmp_path / "vault-ca.pem", time.monotonic() + 30
        while not ca.exists() and bao.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the server writes its CA as it starts
        yield f"https://127.0.0.1:{port}", token, ca
    finally:
        bao.terminate()
        bao.wait(30)


async def test_a_vault_on_tls_is_reached_with_the_ca_hvac_is_given(
    tls_vault: tuple[str, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    addr, token, ca = tls_vault
    deadline = time.monotonic() + 30
    # What VAULT_CACERT sets (hvac reads the variable once, as it is imported); hvac hands it to the session.
    monkeypatch.setattr(hvac.v1, "VAULT_CACERT", str(ca))
    store = VaultSecretStore(addr, token)
    try:
        while True:  # bounded by the deadline: the server may still be unsealing its dev storage
            try:
                await store.ping()
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        path = await store.path_for(tenant(), "whk_tls")
        await store.write(path, {"current": "whsec_tls"})

        assert await store.read(path) == {"current": "whsec_tls"}
    finally:
        store.close()


async def test_a_namespace_holds_the_secrets_written_through_it(vault: tuple[str, str]) -> None:
    """VAULT_NAMESPACE (Vault Enterprise, HCP Vault, OpenBao): every request names it, so the secrets
    live in its own KV mount, not in the root namespace's."""
    addr, token = vault
    namespace = "team_" + secrets.token_hex(4)
    hvac.Client(url=addr, token=token).sys.create_namespace(path=namespace)
    in_namespace = hvac.Client(url=addr, token=token, namespace=namespace)
    in_namespace.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    wait_for_kv2(in_namespace, "secret", within=30)
    store = VaultSecretStore(addr, token, namespace=namespace)
    try:
        path = await store.path_for(tenant(), "whk_01J0000000000000000000000")
        await store.write(path, {"signing_secret": "whsec_ns"})
        assert await store.read(path) == {"signing_secret": "whsec_ns"}
        await store.ping()  # readiness asks through the namespace too
    finally:
        store.close()
    kept = in_namespace.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert kept["data"]["data"] == {"signing_secret": "whsec_ns"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        hvac.Client(url=addr, token=token).secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )


async def test_a_renewable_token_is_renewed_before_its_ttl_runs_out(vault: tuple[str, str]) -> None:
    addr, root = vault
    admin = hvac.Client(url=addr, token=root)
    created = admin.auth.token.create(ttl="4s", renewable=True, policies=["default"], explicit_max_ttl="1h")
    token = created["auth"]["client_token"]

    def expires_at() -> datetime:
        return datetime.fromisoformat(admin.auth.token.lookup(token)["data"]["expire_time"])

    first = expires_at()
    store = VaultSecretStore(addr, token)
    keeper = asyncio.create_task(keep_token_alive(store))
    try:
        lifetime = await store.token_lifetime()
        assert lifetime.renewable and 0 < lifetime.seconds_left <= 4
        # Renewed at half its TTL (about 2 s in): the token's expiry moves on.
        deadline = time.monotonic() + 15
        while expires_at() <= first:
            assert time.monotonic() < deadline, "the token was not renewed"
            assert not keeper.done(), keeper
            await asyncio.sleep(0.1)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        store.close()
