"""WEBHOOKD_DELIVERY_PROXY: an http:// forward proxy's address, optionally with credentials, and
nothing else; a refusal never repeats the value (it may hold the proxy's password)."""

from __future__ import annotations

import pytest

from webhookd.config import SettingsError, load


def test_a_proxy_address_with_credentials_is_taken() -> None:
    proxy = "http://relay:p%40ss@egress.internal:3128"
    settings = load({"WEBHOOKD_DELIVERY_PROXY": proxy})

    assert settings.delivery_proxy == proxy
    assert load({}).delivery_proxy is None


@pytest.mark.parametrize(
    "value",
    [
        "egress.internal:3128",  # no scheme
        "https://relay:hunter2-secret@egress.internal:3128",  # TLS to the proxy is not spoken
        "socks5://relay:hunter2-secret@egress.internal:1080",
        "http://relay:hunter2-secret@egress.internal",  # no port
        "http://relay:hunter2-secret@egress.internal:99999",  # no such port
        "http://relay:hunter2-secret@:3128",
        "http://relay:hunter2-secret@egress.internal:3128/path",
        "http://relay:hunter2-secret@egress.internal:3128?x=1",
    ],
)
def test_anything_but_an_http_proxy_address_is_refused_without_repeating_it(value: str) -> None:
    with pytest.raises(
        SettingsError, match=r"WEBHOOKD_DELIVERY_PROXY must be http://\[user:password@\]host:port"
    ) as refused:
        load({"WEBHOOKD_DELIVERY_PROXY": value})
    assert "hunter2" not in str(refused.value)
