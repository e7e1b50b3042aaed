"""Keeping the Vault token alive: renewed when half its TTL is left, retried while Vault is away;
replaced by a new login once renewals no longer give its full TTL, when the store can log in; else
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
    """A given token: it can be renewed, never had again."""

    renews_by_login = False

    def __init__(self, lifetime: TokenLifetime, renewals: list[TokenLifetime | Unavailable]) -> None:
        self.lifetime = lifetime
        self.renewals = renewals
        self.renewed = 0
        self.logins = 0

    async def token_lifetime(self) -> TokenLifetime:
        return self.lifetime

    async def log_in_again(self) -> None:
        self.logins += 1

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


class FakeLogin(FakeToken):
    """A token had by logging in (AppRole, say): each login gives a fresh one, or fails while Vault is away."""

    renews_by_login = True

    def __init__(
        self,
        lifetime: TokenLifetime,
        renewals: list[TokenLifetime | Unavailable],
        *,
        fresh: TokenLifetime,
        failed_logins: int = 0,
    ) -> None:
        super().__init__(lifetime, renewals)
        self.fresh = fresh
        self.failed_logins = failed_logins

    async def log_in_again(self) -> None:
        self.logins += 1
        if self.logins <= self.failed_logins:
            raise Unavailable("vault unreachable: ConnectionRefusedError")
        self.lifetime = self.fresh


async def test_a_token_had_by_login_is_replaced_once_its_maximum_ttl_caps_a_renewal() -> None:
    renewals = [TokenLifetime(600, True), TokenLifetime(7200, True)]
    token = FakeLogin(TokenLifetime(3600, True), renewals, fresh=TokenLifetime(7200, True))
    sleeps = Sleeps(most=3)
    with pytest.raises(Stopped):
        await keep_token_alive(token, sleep=sleeps)
    # Renewed at 1800 s but given only 600: logged in again when 300 of those are left; then the
    # new token is renewed at half its own TTL.
    assert (sleeps.seconds, token.renewed, token.logins) == ([1800, 300, 3600], 2, 1)


async def test_a_token_had_by_login_that_cannot_be_renewed_is_replaced_at_half_its_ttl() -> None:
    token = FakeLogin(TokenLifetime(600, False), [], fresh=TokenLifetime(0, False))
    await keep_token_alive(token, sleep=Sleeps(most=1))  # the fresh token never expires: done
    assert (token.renewed, token.logins) == (0, 1)


async def test_a_failed_login_is_tried_again_every_retry_interval(caplog: pytest.LogCaptureFixture) -> None:
    token = FakeLogin(TokenLifetime(600, False), [], fresh=TokenLifetime(0, False), failed_logins=2)
    sleeps = Sleeps(most=3)
    await keep_token_alive(token, sleep=sleeps)
    assert (sleeps.seconds, token.logins) == ([300, RETRY_SECONDS, RETRY_SECONDS], 3)
    assert caplog.messages.count("vault login failed; trying again") == 2


async def test_a_given_token_is_never_logged_in_for() -> None:
    token = FakeToken(TokenLifetime(3600, True), [TokenLifetime(900, True), TokenLifetime(0, False)])
    await keep_token_alive(token, sleep=Sleeps(most=2))
    assert token.logins == 0
