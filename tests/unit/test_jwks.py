"""JWKS keys (auth/jwks.py) on a scripted loader: loaded again for a key id not held, at most once
every RELOAD_MIN_SECONDS and once for callers arriving together; a failed load keeps what is held;
the periodic refresh drops a key the provider dropped; only RS256 and ES256 signing keys are held,
and a token gets a key of its algorithm's type."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from webhookd.auth import jwks as jwks_module
from webhookd.auth.jwks import RELOAD_MIN_SECONDS, JwksError, JwksKeys, UnknownKey
from webhookd.domain.errors import Unavailable


def jwk(kid: str) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return json.loads(ECAlgorithm.to_jwk(key)) | {"kid": kid, "alg": "ES256", "use": "sig"}


def jwks(*keys: dict[str, str]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


class Provider:
    """Answers each load with the next of `answers` (the last one again once they run out)."""

    def __init__(self, *answers: bytes | JwksError) -> None:
        self.answers = list(answers)
        self.loads = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> bytes:
        self.loads += 1
        self.started.set()
        await self.release.wait()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, JwksError):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


A, B = jwk("a"), jwk("b")


async def test_nothing_is_held_before_a_load_and_calls_are_unavailable() -> None:
    keys = JwksKeys(Provider(jwks(A)), "https://idp.example/jwks")
    with pytest.raises(Unavailable):
        keys.key_for("a", "ES256")
    await keys.reload_for("a")
    assert keys.key_for("a", "ES256") is not None


async def test_a_key_id_not_held_is_unknown_until_a_reload_finds_it() -> None:
    clock = Clock()
    provider = Provider(jwks(A), jwks(A, B))
    keys = JwksKeys(provider, "https://idp.example/jwks", clock=clock)
    await keys.reload_for("b")
    with pytest.raises(UnknownKey):
        keys.key_for("b", "ES256")

    clock.now += RELOAD_MIN_SECONDS
    await keys.reload_for("b")

    assert keys.key_for("b", "ES256") is not None
    assert provider.loads == 2


async def test_a_key_published_just_after_the_periodic_load_is_found_at_once() -> None:
    provider = Provider(jwks(A), jwks(A, B))
    keys = JwksKeys(provider, "https://idp.example/jwks", clock=Clock())
    await keys.refresh()
    await keys.reload_for("b")  # the clock has not moved: only loads for unknown key ids are spaced
    assert keys.key_for("b", "ES256") is not None


async def test_reloads_come_at_most_once_every_reload_interval() -> None:
    clock = Clock()
    provider = Provider(jwks(A))
    keys = JwksKeys(provider, "https://idp.example/jwks", clock=clock)
    await keys.reload_for("b")
    for _ in range(5):
        clock.now += RELOAD_MIN_SECONDS / 10
        await keys.reload_for("b")
    assert provider.loads == 1
    clock.now += RELOAD_MIN_SECONDS
    await keys.reload_for("b")
    assert provider.loads == 2


async def test_callers_arriving_while_a_load_runs_wait_for_it_and_load_nothing_more() -> None:
    provider = Provider(jwks(A, B))
    provider.release.clear()
    keys = JwksKeys(provider, "https://idp.example/jwks")
    callers = [asyncio.create_task(keys.reload_for("b")) for _ in range(8)]
    await asyncio.wait_for(provider.started.wait(), 5)
    provider.release.set()
    await asyncio.gather(*callers)
    assert (provider.loads, keys.key_for("b", "ES256") is not None) == (1, True)


async def test_a_failed_load_keeps_the_keys_held(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    keys = JwksKeys(Provider(jwks(A), JwksError("the JWKS URL answered HTTP 503")), "idp", clock=clock)
    await keys.reload_for("b")
    clock.now += RELOAD_MIN_SECONDS
    with caplog.at_level(logging.WARNING, "webhookd.auth"):
        await keys.reload_for("b")
    assert keys.key_for("a", "ES256") is not None
    (record,) = caplog.records
    assert (record.getMessage(), record.reason) == (
        "JWKS not loaded; keeping the keys held",
        "the JWKS URL answered HTTP 503",
    )


async def test_a_load_that_does_not_end_is_given_up_and_the_keys_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that trickles its answer: the load is bounded as a whole, so the calls waiting for
    it (a key id not held) get their answer instead of hanging."""
    monkeypatch.setattr(jwks_module, "LOAD_TIMEOUT_SECONDS", 0.05)
    clock = Clock()
    provider = Provider(jwks(A))
    keys = JwksKeys(provider, "https://idp.example/jwks", clock=clock)
    await keys.reload_for("a")
    provider.release.clear()  # from now on the provider never finishes answering
    clock.now += RELOAD_MIN_SECONDS

    await asyncio.wait_for(keys.reload_for("b"), 5)

    assert keys.key_for("a", "ES256") is not None
    assert caplog.records[-1].reason == "no JWKS within 0.05 s"


