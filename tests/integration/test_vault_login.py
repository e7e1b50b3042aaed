"""The store's token had by logging in, against a real (ephemeral) OpenBao: AppRole, a token file as
Vault Agent keeps it, Kubernetes auth (OpenBao asks a loopback stand-in for the Kubernetes API to
review the service account token). A token Vault no longer takes is replaced on the next call; one
nearing its maximum TTL is replaced before it runs out; a call its policy forbids logs in no more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from certificates import self_signed
from webhookd.domain.errors import Unavailable
from webhookd.secrets.embedded import EmbeddedOpenBao
from webhookd.secrets.login import AppRoleLogin, KubernetesLogin, TokenFile
from webhookd.secrets.token_renewal import keep_token_alive
from webhookd.secrets.vault import START_ATTEMPTS, VaultMisconfigured, VaultSecretStore

# The policy the README gives operators.
POLICY = (Path(__file__).parents[2] / "docs" / "vault-policy.hcl").read_text()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, hvac.Client]]:
    bao = EmbeddedOpenBao(tmp_path_factory.mktemp("vault"), mode="ephemeral")
    addr, root = bao.start()
    admin = hvac.Client(url=addr, token=root)
    admin.sys.create_or_update_policy("webhookd", POLICY)
    admin.sys.enable_auth_method("approle")
    admin.sys.enable_auth_method("kubernetes")
    yield addr, admin
    bao.stop()


def new_role(admin: hvac.Client, **token_settings: Any) -> tuple[str, str, str]:
    """(name, role id, secret id) of a new AppRole role whose tokens have the webhookd policy."""
    name = "webhookd-" + secrets.token_hex(4)
    admin.auth.approle.create_or_update_approle(name, token_policies=["webhookd"], **token_settings)
    role_id = admin.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    return name, role_id, secret_id


@contextlib.contextmanager
def logged_in_as_a_new_role(
    vault: tuple[str, hvac.Client], role_settings: Mapping[str, str] | None = None, **store_settings: Any
) -> Iterator[tuple[str, VaultSecretStore]]:
    """(the role's name, a store logging in as it with AppRole), the store closed after."""
    addr, admin = vault
    role, role_id, secret_id = new_role(admin, **(role_settings or {}))
    store = VaultSecretStore(addr, AppRoleLogin(role_id, secret_id), **store_settings)
    try:
        yield role, store
    finally:
        store.close()


def role_tokens(admin: hvac.Client, role: str) -> set[str]:
    """The accessors of the live tokens that logging in as `role` gave."""
    accessors = admin.auth.token.list_accessors()["data"]["keys"]
    found = set()
    for accessor in accessors:
        meta = admin.auth.token.lookup_accessor(accessor)["data"].get("meta") or {}
        if meta.get("role_name") == role:
            found.add(accessor)
    return found


def path() -> str:
    return f"webhookd/tenants/ten_{secrets.token_hex(6)}/webhooks/whk_1"


async def test_an_approle_login_gives_the_store_a_token_of_the_role(vault: tuple[str, hvac.Client]) -> None:
    _, admin = vault
    with logged_in_as_a_new_role(vault) as (role, store):
        await store.ping()
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        assert await store.read(secret) == {"signing_secret": "whsec_one"}
        assert len(role_tokens(admin, role)) == 1  # one login, shared by the store's threads


async def test_the_documented_policy_allows_every_call_the_store_makes(vault: tuple[str, hvac.Client]) -> None:
    """Under docs/vault-policy.hcl (and Vault's default policy) alone: write, read, when written,
    the listings the orphaned-secret sweep walks and its claim of the prefix, destroying earlier versions
    (the ended-overlap sweep), delete, and the token's own lookup and renewal."""
    tenant_id = f"ten_{secrets.token_hex(6)}"
    with logged_in_as_a_new_role(vault, {"token_ttl": "1h"}) as (_, store):
        secret = await store.path_for(tenant_id, "whk_1")
        await store.ping()
        await store.write(secret, {"signing_secret": "whsec_one"})
        await store.write(secret, {"signing_secret": "whsec_two"})
        assert await store.destroy_before(secret, 2) == 1
        assert await store.read(secret) == {"signing_secret": "whsec_two"}
        assert await store.written_at(secret) is not None
        assert tenant_id in await store.tenants()
        assert await store.webhook_ids(tenant_id) == ["whk_1"]
        assert await store.claim_prefix(f"dep_{tenant_id}")  # this test's, or the deployment's that came first
        assert (await store.renew_token()).renewable
        await store.delete(secret)
        assert await store.written_at(secret) is None


async def test_a_secret_id_read_from_a_file_logs_in(vault: tuple[str, hvac.Client], tmp_path: Path) -> None:
    addr, admin = vault
    role, role_id, secret_id = new_role(admin)
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    store = VaultSecretStore(addr, AppRoleLogin(role_id, secret_id_file=tmp_path / "secret-id"))
    try:
        await store.ping()
        assert len(role_tokens(admin, role)) == 1
    finally:
        store.close()


async def test_a_revoked_token_is_replaced_by_a_new_login_on_the_next_call(vault: tuple[str, hvac.Client]) -> None:
    _, admin = vault
    with logged_in_as_a_new_role(vault) as (role, store):
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        (first,) = role_tokens(admin, role)
        admin.auth.token.revoke_accessor(first)

        assert await store.read(secret) == {"signing_secret": "whsec_one"}
        (second,) = role_tokens(admin, role)
        assert second != first


async def test_a_write_whose_token_was_revoked_logs_in_again_and_lands(vault: tuple[str, hvac.Client]) -> None:
    """A write is sent from the event loop (secrets/loop_transport.py); refused for its token, it
    goes through the store's threads, which log in again."""
    _, admin = vault
    with logged_in_as_a_new_role(vault) as (role, store):
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        (first,) = role_tokens(admin, role)
        admin.auth.token.revoke_accessor(first)

        await store.write(secret, {"signing_secret": "whsec_two"})

        assert await store.read(secret) == {"signing_secret": "whsec_two"}
        (second,) = role_tokens(admin, role)
        assert second != first


async def test_logging_out_revokes_the_token_logged_in_for(vault: tuple[str, hvac.Client]) -> None:
    _, admin = vault
    with logged_in_as_a_new_role(vault) as (role, store):
        await store.ping()
        assert len(role_tokens(admin, role)) == 1

        await store.log_out()

        assert role_tokens(admin, role) == set()


async def test_logging_out_leaves_a_token_file_s_token_to_its_owner(
    vault: tuple[str, hvac.Client], tmp_path: Path
) -> None:
    addr, admin = vault
    token = admin.auth.token.create(policies=["webhookd"], ttl="1h")["auth"]["client_token"]
    (tmp_path / "token").write_text(token)
    store = VaultSecretStore(addr, TokenFile(tmp_path / "token"))
    try:
        await store.ping()
        await store.log_out()
    finally:
        store.close()
    assert admin.auth.token.lookup(token)["data"]["ttl"] > 0  # Vault Agent's, still valid


async def test_a_call_its_policy_forbids_is_refused_without_logging_in_again(vault: tuple[str, hvac.Client]) -> None:
    _, admin = vault
    with logged_in_as_a_new_role(vault, prefix="elsewhere") as (role, store):
        await store.token_lifetime()  # logs in (a ping would now fail: the prefix is one the policy does not name)
        before = role_tokens(admin, role)
        with pytest.raises(Unavailable) as error:
            await store.write("elsewhere/tenants/t1/webhooks/whk_1", {"signing_secret": "whsec_one"})
        assert error.value.message == "vault unreachable: token rejected (HTTP 403)"
        assert role_tokens(admin, role) == before


async def test_a_refused_login_is_unavailable_and_names_the_method_not_the_secret(
    vault: tuple[str, hvac.Client],
) -> None:
    addr, admin = vault
    _, role_id, _ = new_role(admin)
    wrong = str(uuid.uuid4())
    store = VaultSecretStore(addr, AppRoleLogin(role_id, wrong))
    try:
        with pytest.raises(Unavailable) as error:
            await store.ping()
        assert error.value.message == "vault unreachable: AppRole login refused: request rejected (HTTP 400)"
        assert wrong not in repr(error.value) and role_id not in repr(error.value)
    finally:
        store.close()


async def test_an_unreadable_token_file_is_unavailable(vault: tuple[str, hvac.Client], tmp_path: Path) -> None:
    store = VaultSecretStore(vault[0], TokenFile(tmp_path / "absent"))
    try:
        with pytest.raises(Unavailable) as error:
            await store.ping()
        assert error.value.message == "vault unreachable: cannot read WEBHOOKD_VAULT_TOKEN_FILE (FileNotFoundError)"
    finally:
        store.close()


async def test_the_token_file_is_read_again_when_vault_no_longer_takes_its_token(
    vault: tuple[str, hvac.Client], tmp_path: Path
) -> None:
    """As Vault Agent's sink: the agent logs in anew and writes the new token over the old one."""
    addr, admin = vault
    sink = tmp_path / "token"

    def agent_login() -> str:
        token = admin.auth.token.create(policies=["webhookd"], ttl="1h")["auth"]["client_token"]
        sink.write_text(token)
        return str(token)

    first = agent_login()
    store = VaultSecretStore(addr, TokenFile(sink))
    try:
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        admin.auth.token.revoke(first)
        agent_login()

        assert await store.read(secret) == {"signing_secret": "whsec_one"}
    finally:
        store.close()


async def test_a_token_nearing_its_maximum_ttl_is_replaced_before_it_runs_out(
    vault: tuple[str, hvac.Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "webhookd.vault")
    _, admin = vault
    # Renewed at 2 s for 4 more (to 6 s), at 4 s for only 2: logged in again at about 5 s.
    with logged_in_as_a_new_role(vault, {"token_ttl": "4s", "token_max_ttl": "6s"}) as (role, store):
        keeper = asyncio.create_task(keep_token_alive(store))
        try:
            await store.ping()
            first = role_tokens(admin, role)
            deadline = time.monotonic() + 20
            while not role_tokens(admin, role) - first:
                assert time.monotonic() < deadline, "no new login"
                assert not keeper.done(), keeper
                await asyncio.sleep(0.2)

            assert "vault token nears its end; logging in again" in caplog.messages
            assert "vault token renewal failed; trying again" not in caplog.messages
            await store.write(path(), {"signing_secret": "whsec_one"})
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)


@pytest.fixture
async def kubernetes_api() -> AsyncIterator[tuple[str, str]]:
    """A loopback stand-in for the Kubernetes API's TokenReview, vouching for one service account
    token: (its URL, the token)."""
    namespace, account, uid = "payments", "webhookd", str(uuid.uuid4())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": account,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    }
    service_account_token = jwt.encode(claims, key, algorithm="RS256")

    async def review(request: web.Request) -> web.Response:
        asked = (await request.json())["spec"]["token"]
        status: dict[str, Any] = {"authenticated": asked == service_account_token}
        if status["authenticated"]:
            status["user"] = {"username": claims["sub"], "uid": uid, "groups": ["system:serviceaccounts"]}
        return web.json_response({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", review)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", service_account_token
    await runner.cleanup()


async def test_kubernetes_auth_logs_in_with_the_service_account_token(
    vault: tuple[str, hvac.Client], kubernetes_api: tuple[str, str], tmp_path: Path
) -> None:
    addr, admin = vault
    host, service_account_token = kubernetes_api
    admin.auth.kubernetes.configure(
        kubernetes_host=host, kubernetes_ca_cert=self_signed("kubernetes-ca")[0].decode(), disable_local_ca_jwt=True
    )
    admin.auth.kubernetes.create_role(
        "webhookd",
        bound_service_account_names=["webhookd"],
        bound_service_account_namespaces=["payments"],
        policies=["webhookd"],
    )
    token_file = tmp_path / "token"
    token_file.write_text(service_account_token)
    store = VaultSecretStore(addr, KubernetesLogin("webhookd", token_file))
    try:
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        assert await store.read(secret) == {"signing_secret": "whsec_one"}
    finally:
        store.close()


def recording_sleep(waits: list[float]) -> Callable[[float], Awaitable[None]]:
    """A sleep for ping_at_start that notes each wait instead of waiting."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return sleep


@dataclass(frozen=True)
class StumblingAppRole(AppRoleLogin):
    """AppRole whose first `stumbles` logins Vault answers with HTTP 500, as OpenBao once did in CI."""

    stumbles: int = 0
    logins: list[int] = field(default_factory=lambda: [0])  # how many were asked: one mutable count

    def log_in(self, client: Any) -> str:
        self.logins[0] += 1
        if self.logins[0] <= self.stumbles:
            raise hvac.exceptions.InternalServerError("internal error")
        return super().log_in(client)


async def test_start_up_asks_again_when_the_login_stumbles(vault: tuple[str, hvac.Client]) -> None:
    addr, admin = vault
    _, role_id, secret_id = new_role(admin)
    login = StumblingAppRole(role_id, secret_id, stumbles=2)
    store = VaultSecretStore(addr, login)
    waits: list[float] = []
    sleep = recording_sleep(waits)
    try:
        await store.ping_at_start(sleep=sleep)
        await store.write(secret := path(), {"signing_secret": "whsec_one"})
        assert await store.read(secret) == {"signing_secret": "whsec_one"}
        assert login.logins == [3] and len(waits) == 2
    finally:
        store.close()


async def test_start_up_gives_up_on_a_login_that_keeps_stumbling(vault: tuple[str, hvac.Client]) -> None:
    addr, admin = vault
    _, role_id, secret_id = new_role(admin)
    login = StumblingAppRole(role_id, secret_id, stumbles=100)
    store = VaultSecretStore(addr, login)
    waits: list[float] = []
    sleep = recording_sleep(waits)
    try:
        with pytest.raises(Unavailable) as error:
            await store.ping_at_start(sleep=sleep)
        assert error.value.message == "vault unreachable: AppRole login refused: internal error (HTTP 500)"
        assert login.logins == [START_ATTEMPTS] and len(waits) == START_ATTEMPTS - 1
    finally:
        store.close()


async def test_start_up_does_not_ask_again_after_a_refused_login(vault: tuple[str, hvac.Client]) -> None:
    addr, admin = vault
    _, role_id, _ = new_role(admin)
    store = VaultSecretStore(addr, AppRoleLogin(role_id, str(uuid.uuid4())))
    waits: list[float] = []
    sleep = recording_sleep(waits)
    try:
        with pytest.raises(Unavailable) as error:
            await store.ping_at_start(sleep=sleep)
        assert error.value.message == "vault unreachable: AppRole login refused: request rejected (HTTP 400)"
        assert waits == []
    finally:
        store.close()


async def test_start_up_refuses_a_mount_with_no_secrets_engine(vault: tuple[str, hvac.Client]) -> None:
    """A misspelt WEBHOOKD_VAULT_MOUNT: the token is fine, yet every create would fail; it stops start-up."""
    addr, admin = vault
    store = VaultSecretStore(addr, admin.token, mount="no-such-mount")
    try:
        with pytest.raises(VaultMisconfigured) as error:
            await store.ping_at_start(sleep=recording_sleep([]))
        assert str(error.value) == "vault: no KV v2 secrets engine is mounted at 'no-such-mount' (WEBHOOKD_VAULT_MOUNT)"
    finally:
        store.close()


async def test_start_up_refuses_a_prefix_the_token_may_not_read(vault: tuple[str, hvac.Client]) -> None:
    """A WEBHOOKD_VAULT_PREFIX that the token's policy does not name (docs/vault-policy.hcl names `webhookd`)."""
    with logged_in_as_a_new_role(vault, prefix="elsewhere") as (_, store):
        with pytest.raises(VaultMisconfigured) as error:
            await store.ping_at_start(sleep=recording_sleep([]))
        assert str(error.value) == (
            "vault: the token may not read secrets under secret/data/elsewhere/ (WEBHOOKD_VAULT_MOUNT,"
            " WEBHOOKD_VAULT_PREFIX): give it docs/vault-policy.hcl with their values"
        )


async def test_start_up_passes_on_a_prefix_nothing_was_written_under_yet(vault: tuple[str, hvac.Client]) -> None:
    """KV v2 answers 404 for a secret not written yet as for a missing mount: only the latter stops start-up."""
    addr, admin = vault
    store = VaultSecretStore(addr, admin.token, prefix=f"fresh-{secrets.token_hex(4)}")
    try:
        await store.ping_at_start(sleep=recording_sleep([]))
    finally:
        store.close()
