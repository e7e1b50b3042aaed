"""WEBHOOKD_JWT_JWKS_URL: https, or http where insecure URLs are allowed; not beside a JWKS file; its
refresh interval not below 10 s (each refresh is a request to the identity provider)."""

from __future__ import annotations

import pytest

from webhookd.config import SettingsError, load

URL = "https://idp.example/.well-known/jwks.json"


def test_an_https_url_is_read_with_its_refresh_interval() -> None:
    settings = load({"WEBHOOKD_JWT_JWKS_URL": URL, "WEBHOOKD_JWT_JWKS_REFRESH_SECONDS": "60"})
    assert (settings.jwt_jwks_url, settings.jwt_jwks_refresh_seconds) == (URL, 60.0)
    assert load({}).jwt_jwks_refresh_seconds == 300.0


def test_plain_http_needs_insecure_urls_allowed() -> None:
    http = {"WEBHOOKD_JWT_JWKS_URL": "http://keycloak:8080/realms/x/protocol/openid-connect/certs"}
    with pytest.raises(SettingsError, match="must be an https:// URL"):
        load(http)
    assert load(http | {"WEBHOOKD_ALLOW_INSECURE_URLS": "1"}).jwt_jwks_url == http["WEBHOOKD_JWT_JWKS_URL"]
    assert load(http, dev=True).jwt_jwks_url == http["WEBHOOKD_JWT_JWKS_URL"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEBHOOKD_JWT_JWKS_URL": "idp.example/jwks"}, "must be an https:// URL"),
        ({"WEBHOOKD_JWT_JWKS_URL": "https:///jwks"}, "must be an https:// URL"),
        ({"WEBHOOKD_JWT_JWKS_URL": URL, "WEBHOOKD_JWT_JWKS_FILE": "/etc/jwks.json"}, "not both"),
        ({"WEBHOOKD_JWT_JWKS_REFRESH_SECONDS": "1"}, "must be at least 10, not 1"),
        ({"WEBHOOKD_JWT_JWKS_REFRESH_SECONDS": "nan"}, "must be at least 10, not nan"),
    ],
)
def test_a_url_or_interval_that_cannot_work_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env)
