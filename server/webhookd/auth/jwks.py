"""Token verification keys from a JWKS: a file, or the identity provider's URL.

An identity provider rotates its signing keys: it publishes a new key in its JWKS before it signs
with it, and drops the old one later. So the keys are loaded again
- when a token names a key id that is not held: at most once every RELOAD_MIN_SECONDS (counting
  only these loads, so a key published just after the periodic load is still found at once), so
  tokens naming made-up key ids cannot turn webhookd into a flood of requests to the provider; and
- from a URL, every `refresh_seconds`, so a key the provider dropped (perhaps compromised) stops
  being accepted.
A load that fails keeps the keys held: a provider that is down for a moment locks no caller out.
Until a first load succeeds there is no key to check a token with, and calls are UNAVAILABLE (the
caller is not at fault), not UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from webhookd.domain.errors import Unauthenticated, Unavailable

log = logging.getLogger("webhookd.auth")
ALGORITHMS = ("RS256", "ES256")
# The key type each accepted algorithm verifies with: a token may only be checked with a key of its own.
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
RELOAD_MIN_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 5.0
LOAD_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024
# What a caller is told to wait before retrying while no key could be loaded (RetryInfo).
RETRY_AFTER_SECONDS = 1.0
Load = Callable[[], Awaitable[bytes]]
Sleep = Callable[[float], Awaitable[None]]


class UnknownKey(Unauthenticated):
    """The token names a key id the JWKS held does not have (reloading it may find the key)."""


class JwksError(Exception):
    """The JWKS could not be loaded; the message says why, in words written here."""


class JwksKeys:
    """The keys of the JWKS `load` reads (from `origin`, for messages), loaded again as the module says."""

    def __init__(self, load: Load, origin: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self.origin = origin
        self._clock = clock
        self._keys: list[jwt.PyJWK] | None = None
        self._raw: bytes | None = None
        # Counts the loads that changed the keys: what was accepted with the old ones is checked again.
        self.generation = 0
        self._last_asked: float | None = None  # the last load for a key id not held
        self._reloading = asyncio.Lock()
        self._changed = asyncio.Event()  # set, and replaced, by each load that changes the keys

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def key_for(self, kid: str | None, algorithm: str) -> Any:
        """The key the token's header names, of the type its algorithm verifies with (the first such,
        when it names none: for a JWKS of one key)."""
        if self._keys is None:
            raise Unavailable("the token keys (JWKS) could not be loaded yet", retry_after_seconds=RETRY_AFTER_SECONDS)
        key = self._find(kid, algorithm)
        if key is None:
            raise UnknownKey(f"the configured JWKS holds no {algorithm} key with the token's key id")
        return key

    def use(self, raw: bytes) -> None:
        """Hold the keys of `raw`, a JWKS document; JwksError when it is not one with a usable key."""
        self._keys = _parsed(raw)
        if raw != self._raw:
            self._raw = raw
            self.generation += 1
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Returns at the next load that changes the keys."""
        await self._changed.wait()

    async def reload_for(self, kid: str | None) -> None:
        """Loads the JWKS again for a key id not held, unless such a load started less than
        RELOAD_MIN_SECONDS ago. Callers that arrive while a load runs wait for it, and load nothing
        more if it found their key."""
        async with self._reloading:
            if self._find(kid) is not None:
                return
            if self._last_asked is not None and self._clock() - self._last_asked < RELOAD_MIN_SECONDS:
                return
            self._last_asked = self._clock()
            await self._reload()

    def _find(self, kid: str | None, algorithm: str | None = None) -> Any:
        """The key held for `kid` (the first, for a token naming none), of `algorithm`'s key type when
        given, or None."""
        keys = self._keys or []
        key_type = _KEY_TYPES.get(algorithm or "")
        return next(
            (
                jwk.key
                for jwk in keys
                if (kid is None or jwk.key_id == kid) and (key_type is None or jwk.key_type == key_type)
            ),
            None,
        )

    async def refresh(self) -> None:
        """Loads the JWKS again now (the periodic refresh)."""
        async with self._reloading:
            await self._reload()

    async def keep_fresh(self, every_seconds: float, *, sleep: Sleep = asyncio.sleep) -> None:
        """Runs until cancelled: a load now if none succeeded yet, then one every `every_seconds`."""
        if not self.loaded:
            await self.refresh()
        while True:
            await sleep(every_seconds)
            await self.refresh()

    async def _reload(self) -> None:
        try:
            # The whole load is bounded, not each read: calls naming an unknown key wait for it, and
            # a provider trickling its answer must not hold them.
            try:
                async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
                    raw = await self._load()
            except TimeoutError:
                raise JwksError(f"no JWKS within {LOAD_TIMEOUT_SECONDS:g} s") from None
            self.use(raw)
        except JwksError as error:
            held = "keeping the keys held" if self.loaded else "no keys held yet"
            log.warning(f"JWKS not loaded; {held}", extra={"origin": self.origin, "reason": str(error)})


def _parsed(raw: bytes) -> list[jwt.PyJWK]:
    # Read here rather than by PyJWKSet.from_json: JSON of another shape (a list, null, a key whose
    # `alg` is a list, nesting past the parser's depth) raised AttributeError, TypeError or
    # RecursionError there, not an error a load could keep the held keys on.
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise JwksError(f"not a JWKS with a usable key ({type(error).__name__})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError("not a JWKS: no list of keys")
    # Only signing keys for the accepted algorithms: an HMAC ("oct") key in the set must not verify
    # anything, nor a key published for encryption (`use: enc`) or for another algorithm.
    keys = [
        jwk
        for jwk in map(_usable_key, entries)
        if jwk is not None
        and jwk.key_type in _KEY_TYPES.values()
        and jwk.public_key_use in (None, "sig")
        and jwk.algorithm_name in ALGORITHMS
    ]
    if not keys:
        raise JwksError("the JWKS holds no RS256 or ES256 signing key")
    return keys


def _usable_key(entry: Any) -> jwt.PyJWK | None:
    """The key `entry` describes, None for one that cannot be used (left out, as PyJWKSet does)."""
    if not isinstance(entry, dict):
        return None
    try:
        return jwt.PyJWK(entry)
    except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
        return None


def file_loader(path: Path) -> Load:
    async def load() -> bytes:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as error:
            raise JwksError(f"cannot read the JWKS file ({type(error).__name__})") from None

    return load


def url_loader(url: str) -> Load:
    """GETs the JWKS: no redirects (a JWKS URL names the document itself), at most MAX_JWKS_BYTES,
    each connect and read within FETCH_TIMEOUT_SECONDS (the whole load is bounded by JwksKeys)."""

    async def load() -> bytes:
        try:
            async with (
                httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
                client.stream("GET", url, headers={"accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksError(f"the JWKS URL answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
                return bytes(body)
        except httpx.HTTPError as error:
            raise JwksError(f"the JWKS URL could not be fetched ({type(error).__name__})") from None

    return load
