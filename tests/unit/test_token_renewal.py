"""Keeping VAULT_TOKEN alive: renewed when half its TTL is left, retried while Vault is away, and
left alone (with a warning when it will expire) when it never expires or cannot be renewed."""

from __future__ import annotations

import logging

import pytest

from webhookd.domain.errors import Unavailable
from webhookd.secrets.token_renewal import RETRY_SECONDS, keep_token_alive
from webhookd.secrets.vault import TokenLifetime


class Stopped(Exception):
    """Ends the keeper's loop from the fake sleep once the test has seen enough."""


class FakeToken:
    def __init__(self, lifetime: TokenLifetime, renewals: list[TokenLifetime | Unavailable]) -> None:
        self.lifetime = lifetime
        self.renewals = renewals
        self.renewed = 0

    async def token_lifetime(self) -> TokenLifetime:
        return self.lifetime

    async def renew_token(self) -> TokenLifetime:
        self.renewed += 1
        answer = self.renewals.pop(0)
        if isinstance(answer, Unavailable):
            raise answer
        return answer


class Sleeps:
    def __init__(self, most: int) -> None:
        self.seconds: list[float] = []
        self.most = most

    async def __call__(self, seconds: float) -> None:
        if len(self.seconds) == self.most:
            raise Stopped
        self.seconds.append(seconds)


async def test_a_renewable_token_is_renewed_at_half_its_ttl_each_time() -> None:
    token = FakeToken(TokenLifetime(3600, True), [TokenLifetime(3600, True), TokenLifetime(3600, True)])
    sleeps = Sleeps(most=2)
    with pytest.raises(Stopped):
        await keep_token_alive(token, sleep=sleeps)
    assert (sleeps.seconds, token.renewed) == ([1800, 1800], 2)


async def test_a_failed_renewal_is_tried_again_soon_and_then_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    renewals: list[TokenLifetime | Unavailable] = [Unavailable("vault unreachable: x"), TokenLifetime(3600, True)]
    token = FakeToken(TokenLifetime(3600, True), [*renewals, TokenLifetime(3600, True)])
    sleeps = Sleeps(most=3)
    with pytest.raises(Stopped):
        await keep_token_alive(token, sleep=sleeps)
    assert sleeps.seconds == [1800, RETRY_SECONDS, 1800]
    assert "vault token renewal failed; trying again" in caplog.messages


async def test_a_token_that_never_expires_is_left_alone() -> None:
    token = FakeToken(TokenLifetime(0, False), [])
    await keep_token_alive(token, sleep=Sleeps(most=0))
    assert token.renewed == 0


async def test_a_token_that_cannot_be_renewed_is_logged_with_its_time_left(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "webhookd.vault")
    token = FakeToken(TokenLifetime(600, False), [])
    await keep_token_alive(token, sleep=Sleeps(most=0))
    (record,) = caplog.records
    assert (record.getMessage(), record.expires_in_s, token.renewed) == ("VAULT_TOKEN cannot be renewed", 600, 0)


async def test_a_renewal_capped_by_the_maximum_ttl_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    token = FakeToken(TokenLifetime(3600, True), [TokenLifetime(900, True), TokenLifetime(0, False)])
    await keep_token_alive(token, sleep=Sleeps(most=2))
    assert [r.getMessage() for r in caplog.records] == ["VAULT_TOKEN nears its maximum lifetime"] * 2
    assert token.renewed == 2


async def test_a_token_that_may_have_run_out_is_tried_every_retry_interval_not_more_often() -> None:
    token = FakeToken(TokenLifetime(4, True), [Unavailable("vault unreachable: token rejected (HTTP 403)")] * 5)
    sleeps = Sleeps(most=5)
    with pytest.raises(Stopped):
        await keep_token_alive(token, sleep=sleeps)
    assert sleeps.seconds == [2, 1, 1, RETRY_SECONDS, RETRY_SECONDS]
