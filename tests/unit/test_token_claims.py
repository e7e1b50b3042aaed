"""What a token must look like beyond its signature: a compact JWS as RFC 7515 writes it, NumericDate
claims as JSON numbers (RFC 7519), and ids without surrounding whitespace."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from webhookd.auth.tokens import TokenVerifier, mint
from webhookd.config import Settings
from webhookd.domain.errors import Unauthenticated

SECRET = "unit-secret-unit-secret-unit-secret!"


def signed(**claims: Any) -> str:
    return jwt.encode({"tenant_id": "tnt_1", "exp": int(time.time()) + 60} | claims, SECRET, algorithm="HS256")


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET))


def test_a_token_with_base64_padding_is_refused_not_kept_as_another_entry(verifier: TokenVerifier) -> None:
    """Padding is not base64url as JWS writes it; accepted, every padded spelling of one token was a
    cache entry of its own."""
    token = mint(SECRET, tenant_id="tnt_1", ttl_seconds=60)
    header, payload, signature = token.split(".")
    for padded in (f"{header}=.{payload}.{signature}", f"{header}.{payload}.{signature}=", f"{token}=="):
        with pytest.raises(Unauthenticated, match="compact JWS"):
            verifier.verify(padded)
    assert verifier.verify(token).tenant_id == "tnt_1"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_a_time_claim_written_as_a_string_is_refused(verifier: TokenVerifier, claim: str) -> None:
    now = int(time.time())
    value = {"exp": now + 60, "nbf": now - 1, "iat": now - 1}[claim]
    with pytest.raises(Unauthenticated, match=f"'{claim}' must be a number"):
        verifier.verify(signed(**{claim: str(value)}))
    assert verifier.verify(signed(**{claim: value})).tenant_id == "tnt_1"


@pytest.mark.parametrize("claim", ["app_id", "sub"])
@pytest.mark.parametrize("value", [" ", "\u00a0", " app_1", "app_1 "])
def test_an_id_claim_with_surrounding_whitespace_is_refused(verifier: TokenVerifier, claim: str, value: str) -> None:
    with pytest.raises(Unauthenticated, match="whitespace"):
        verifier.verify(signed(**{claim: value}))
