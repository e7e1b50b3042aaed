"""Keeps the process's Vault token alive for as long as the process runs.

Vault tokens mostly have a TTL (an AppRole login's, a periodic token's period), and once it runs
out every secret read and write is refused: Creates fail and deliveries wait for a secret. So each
process that holds a Vault client renews the token when half its TTL is left, well before it runs out.
Renewing is idempotent, so processes do not coordinate. When renewals stop giving the full TTL (the
token nears its maximum TTL), a token the store can have again (secrets/login.py) is replaced by a
new login when half of what is left has passed; a given VAULT_TOKEN is logged with the time it has
left, for operators to replace it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from webhookd.domain.errors import Unavailable
from webhookd.secrets.vault import TokenLifetime

log = logging.getLogger("webhookd.vault")
# Renew (or log in again) when this share of the TTL is left, and try again this often while Vault is away.
RENEW_AT_SHARE = 0.5
RETRY_SECONDS = 10.0
MIN_WAIT_SECONDS = 1.0
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


class RenewableToken(Protocol):
    """What the renewal needs of a Vault client (secrets/vault.py's VaultSecretStore)."""

    @property
    def renews_by_login(self) -> bool: ...

    async def token_lifetime(self) -> TokenLifetime: ...

    async def renew_token(self) -> TokenLifetime: ...

    async def log_in_again(self) -> None: ...


async def keep_token_alive(store: RenewableToken, *, sleep: Sleep = asyncio.sleep) -> None:
    """Runs until cancelled, or returns when the token never expires, or it can be neither renewed
    nor had again."""
    while True:
        lifetime = await _until_vault_answers(store.token_lifetime, "vault token lookup", sleep)
        if lifetime.seconds_left == 0:
            return
        if lifetime.renewable:
            seconds_left = await _renew_while_it_lasts(store, lifetime, sleep)
        else:
            seconds_left = lifetime.seconds_left
            if not store.renews_by_login:
                log.warning("VAULT_TOKEN cannot be renewed", extra={"expires_in_s": seconds_left})
        if not store.renews_by_login:
            return
        log.info("vault token nears its end; logging in again", extra={"expires_in_s": seconds_left})
        await sleep(max(MIN_WAIT_SECONDS, seconds_left * RENEW_AT_SHARE))
        await _until_vault_answers(store.log_in_again, "vault login", sleep)


async def _until_vault_answers(call: Callable[[], Awaitable[T]], what: str, sleep: Sleep) -> T:
    """`call()`, tried again every RETRY_SECONDS while Vault is away."""
    while True:
        try:
            return await call()
        except Unavailable as error:
            log.warning(f"{what} failed; trying again", extra={"reason": error.message})
            await sleep(RETRY_SECONDS)


async def _renew_while_it_lasts(store: RenewableToken, lifetime: TokenLifetime, sleep: Sleep) -> float:
    """Renews at half the TTL each time. Returns the seconds left once a renewal gives less than the
    one before (the maximum TTL caps it) and the token can be had again, or once it is spent."""
    granted: float = lifetime.seconds_left  # what Vault last gave it
    seconds_left = granted
    wait = granted * RENEW_AT_SHARE
    while True:
        wait = max(MIN_WAIT_SECONDS, wait)
        await sleep(wait)
        seconds_left -= wait
        try:
            renewed = await store.renew_token()
        except Unavailable as error:
            expires_in = max(0, round(seconds_left))
            log.warning(
                "vault token renewal failed; trying again", extra={"reason": error.message, "expires_in_s": expires_in}
            )
            # Sooner as its end nears; once it may have none left, every RETRY_SECONDS.
            wait = min(RETRY_SECONDS, seconds_left * RENEW_AT_SHARE) if seconds_left > 0 else RETRY_SECONDS
            continue
        if renewed.seconds_left < granted:
            if store.renews_by_login:
                return renewed.seconds_left
            log.warning("VAULT_TOKEN nears its maximum lifetime", extra={"expires_in_s": renewed.seconds_left})
        if renewed.seconds_left == 0 or not renewed.renewable:
            return renewed.seconds_left
        granted = seconds_left = renewed.seconds_left
        wait = granted * RENEW_AT_SHARE
