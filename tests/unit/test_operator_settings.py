"""Every WEBHOOKD_* setting given a value it cannot use is one clear error naming it, at start-up:
never a traceback from deep in a transport, a listener on some other port, a timeout that makes
every call UNAVAILABLE, or a value that only fails once traffic comes."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhookd import cli
from webhookd.auth.tokens import TokenVerifier
from webhookd.config import Settings, SettingsError, load


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOKD_GRPC_ADDR", "nonsense"),
        ("WEBHOOKD_GRPC_ADDR", "127.0.0.1:99999"),  # gRPC would listen on 99999 mod 65536
        ("WEBHOOKD_GRPC_ADDR", "127.0.0.1:-1"),
        ("WEBHOOKD_GRPC_ADDR", "::1:50051"),  # IPv6 needs brackets
        ("WEBHOOKD_HTTP_ADDR", "127.0.0.1:http"),
        ("WEBHOOKD_HTTP_ADDR", "127.0.0.1:"),
        ("WEBHOOKD_METRICS_ADDR", "9464"),
        ("WEBHOOKD_PUBLIC_URL", "hooks.example.com"),
        ("WEBHOOKD_PUBLIC_URL", "ftp://hooks.example.com"),
        ("WEBHOOKD_PUBLIC_URL", "https://"),
        ("WEBHOOKD_PUBLIC_URL", "https://hooks.example.com/in?x=1"),
        # Credentials would be in every inbound webhook's url, shown to every tenant.
        ("WEBHOOKD_PUBLIC_URL", "https://hooks:s3cret@hooks.example.com"),
        ("WEBHOOKD_PUBLIC_URL", "https://hooks:s3cret@hooks.example.com/in?x=1"),
        ("WEBHOOKD_PUBLIC_URL", "https://hooks:s3cret@[::1/in"),
        ("WEBHOOKD_LOG_LEVEL", "LOUD"),
        ("WEBHOOKD_ALLOWED_TARGET_CIDRS", "10.0.0.0/8,garbage"),
        ("WEBHOOKD_ALLOWED_TARGET_CIDRS", "10.0.0.0/33"),
        # Forms a browser never sends as its Origin, so they would never match.
        ("WEBHOOKD_CORS_ORIGINS", "https://app.example.com/"),
        ("WEBHOOKD_CORS_ORIGINS", "https://app.example.com/app"),
        ("WEBHOOKD_CORS_ORIGINS", "app.example.com"),
        ("WEBHOOKD_CORS_ORIGINS", "https://App.Example.com"),
        ("WEBHOOKD_CORS_ORIGINS", "https://user:s3cret@app.example.com"),
        ("WEBHOOKD_CORS_ORIGINS", "https://user:s3cret@[::1"),
        ("WEBHOOKD_CORS_ORIGINS", "*, https://app.example.com"),
        ("WEBHOOKD_DATABASE_TIMEOUT_SECONDS", "0"),
        ("WEBHOOKD_DATABASE_TIMEOUT_SECONDS", "-1"),
        ("WEBHOOKD_DATABASE_TIMEOUT_SECONDS", "nan"),
        ("WEBHOOKD_DATABASE_TIMEOUT_SECONDS", "1e20"),  # past PostgreSQL's statement_timeout
        ("WEBHOOKD_VAULT_TIMEOUT_SECONDS", "0"),
        ("WEBHOOKD_VAULT_TIMEOUT_SECONDS", "nan"),
        ("WEBHOOKD_VAULT_TIMEOUT_SECONDS", "inf"),
        ("WEBHOOKD_SHUTDOWN_GRACE_SECONDS", "-5"),
        ("WEBHOOKD_SHUTDOWN_GRACE_SECONDS", "nan"),
        ("WEBHOOKD_SHUTDOWN_GRACE_SECONDS", "inf"),
        ("WEBHOOKD_GRPC_KEEPALIVE_SECONDS", "0"),  # a ping every millisecond, or none at all
        ("WEBHOOKD_GRPC_KEEPALIVE_SECONDS", "nan"),
        ("WEBHOOKD_GRPC_KEEPALIVE_SECONDS", "inf"),
        ("WEBHOOKD_ORPHAN_SECRET_GRACE_SECONDS", "-5"),
        ("WEBHOOKD_ORPHAN_SECRET_GRACE_SECONDS", "0"),  # would remove secrets of creates in flight
        ("WEBHOOKD_INBOUND_RATE_PER_SECOND", "-5"),
        ("WEBHOOKD_INBOUND_RATE_PER_SECOND", "0"),
        ("WEBHOOKD_INBOUND_RATE_PER_SECOND", "nan"),
        ("WEBHOOKD_JWT_JWKS_REFRESH_SECONDS", "inf"),
        ("WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS", "0"),
        ("WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS", "nan"),
        ("WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS", "inf"),
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "0"),  # a sweep of Vault without a pause
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "0.5"),
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "nan"),
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "inf"),  # retired secrets and versions kept for ever
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "90000"),
        ("WEBHOOKD_SECRET_SWEEP_BATCH", "0"),  # a round that sweeps nothing
        ("WEBHOOKD_SECRET_SWEEP_BATCH", "200.5"),
        ("WEBHOOKD_SECRET_SWEEP_BATCH", "1000000"),
        # URLs a parser gives up on (an unclosed IPv6 bracket), each holding a password to keep out of the line.
        ("WEBHOOKD_DATABASE_URL", "postgresql://app:s3cret@[::1/webhookd"),
        ("WEBHOOKD_JWT_JWKS_URL", "https://app:s3cret@[::1/jwks.json"),
        ("VAULT_ADDR", "http://app:s3cret@[::1"),
        ("VAULT_ADDR", "https://vault.internal:99999"),
        ("VAULT_ADDR", "vault.internal:8200"),
        ("VAULT_ADDR", "ftp://vault.internal"),
        ("VAULT_ADDR", "https://vault.internal/v1?x=1"),
        # Paths under which every secret would be written: each segment one Vault path segment.
        ("WEBHOOKD_VAULT_PREFIX", "a/../b"),
        ("WEBHOOKD_VAULT_PREFIX", "a//b"),
        ("WEBHOOKD_VAULT_PREFIX", "web hookd"),
        ("WEBHOOKD_VAULT_MOUNT", ".."),
        ("WEBHOOKD_VAULT_MOUNT", "secret/*"),
    ],
)
def test_a_value_the_service_cannot_use_is_refused_naming_its_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load({name: value})

    assert str(refused.value).startswith(f"{name} ")
    assert "\n" not in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("WEBHOOKD_GRPC_ADDR", "0.0.0.0:50051", "grpc_addr", "0.0.0.0:50051"),
        ("WEBHOOKD_GRPC_ADDR", "[::]:0", "grpc_addr", "[::]:0"),
        ("WEBHOOKD_HTTP_ADDR", "localhost:8080", "http_addr", "localhost:8080"),
        ("WEBHOOKD_METRICS_ADDR", "", "metrics_addr", ""),
        ("WEBHOOKD_PUBLIC_URL", "https://hooks.example.com/edge/", "public_url", "https://hooks.example.com/edge"),
        ("WEBHOOKD_PUBLIC_URL", "https://hooks.example.com/@edge", "public_url", "https://hooks.example.com/@edge"),
        ("WEBHOOKD_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("WEBHOOKD_ALLOWED_TARGET_CIDRS", " 10.0.0.0/8, fd00::/8 ", "allowed_target_cidrs", ("10.0.0.0/8", "fd00::/8")),
        (
            "WEBHOOKD_CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
            "cors_origins",
            ("https://app.example.com", "http://localhost:3000"),
        ),
        ("WEBHOOKD_CORS_ORIGINS", "*", "cors_origins", ("*",)),
        ("WEBHOOKD_CORS_ORIGINS", "", "cors_origins", ()),
        ("WEBHOOKD_DATABASE_TIMEOUT_SECONDS", "0.5", "database_timeout_seconds", 0.5),
        ("WEBHOOKD_SHUTDOWN_GRACE_SECONDS", "0", "shutdown_grace_seconds", 0.0),
        ("WEBHOOKD_GRPC_KEEPALIVE_SECONDS", "45", "grpc_keepalive_seconds", 45.0),
        ("WEBHOOKD_STREAM_STALL_SECONDS", "0.5", "stream_stall_seconds", 0.5),
        ("WEBHOOKD_INBOUND_RATE_PER_SECOND", "0.01", "inbound_rate_per_second", 0.01),
        ("WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS", "2.5", "http_request_timeout_seconds", 2.5),
        ("WEBHOOKD_HTTP_MAX_CONNECTIONS", "50", "http_max_connections", 50),
        ("WEBHOOKD_HTTP_TCP_KEEPALIVE_SECONDS", "5", "http_tcp_keepalive_seconds", 5.0),
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "5", "secret_sweep_seconds", 5.0),
        ("WEBHOOKD_SECRET_SWEEP_SECONDS", "", "secret_sweep_seconds", 60.0),
        ("WEBHOOKD_SECRET_SWEEP_BATCH", "50", "secret_sweep_batch", 50),
        ("WEBHOOKD_SECRET_SWEEP_BATCH", "", "secret_sweep_batch", 200),
        ("VAULT_ADDR", "https://vault.internal:8200", "vault_addr", "https://vault.internal:8200"),
        ("VAULT_ADDR", "http://[::1]:8200/", "vault_addr", "http://[::1]:8200/"),
        ("WEBHOOKD_VAULT_PREFIX", "/teams/webhookd-prod/", "vault_prefix", "teams/webhookd-prod"),
        ("WEBHOOKD_VAULT_MOUNT", "kv/v2_secrets", "vault_mount", "kv/v2_secrets"),
    ],
)
def test_values_operators_use_are_taken(name: str, value: str, field: str, expected: object) -> None:
    assert getattr(load({name: value}), field) == expected


def test_the_command_prints_one_line_naming_the_setting_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOOKD_LOG_LEVEL", "LOUD")

    with pytest.raises(SystemExit) as exited:
        cli.main(["server"])

    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "webhookd: WEBHOOKD_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'"
    ]


@pytest.mark.parametrize("content", [None, b"not a PEM key"])
def test_a_public_key_file_that_is_missing_or_not_a_key_is_refused_naming_its_setting(
    tmp_path: Path, content: bytes | None
) -> None:
    key_file = tmp_path / "jwt.pem"
    if content is not None:
        key_file.write_bytes(content)

    with pytest.raises(SettingsError, match=r"^WEBHOOKD_JWT_PUBLIC_KEY_FILE "):
        TokenVerifier(Settings(jwt_public_key_file=key_file))
