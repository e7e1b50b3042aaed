"""Webhook signing secrets in Vault KV v2 (hvac), behind a small read cache.

hvac is synchronous, so every call runs in a thread (`asyncio.to_thread`); the cache itself is only
touched on the event loop. Errors never carry the token or a secret value.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from typing import Any

import hvac
import hvac.exceptions

from webhookd.domain.errors import Invalid, NotFound, Unavailable

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_CACHE_SIZE = 10_000
# Ids become one path segment each: starting with a letter or digit rules out "." and "..", and
# no "/" means an id can never reach outside its tenant's folder.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ID_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def secret_path(prefix: str, tenant_id: str, webhook_id: str) -> str:
    """`<prefix>/tenants/<tenant_id>/webhooks/<webhook_id>`; Invalid unless each id is one safe segment."""
    for field, value in (("tenant_id", tenant_id), ("webhook_id", webhook_id)):
        if not _ID.fullmatch(value):
            raise Invalid.field(field, _ID_RULE)
    return f"{prefix.strip('/')}/tenants/{tenant_id}/webhooks/{webhook_id}"


class _TTLCache:
    """Least-recently-used map whose entries also expire `ttl` seconds after they were stored."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def get(self, key: str) -> dict[str, str] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if time.monotonic() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return dict(value)

    def put(self, key: str, value: dict[str, str]) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (time.monotonic() + self.ttl, dict(value))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class VaultSecretStore:
    """Secrets at server-chosen paths under `prefix` in the KV v2 engine mounted at `mount`."""

    def __init__(
        self,
        addr: str,
        token: str,
        *,
        mount: str = "secret",
        prefix: str = "webhookd",
        cache_seconds: float = 30.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.addr = addr
        self.mount = mount.strip("/")
        self.prefix = prefix.strip("/")
        self._client: Any = hvac.Client(url=addr, token=token, timeout=timeout)
        self._cache = _TTLCache(cache_seconds, cache_size)
        # Bumped by every write and delete: a read that overlapped one must not refill the cache
        # with what it saw before the change.
        self._changes = 0

    async def path_for(self, tenant_id: str, webhook_id: str) -> str:
        return secret_path(self.prefix, tenant_id, webhook_id)

    async def write(self, path: str, data: dict[str, str]) -> None:
        _check_path(path)
        self._forget(path)
        try:
            await asyncio.to_thread(
                self._client.secrets.kv.v2.create_or_update_secret,
                path=path,
                secret=dict(data),
                mount_point=self.mount,
            )
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise _unavailable(exc) from exc
        finally:
            self._forget(path)

    async def read(self, path: str) -> dict[str, str]:
        _check_path(path)
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        changes = self._changes
        try:
            response = await asyncio.to_thread(
                self._client.secrets.kv.v2.read_secret_version,
                path=path,
                mount_point=self.mount,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            raise NotFound(f"no secret at {path}") from None
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise _unavailable(exc) from exc
        data = {str(k): str(v) for k, v in (response["data"]["data"] or {}).items()}
        if changes == self._changes:
            self._cache.put(path, data)
        return dict(data)

    async def delete(self, path: str) -> None:
        """Delete the secret with its metadata and every version; an absent secret is fine."""
        _check_path(path)
        self._forget(path)
        try:
            await asyncio.to_thread(
                self._client.secrets.kv.v2.delete_metadata_and_all_versions,
                path=path,
                mount_point=self.mount,
            )
        except hvac.exceptions.InvalidPath:
            pass
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise _unavailable(exc) from exc
        finally:
            self._forget(path)

    async def ping(self) -> None:
        """Raise Unavailable unless Vault answers, is unsealed and accepts the token."""
        try:
            await asyncio.to_thread(self._client.auth.token.lookup_self)
        except (hvac.exceptions.VaultError, OSError) as exc:
            raise _unavailable(exc) from exc

    def close(self) -> None:
        self._client.adapter.close()

    def _forget(self, path: str) -> None:
        self._changes += 1
        self._cache.discard(path)


def _check_path(path: str) -> None:
    segments = path.split("/")
    if not path or any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"not a usable secret path: {path!r}")


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (hvac.exceptions.VaultDown, "sealed or down (HTTP 503)"),
    (hvac.exceptions.VaultNotInitialized, "not initialised (HTTP 501)"),
    (hvac.exceptions.Forbidden, "token rejected (HTTP 403)"),
    (hvac.exceptions.Unauthorized, "token rejected (HTTP 401)"),
    (hvac.exceptions.InternalServerError, "internal error (HTTP 500)"),
    (hvac.exceptions.BadGateway, "bad gateway (HTTP 502)"),
    (hvac.exceptions.RateLimitExceeded, "rate limited (HTTP 429)"),
    (hvac.exceptions.InvalidRequest, "request rejected (HTTP 400)"),
    (hvac.exceptions.InvalidPath, "no such mount or path (HTTP 404)"),
)


def _unavailable(exc: Exception) -> Unavailable:
    """Unavailable with a short reason built from the error's type only, never from its text."""
    # Otherwise requests' ConnectionError, ConnectTimeout, ReadTimeout… (all OSError) or another VaultError.
    reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), type(exc).__name__)
    return Unavailable(f"vault unreachable: {reason}")
