"""VAULT_NAMESPACE, read as Vault's own tools read it, and the way to the token (VAULT_TOKEN, a
token file, AppRole or Kubernetes auth) reach the configured Vault's clients (that they work is
shown against OpenBao in tests/integration/test_vault_store.py and test_vault_login.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhookd.app import start_backends
from webhookd.config import Settings, SettingsError, load
from webhookd.secrets.login import SERVICE_ACCOUNT_TOKEN, AppRoleLogin, GivenToken, KubernetesLogin, TokenFile


def test_the_namespace_is_read_without_its_slashes() -> None:
    assert load({"VAULT_NAMESPACE": "admin/team/"}).vault_namespace == "admin/team"
    assert load({}).vault_namespace == ""


def test_a_configured_vault_gets_the_namespace_and_so_do_its_secret_stores() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://app@db.internal/webhookd",
        vault_addr="http://127.0.0.1:9",
        vault_token="t",
        vault_namespace="admin/team",
    )
    backends = start_backends(settings)  # both configured: nothing embedded is started
    store = backends.secret_store(settings)
    try:
        assert (backends.embedded, backends.vault_namespace, store.namespace) == ([], "admin/team", "admin/team")
    finally:
        store.close()


VAULT = {"VAULT_ADDR": "https://vault.internal:8200"}


def test_approle_is_read_with_its_secret_id_given_or_in_a_file() -> None:
    given = load(VAULT | {"WEBHOOKD_VAULT_ROLE_ID": "role-1", "WEBHOOKD_VAULT_SECRET_ID": "s3cret"}).vault_login
    in_file = load(
        VAULT
        | {
            "WEBHOOKD_VAULT_ROLE_ID": "role-1",
            "WEBHOOKD_VAULT_SECRET_ID_FILE": "/run/secrets/secret-id",
            "WEBHOOKD_VAULT_APPROLE_MOUNT": "/apps/approle/",
        }
    ).vault_login

    assert given == AppRoleLogin("role-1", "s3cret", None, "approle")
    assert in_file == AppRoleLogin("role-1", None, Path("/run/secrets/secret-id"), "apps/approle")


def test_a_token_file_and_kubernetes_auth_are_read() -> None:
    token_file = load(VAULT | {"WEBHOOKD_VAULT_TOKEN_FILE": "/vault/agent/token"}).vault_login
    kubernetes = load(VAULT | {"WEBHOOKD_VAULT_KUBERNETES_ROLE": "webhookd"}).vault_login
    own_file = load(
        VAULT
        | {
            "WEBHOOKD_VAULT_KUBERNETES_ROLE": "webhookd",
            "WEBHOOKD_VAULT_KUBERNETES_TOKEN_FILE": "/var/run/vault-sa/token",
            "WEBHOOKD_VAULT_KUBERNETES_MOUNT": "k8s-prod",
        }
    ).vault_login

    assert token_file == TokenFile(Path("/vault/agent/token"))
    assert kubernetes == KubernetesLogin("webhookd", SERVICE_ACCOUNT_TOKEN, "kubernetes")
    assert own_file == KubernetesLogin("webhookd", Path("/var/run/vault-sa/token"), "k8s-prod")


def test_vault_token_alone_needs_no_login() -> None:
    assert load(VAULT | {"VAULT_TOKEN": "t"}).vault_login is None
    assert load({}).vault_login is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            VAULT | {"VAULT_TOKEN": "t", "WEBHOOKD_VAULT_ROLE_ID": "r"},
            "set one of VAULT_TOKEN, WEBHOOKD_VAULT_ROLE_ID: each is a way to the Vault token",
        ),
        (
            VAULT | {"WEBHOOKD_VAULT_TOKEN_FILE": "/t", "WEBHOOKD_VAULT_KUBERNETES_ROLE": "r"},
            "set one of WEBHOOKD_VAULT_TOKEN_FILE, WEBHOOKD_VAULT_KUBERNETES_ROLE: each is a way to the Vault token",
        ),
        (
            {"WEBHOOKD_VAULT_ROLE_ID": "r"},
            "WEBHOOKD_VAULT_ROLE_ID needs VAULT_ADDR: the embedded OpenBao has a token of its own",
        ),
        (
            VAULT | {"WEBHOOKD_VAULT_SECRET_ID": "s"},
            "WEBHOOKD_VAULT_SECRET_ID and WEBHOOKD_VAULT_SECRET_ID_FILE need WEBHOOKD_VAULT_ROLE_ID",
        ),
        (
            VAULT
            | {"WEBHOOKD_VAULT_ROLE_ID": "r", "WEBHOOKD_VAULT_SECRET_ID": "s", "WEBHOOKD_VAULT_SECRET_ID_FILE": "/s"},
            "set WEBHOOKD_VAULT_SECRET_ID or WEBHOOKD_VAULT_SECRET_ID_FILE, not both",
        ),
    ],
)
def test_ways_to_the_token_that_contradict_each_other_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(env)
    assert str(error.value) == message
    assert "s3cret" not in str(error.value)


def test_a_secret_id_stays_out_of_reprs() -> None:
    settings = load(VAULT | {"WEBHOOKD_VAULT_ROLE_ID": "role-1", "WEBHOOKD_VAULT_SECRET_ID": "s3cret"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in repr(GivenToken("s3cret"))


def test_a_configured_login_reaches_the_secret_stores() -> None:
    settings = load(
        VAULT | {"WEBHOOKD_DATABASE_URL": "postgresql://app@db.internal/webhookd", "WEBHOOKD_VAULT_ROLE_ID": "r"}
    )
    backends = start_backends(settings)
    store = backends.secret_store(settings)
    try:
        assert (backends.vault_login, store.renews_by_login) == (AppRoleLogin("r"), True)
    finally:
        store.close()
