"""VAULT_NAMESPACE, read as Vault's own tools read it, reaches the configured Vault's clients (that
they send it is shown against OpenBao in tests/integration/test_vault_store.py)."""

from __future__ import annotations

from webhookd.app import start_backends
from webhookd.config import Settings, load


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
