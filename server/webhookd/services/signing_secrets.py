"""The signing secrets of webhooks, read from the secret store once per secret and kept.

Kept under the secret's fingerprint, the delivery credential's id and the row's version as the
webhook's row states them. A rotation (or SetWebhookCredential) writes the new record to Vault before
it commits the new fingerprint (or id) and version, and every delivery and inbound check reads them
from the database first, so the first one that starts after the call returns reads the new record, in
every process, with nothing to invalidate and no time-to-live to wait out. The version is what tells
a rotation back to an earlier secret (the same fingerprint, now with the secret it replaced kept for
the overlap) from the record kept when that secret was first current. An old entry is never read
again and leaves by least-recent use. A record that does not match what was asked for (read while a
change was half-way) is used once, not kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from webhookd.domain.credentials import credential_id_of
from webhookd.domain.fingerprints import fingerprint
from webhookd.ports import SecretStore

DEFAULT_CAPACITY = 10_000
# (vault path, fingerprint, credential id, webhook version)
_Key = tuple[str, str, str, int]


class SigningSecrets:
    def __init__(self, store: SecretStore, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self._store = store
        self._capacity = capacity
        self._records: OrderedDict[_Key, dict[str, str]] = OrderedDict()
        # One read per secret however many deliveries want it at once.
        self._reading: dict[_Key, asyncio.Future[dict[str, str]]] = {}

    async def record(
        self, vault_path: str, fingerprint: str, credential_id: str, webhook_version: int
    ) -> dict[str, str]:
        """The secret record at `vault_path` whose current secret has `fingerprint` and whose delivery
        credential has `credential_id` ('' for none), as of the webhook row's `webhook_version`
        (NotFound, Unavailable from the store as it raises them)."""
        key = (vault_path, fingerprint, credential_id, webhook_version)
        found = self._records.get(key)
        if found is not None:
            self._records.move_to_end(key)
            return found
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _read(self, key: _Key) -> dict[str, str]:
        record = await self._store.read(key[0])
        if (fingerprint(record["current"]), credential_id_of(record)) != key[1:3]:
            return record
        self._records[key] = record
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)
        return record

    def __len__(self) -> int:
        return len(self._records)
