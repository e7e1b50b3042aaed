# The Vault policy webhookd's token needs, for the default WEBHOOKD_VAULT_MOUNT (secret) and
# WEBHOOKD_VAULT_PREFIX (webhookd); change both paths if you change either.
# tests/integration/test_vault_login.py runs every call the service makes under this policy alone.

# Signing secrets: written on create and rotation, read to sign and verify.
path "secret/data/webhookd/*" {
  capabilities = ["create", "read", "update"]
}

# Destroying a record's earlier versions, which KV v2 keeps readable, once they hold only secrets that
# sign nothing any more (the workers' ended-overlap sweep), and the version a change whose row did not
# commit wrote, once the record is put back. Without it they stay until they age out (the mount's
# max_versions), and each sweep or failed change logs a warning.
path "secret/destroy/webhookd/*" {
  capabilities = ["update"]
}

# Listing (the orphaned-secret sweep), when each was written, and deleting with every version.
path "secret/metadata/webhookd/*" {
  capabilities = ["read", "list", "delete"]
}
