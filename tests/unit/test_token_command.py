"""`webhookd token` mints only what the server accepts: a token refused on its first call (expired at
birth, an empty or malformed id, an app token without its app, signed with a key the server does
not use) is one line and exit 2 instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhookd import cli
from webhookd.auth.tokens import TokenVerifier
from webhookd.config import Settings

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOKD_JWT_PUBLIC_KEY_FILE", "WEBHOOKD_JWT_JWKS_FILE", "WEBHOOKD_JWT_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBHOOKD_JWT_SECRET", SECRET)


def minted(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", *args])
    output = capsys.readouterr()
    return int(exited.value.code or 0), output.out.strip(), output.err.splitlines()


def test_a_token_it_mints_is_accepted_with_the_claims_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    code, token, _ = minted(capsys, "--tenant", "tnt_a", "--app", "app_1", "--sub", "p1")

    scope = TokenVerifier(Settings(jwt_secret=SECRET)).verify(token)
    assert code == 0
    assert (scope.tenant_id, scope.app_id, scope.person_id) == ("tnt_a", "app_1", "p1")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--ttl", "0"], "--ttl"),
        (["--ttl", "-120"], "--ttl"),
        (["--tenant", ""], "tenant_id"),
        (["--tenant", "tnt/../other"], "tenant_id"),
        (["--app", ""], "app_id"),  # not a token for the whole tenant
        (["--sub", "a\nb"], "sub"),
    ],
)
def test_a_token_the_server_would_refuse_is_not_minted(
    capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    code, token, errors = minted(capsys, *args)

    assert (code, token) == (2, "")
    assert named in errors[-1]


def test_it_mints_nothing_when_tokens_are_verified_with_a_public_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKD_JWT_PUBLIC_KEY_FILE", "/etc/webhookd/jwt.pem")

    code, token, errors = minted(capsys)

    assert (code, token) == (2, "")
    assert errors == [
        "webhookd: tokens are verified with WEBHOOKD_JWT_PUBLIC_KEY_FILE: `webhookd token` mints HS256 only"
    ]


def test_dev_offers_no_dev_token_when_tokens_are_verified_with_a_jwks_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server verifies with the JWKS alone: an HS256 dev token in the banner would be refused."""
    monkeypatch.delenv("WEBHOOKD_JWT_SECRET")
    monkeypatch.setenv("WEBHOOKD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WEBHOOKD_JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")

    assert cli.dev_token_source(cli.dev_settings()) is None