async def test_the_periodic_refresh_drops_a_key_the_provider_dropped() -> None:
    provider = Provider(jwks(A, B), jwks(B))
    keys = JwksKeys(provider, "https://idp.example/jwks")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(waits) == 1:
            raise asyncio.CancelledError
        waits.append(seconds)

    with pytest.raises(asyncio.CancelledError):
        await keys.keep_fresh(300, sleep=sleep)

    assert (waits, provider.loads) == ([300], 2)
    with pytest.raises(UnknownKey):
        keys.key_for("a", "ES256")
    assert keys.key_for("b", "ES256") is not None


def test_only_rs256_and_es256_signing_keys_are_held() -> None:
    hmac_key = {"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}
    for_encryption = jwk("e") | {"use": "enc"}
    other_curve = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())) | {"kid": "p"}
    keys = JwksKeys(Provider(b""), "idp")
    keys.use(jwks(A, hmac_key, for_encryption, other_curve))
    for kid in ("h", "e", "p"):
        with pytest.raises(UnknownKey):
            keys.key_for(kid, "ES256")
    with pytest.raises(JwksError, match="no RS256 or ES256 signing key"):
        keys.use(jwks(hmac_key))
    with pytest.raises(JwksError, match="not a JWKS"):
        keys.use(b"<html>")


def test_a_token_is_checked_only_with_a_key_of_its_algorithms_type() -> None:
    """An ES256 token naming an RSA key's id, or naming none where the first key is RSA, got that key,
    and the mismatch was a TypeError: INTERNAL, for a token anyone can make."""
    rsa_key = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key())) | {"kid": "r"}
    keys = JwksKeys(Provider(b""), "idp")
    keys.use(jwks(rsa_key, A))

    with pytest.raises(UnknownKey):
        keys.key_for("r", "ES256")
    assert keys.key_for(None, "ES256") is keys.key_for("a", "ES256")
    assert keys.key_for(None, "RS256") is keys.key_for("r", "RS256")


def test_the_keys_generation_moves_only_when_what_is_loaded_changes() -> None:
    keys = JwksKeys(Provider(b""), "idp")
    keys.use(jwks(A, B))
    first = keys.generation
    keys.use(jwks(A, B))
    assert keys.generation == first
    keys.use(jwks(B))
    assert keys.generation == first + 1


# JSON that is no JWKS, or a key PyJWT fails on with something else than its own error: each was an
# AttributeError, TypeError or RecursionError out of a load, which ended the periodic refresh for good
# (a dropped key stayed accepted) and made a call naming an unknown key id INTERNAL.
NOT_A_JWKS = {
    "a list": b"[]",
    "null": b"null",
    "a string": b'"keys"',
    "a number": b"5",
    "nested past the parser's depth": b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("raw", NOT_A_JWKS.values(), ids=NOT_A_JWKS.keys())
def test_json_that_is_no_jwks_is_a_jwks_error(raw: bytes) -> None:
    keys = JwksKeys(Provider(b""), "idp")
    with pytest.raises(JwksError, match="not a JWKS"):
        keys.use(raw)


def test_a_key_of_the_wrong_json_types_is_left_out_and_the_others_held() -> None:
    malformed: list[object] = [
        5,
        "key",
        None,
        {"kty": "oct"},
        {"kty": "RSA"},
        jwk("l") | {"alg": ["ES256"]},
        jwk("d") | {"crv": {"P": 256}},
    ]
    keys = JwksKeys(Provider(b""), "idp")
    keys.use(json.dumps({"keys": [*malformed, A]}).encode())
    assert keys.key_for("a", "ES256") is not None
    with pytest.raises(UnknownKey):
        keys.key_for("l", "ES256")
    with pytest.raises(JwksError, match="no RS256 or ES256 signing key"):
        keys.use(json.dumps({"keys": malformed}).encode())


async def test_the_periodic_refresh_goes_on_after_an_answer_that_is_no_jwks() -> None:
    provider = Provider(jwks(A, B), b"[]", jwks(B))
    keys = JwksKeys(provider, "https://idp.example/jwks")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        if len(waits) == 2:
            raise asyncio.CancelledError
        waits.append(seconds)

    with pytest.raises(asyncio.CancelledError):
        await keys.keep_fresh(300, sleep=sleep)

    assert provider.loads == 3
    with pytest.raises(UnknownKey):
        keys.key_for("a", "ES256")
