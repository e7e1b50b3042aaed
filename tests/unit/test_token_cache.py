"""Verified tokens are remembered until they expire, and never longer."""

from __future__ import annotations

import time

import jwt
import pytest

from webhookd.auth.tokens import TokenVerifier, mint
from webhookd.config import Settings
from webhookd.domain.errors import Unauthenticated

SECRET = "unit-secret-unit-secret-unit-secret!"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_an_accepted_token_is_not_verified_again_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    verifier = TokenVerifier(Settings(jwt_secret=SECRET), clock=clock)
    token = mint(SECRET, tenant_id="tnt_1", ttl_seconds=60)
    assert verifier.verify(token).tenant_id == "tnt_1"
    decodes = 0
    real_decode = jwt.decode

    def counting_decode(*args: object, **kwargs: object) -> object:
        nonlocal decodes
        decodes += 1
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting_decode)

    clock.now += 59
    assert verifier.verify(token).tenant_id == "tnt_1"
    assert decodes == 0


def test_a_token_past_its_expiry_is_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    verifier = TokenVerifier(Settings(jwt_secret=SECRET), clock=clock)
    token = mint(SECRET, tenant_id="tnt_1", ttl_seconds=60)
    verifier.verify(token)

    def refuse(*args: object, **kwargs: object) -> object:
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(jwt, "decode", refuse)
    clock.now += 61  # the cache's clock is past the token's exp: it must not answer any more

    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    forged = mint("another-secret-another-secret-another!", tenant_id="tnt_1")

    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(forged)
