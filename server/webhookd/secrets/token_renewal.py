"""Keeps a renewable VAULT_TOKEN alive for as long as the process runs.

Vault tokens mostly have a TTL (an AppRole login's, a periodic token's period), and once it runs
out every secret read and write is refused: Creates fail and deliveries wait for a secret. So each
process that holds a Vault client renews the token when half its TTL is left, well before it runs out.
Renewing is idempotent, so processes do not coordinate. A token that cannot be renewed, or that
reaches its maximum TTL, is logged with the time it has left, for operators to replace it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from webhookd.domain.errors import Unavailable
from webhookd.secrets.vault import TokenLifetime

log = logging.getLogger("webhookd.vault")
# Renew when this share of the TTL is left, and try again this often while Vault is away.
RENEW_AT_SHARE = 0.5
RETRY_SECONDS = 10.0
MIN_WAIT_SECONDS = 1.0


class RenewableToken(Protocol):
    """What the renewal needs of a Vault client (secrets/vault.py's VaultSecretStore)."""

    async def token_lifetime(self) -> TokenLifetime: ...

    async def renew_token(self) -> TokenLifetime: ...


async def keep_token_alive(store: RenewableToken, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Runs until cancelled, or returns when the token never expires or cannot be renewed."""
    lifetime = None
    while lifetime is None:
        try:
            lifetime = await store.token_lifetime()
        except Unavailable as error:
            log.warning("vault token lookup failed; trying again", extra={"reason": error.message})
            await sleep(RETRY_SECONDS)
    if lifetime.seconds_left == 0:
        return
    if not lifetime.renewable:
        log.warning("VAULT_TOKEN cannot be renewed", extra={"expires_in_s": lifetime.seconds_left})
        return
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
            # Less than it had: the token's maximum TTL caps it now.
            log.warning("VAULT_TOKEN nears its maximum lifetime", extra={"expires_in_s": renewed.seconds_left})
        if renewed.seconds_left == 0 or not renewed.renewable:
            return
        granted = seconds_left = renewed.seconds_left
        wait = granted * RENEW_AT_SHARE
