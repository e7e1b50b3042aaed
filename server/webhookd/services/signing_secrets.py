"""The signing secrets of webhooks, read from the secret store once per secret and kept.

Kept under the secret's fingerprint as the webhook's row states it. A rotation writes the new record
to Vault before it commits the new fingerprint, and every delivery and inbound check reads the
fingerprint from the database first, so the first one that starts after RotateWebhookSecret returns
reads the new record, in every process, with nothing to invalidate and no time-to-live to wait out.
An old entry is never read again and leaves by least-recent use. A record whose current secret does
not have the fingerprint asked for (read while a rotation was half-way) is used once, not kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from webhookd.domain.fingerprints import fingerprint
from webhookd.ports import SecretStore

DEFAULT_CAPACITY = 10_000


class SigningSecrets:
    def __init__(self, store: SecretStore, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self._store = store
        self._capacity = capacity
        self._records: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        # One read per secret however many deliveries want it at once.
        self._reading: dict[tuple[str, str], asyncio.Future[dict[str, str]]] = {}

    async def record(self, vault_path: str, fingerprint: str) -> dict[str, str]:
        """The secret record at `vault_path` whose current secret has `fingerprint` (NotFound,
        Unavailable from the store as it raises them)."""
        key = (vault_path, fingerprint)
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

    async def _read(self, key: tuple[str, str]) -> dict[str, str]:
        record = await self._store.read(key[0])
        if fingerprint(record["current"]) != key[1]:
            return record
        self._records[key] = record
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)
        return record

    def __len__(self) -> int:
        return len(self._records)
