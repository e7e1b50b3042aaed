# The Vault policy webhookd's token needs, for the default WEBHOOKD_VAULT_MOUNT (secret) and
# WEBHOOKD_VAULT_PREFIX (webhookd); change both paths if you change either.
# tests/integration/test_vault_login.py runs every call the service makes under this policy alone.

# Signing secrets: written on create and rotation, read to sign and verify.
path "secret/data/webhookd/*" {
  capabilities = ["create", "read", "update"]
}

# Listing (the orphaned-secret sweep), when each was written, and deleting with every version.
path "secret/metadata/webhookd/*" {
  capabilities = ["read", "list", "delete"]
}
