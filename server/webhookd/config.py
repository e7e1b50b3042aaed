"""Settings, read once from the environment at start-up and passed to what needs them.

Every setting is a `WEBHOOKD_*` variable (Vault's own `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_NAMESPACE`
excepted); the README lists them all with their defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from webhookd.secrets.login import SERVICE_ACCOUNT_TOKEN, AppRoleLogin, KubernetesLogin, TokenFile, VaultLogin

DEFAULT_GRPC_ADDR = "127.0.0.1:50051"
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"
_POSTGRES_DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = frozenset({_POSTGRES_DRIVER, "postgresql", "postgres"})
_DATABASE_URL_FORM = "postgresql+psycopg://user:password@host:port/database"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# One segment of a Vault path webhookd writes under: what a policy's path can name plainly (no glob
# characters); `.` and `..`, which would step elsewhere, are refused beside it.
_VAULT_SEGMENT = re.compile(r"[A-Za-z0-9_.~@-]+")
# Bounds of the durations below: longer is no longer a timeout or a grace but a hang (and past them
# values overflow PostgreSQL's statement_timeout or a timedelta).
_HOUR = 3600.0
_YEAR = 365 * 24 * _HOUR


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    grpc_addr: str = DEFAULT_GRPC_ADDR
    http_addr: str = DEFAULT_HTTP_ADDR
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path(".webhookd")
    # None: start the embedded PostgreSQL under data_dir.
    database_url: str | None = None
    # None: start the embedded OpenBao server under data_dir.
    vault_addr: str | None = None
    vault_token: str | None = None
    # How a configured Vault's token is had instead of VAULT_TOKEN: a token file, AppRole or Kubernetes auth.
    vault_login: VaultLogin | None = None
    # A Vault Enterprise / HCP Vault / OpenBao namespace for every request ("" for none).
    vault_namespace: str = ""
    vault_mount: str = "secret"
    vault_prefix: str = "webhookd"
    jwt_secret: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    # The identity provider's JWKS, loaded again every jwt_jwks_refresh_seconds (auth/jwks.py).
    jwt_jwks_url: str | None = None
    jwt_jwks_refresh_seconds: float = 300.0
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    allow_insecure_urls: bool = False
    allow_private_targets: bool = False
    allowed_target_cidrs: tuple[str, ...] = ()
    # An HTTP forward proxy every delivery goes through (fixed egress addresses): http://[user:pass@]host:port.
    delivery_proxy: str | None = None
    workers: int = 32
    per_webhook_concurrency: int = 4
    per_tenant_concurrency: int = 24
    max_streams_per_tenant: int = 20
    inbound_rate_per_second: float = 50.0
    inbound_burst: int = 100
    pause_after_failures: int = 25
    retention_days: int = 30
    max_payload_bytes: int = 256 * 1024
    max_request_bytes: int = 1024 * 1024
    server_processes: int = 1
    worker_processes: int = 1
    # `webhookd worker`'s own /metrics, /healthz and /readyz; empty: none.
    metrics_addr: str = "127.0.0.1:9464"
    database_pool_size: int = 10
    database_timeout_seconds: float = 5.0
    vault_timeout_seconds: float = 5.0
    # A secret no webhook row owns is removed once it is this old (services/orphan_secrets.py).
    orphan_secret_grace_seconds: float = 900.0
    # The workers' secret sweep (services/ended_overlaps.py) runs this often and claims at most this many
    # due webhooks a round: what a committed change replaced stays in Vault (earlier versions too) until it.
    secret_sweep_seconds: float = 60.0
    secret_sweep_batch: int = 200
    shutdown_grace_seconds: float = 10.0
    # How often a running process reads the database's schema revision again: a worker stops once a
    # newer release migrated it, a server says not ready (store/migrate.py).
    schema_check_seconds: float = 10.0
    # The gRPC server pings each client with calls open this often and closes its connection when a ping
    # goes unanswered as long: a client whose host vanished gives its streams' places back (app.py).
    grpc_keepalive_seconds: float = 30.0
    # A stream that can hand its reader nothing for this long ends ABORTED and gives its place back: a
    # reader alive but not reading would otherwise hold its tenant's place for ever (api/interceptor.py).
    stream_stall_seconds: float = 60.0
    # The whole of a request (head and body) must arrive within this, or it is answered 408 (http/request_bounds.py).
    http_request_timeout_seconds: float = 60.0
    # An HTTP connection idle this long is probed by the kernel (TCP keepalive), and closed once the probes
    # go unanswered as long: an idle stream whose client's host vanished gives its place back (http/server.py).
    http_tcp_keepalive_seconds: float = 30.0
    # Connections an HTTP server process holds at once; past it one is answered 503 (http/request_bounds.py).
    http_max_connections: int = 1000
    # Origins whose browser apps may call the REST API (gateway/cors.py): ("*",) for any; empty: none.
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1/0, true/false, yes/no or on/off, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float, *, above: bool = False
) -> float:
    """A finite number within [minimum, maximum] (above the minimum, not at it, when `above`)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not (value > minimum if above else value >= minimum):  # NaN is neither
        raise SettingsError(f"{name} must be {'more than' if above else 'at least'} {minimum:g}, not {raw}")
    if not value <= maximum:
        raise SettingsError(f"{name} must be at most {maximum:g}, not {raw}")
    return value


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    """host:port ([v6]:port), port 0-65535 (0: any free one). Checked here because each transport
    reads it its own way: gRPC listens on a port past 65535 modulo 65536, the others raise."""
    raw = env.get(name) or default
    host, colon, port = raw.rpartition(":")
    bare = host.removeprefix("[").removesuffix("]")
    unbracketed_v6 = ":" in host and bare == host
    if not colon or not port.isdigit() or not int(port) <= 65535 or unbracketed_v6 or bare.strip() != bare:
        raise SettingsError(f"{name} must be host:port with a port from 0 to 65535 ([v6]:port), not {raw!r}")
    return raw


def on_http_addr(settings: Settings, http_addr: str) -> Settings:
    """`settings` on `http_addr`, the HTTP address with its port drawn where the setting gave 0: the
    default public URL, made from the address, follows it (inbound callback URLs naming port 0 would
    send callers nowhere); a public URL that was set is kept."""
    defaulted = settings.public_url == public_url({}, settings.http_addr)
    return settings.with_overrides(
        http_addr=http_addr, public_url=public_url({}, http_addr) if defaulted else settings.public_url
    )


def public_url(env: Mapping[str, str], http_addr: str) -> str:
    """The base of inbound callback URLs as senders reach this service: http(s)://host[:port][/path];
    by default the HTTP address itself (its port drawn already, where it was 0)."""
    raw = env.get("WEBHOOKD_PUBLIC_URL")
    if not raw:
        return f"http://{http_addr}"
    problem = "WEBHOOKD_PUBLIC_URL must be http(s)://host[:port][/path], without a query"
    parsed = _url(raw)
    # A user or password would be in every inbound webhook's url, which every tenant reads: refused,
    # and a value that may hold one is not repeated.
    if parsed is not None and (parsed.username is not None or parsed.password is not None):
        raise SettingsError(f"{problem} or a user and password")
    if parsed is None and "@" in raw:
        raise SettingsError(problem)
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.query
        or parsed.fragment
    ):
        raise SettingsError(f"{problem}, not {raw!r}")
    return raw.rstrip("/")


def _log_level(env: Mapping[str, str]) -> str:
    raw = env.get("WEBHOOKD_LOG_LEVEL") or "INFO"
    if raw.upper() not in _LOG_LEVELS:
        raise SettingsError(f"WEBHOOKD_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {raw!r}")
    return raw.upper()


def _cidrs(env: Mapping[str, str]) -> tuple[str, ...]:
    cidrs = tuple(c.strip() for c in env.get("WEBHOOKD_ALLOWED_TARGET_CIDRS", "").split(",") if c.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(
                f"WEBHOOKD_ALLOWED_TARGET_CIDRS must be comma-separated networks (10.0.0.0/8), not {cidr!r}"
            ) from None
    return cidrs


def _cors_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """WEBHOOKD_CORS_ORIGINS: comma-separated origins as a browser sends them (scheme, host and port
    only: a path or a trailing slash would never match), or `*` alone for any origin."""
    origins = tuple(o.strip() for o in env.get("WEBHOOKD_CORS_ORIGINS", "").split(",") if o.strip())
    if "*" in origins:
        if len(origins) > 1:
            raise SettingsError("WEBHOOKD_CORS_ORIGINS must be `*` alone or a list of origins, not both")
        return origins
    for origin in origins:
        if "@" in origin:  # an origin has no user; the message never repeats a password
            raise SettingsError("WEBHOOKD_CORS_ORIGINS must be origins without a user or password")
        parsed = _url(origin)
        if (
            parsed is None
            or parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or f"{parsed.scheme}://{parsed.netloc}" != origin
            or origin != origin.lower()
        ):
            raise SettingsError(
                f"WEBHOOKD_CORS_ORIGINS must be comma-separated origins (https://app.example.com, "
                f"lower case, no path), not {origin!r}"
            )
    return origins


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _text(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw if raw else None


def _jwks_url(env: Mapping[str, str], *, insecure_allowed: bool) -> str | None:
    """WEBHOOKD_JWT_JWKS_URL: https (plain http only where insecure URLs are allowed: whoever can
    change a JWKS in transit can sign any token), and not with WEBHOOKD_JWT_JWKS_FILE."""
    url = _text(env, "WEBHOOKD_JWT_JWKS_URL")
    if url is None:
        return None
    if env.get("WEBHOOKD_JWT_JWKS_FILE"):
        raise SettingsError("set WEBHOOKD_JWT_JWKS_URL or WEBHOOKD_JWT_JWKS_FILE, not both")
    allowed = ("https", "http") if insecure_allowed else ("https",)
    parsed = _url(url)
    if parsed is None or parsed.scheme not in allowed or not parsed.hostname:
        raise SettingsError(
            "WEBHOOKD_JWT_JWKS_URL must be an https:// URL (http:// only with WEBHOOKD_ALLOW_INSECURE_URLS)"
        )
    return url


def _url(raw: str) -> SplitResult | None:
    """`raw` split, or None when it is no URL at all (an unclosed IPv6 bracket, a port that is not one)."""
    try:
        parsed = urlsplit(raw)
        _ = parsed.port  # raises ValueError for a port that is not one
    except ValueError:
        return None
    return parsed


def _vault_addr(env: Mapping[str, str]) -> str | None:
    """VAULT_ADDR, unset for the embedded OpenBao: http(s)://host[:port][/path], as Vault's own tools
    take it. Its message never repeats the value, which may hold credentials."""
    raw = _text(env, "VAULT_ADDR")
    if raw is None:
        return None
    parsed = _url(raw)
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError("VAULT_ADDR must be http(s)://host[:port], the address of Vault's API")
    if parsed.query or parsed.fragment:
        raise SettingsError("VAULT_ADDR must be http(s)://host[:port], without a query")
    return raw


def _vault_path(env: Mapping[str, str], name: str, default: str) -> str:
    """WEBHOOKD_VAULT_MOUNT or _PREFIX: a Vault path every secret is written under, its slashes at the
    ends dropped. A `..` or empty segment would put the secrets somewhere else than the policy names
    (or nowhere: Vault refuses it, and every create failed with INTERNAL), so it is refused here."""
    raw = env.get(name) or default
    path = raw.strip("/")
    if not all(_VAULT_SEGMENT.fullmatch(segment) and segment not in (".", "..") for segment in path.split("/")):
        raise SettingsError(
            f"{name} must be a Vault path: segments of letters, digits and _.~@- joined by /, none of them"
            f" empty, . or .., not {raw!r}"
        )
    return path


def _delivery_proxy(env: Mapping[str, str]) -> str | None:
    """WEBHOOKD_DELIVERY_PROXY: an http:// proxy's address and nothing else (aiohttp speaks plain HTTP
    to a proxy; an https target is still a TLS tunnel end to end). Its message never repeats the
    value, which may hold the proxy's password."""
    url = _text(env, "WEBHOOKD_DELIVERY_PROXY")
    if url is None:
        return None
    problem = "must be http://[user:password@]host:port"
    parsed = _url(url)
    if parsed is None or parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
        raise SettingsError(f"WEBHOOKD_DELIVERY_PROXY {problem}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise SettingsError(f"WEBHOOKD_DELIVERY_PROXY {problem}, without a path or query")
    return url


def _vault_login(env: Mapping[str, str]) -> VaultLogin | None:
    """The way to a Vault token other than VAULT_TOKEN, if one is set; at most one way may be."""
    token_file = _path(env, "WEBHOOKD_VAULT_TOKEN_FILE")
    role_id = _text(env, "WEBHOOKD_VAULT_ROLE_ID")
    kubernetes_role = _text(env, "WEBHOOKD_VAULT_KUBERNETES_ROLE")
    ways = ("VAULT_TOKEN", "WEBHOOKD_VAULT_TOKEN_FILE", "WEBHOOKD_VAULT_ROLE_ID", "WEBHOOKD_VAULT_KUBERNETES_ROLE")
    chosen = [name for name in ways if env.get(name)]
    if len(chosen) > 1:
        raise SettingsError(f"set one of {', '.join(chosen)}: each is a way to the Vault token")
    if chosen and chosen != ["VAULT_TOKEN"] and not env.get("VAULT_ADDR"):
        raise SettingsError(f"{chosen[0]} needs VAULT_ADDR: the embedded OpenBao has a token of its own")
    secret_id = _text(env, "WEBHOOKD_VAULT_SECRET_ID")
    secret_id_file = _path(env, "WEBHOOKD_VAULT_SECRET_ID_FILE")
    if (secret_id or secret_id_file) and not role_id:
        raise SettingsError("WEBHOOKD_VAULT_SECRET_ID and WEBHOOKD_VAULT_SECRET_ID_FILE need WEBHOOKD_VAULT_ROLE_ID")
    if secret_id and secret_id_file:
        raise SettingsError("set WEBHOOKD_VAULT_SECRET_ID or WEBHOOKD_VAULT_SECRET_ID_FILE, not both")
    if token_file is not None:
        return TokenFile(token_file)
    if role_id is not None:
        mount = (env.get("WEBHOOKD_VAULT_APPROLE_MOUNT") or "approle").strip("/")
        return AppRoleLogin(role_id, secret_id, secret_id_file, mount)
    if kubernetes_role is not None:
        jwt_file = _path(env, "WEBHOOKD_VAULT_KUBERNETES_TOKEN_FILE") or SERVICE_ACCOUNT_TOKEN
        mount = (env.get("WEBHOOKD_VAULT_KUBERNETES_MOUNT") or "kubernetes").strip("/")
        return KubernetesLogin(kubernetes_role, jwt_file, mount)
    return None


def _database_url(env: Mapping[str, str], name: str) -> str | None:
    """A PostgreSQL URL as SQLAlchemy and psycopg 3 both take it: `postgres://` (as hosting
    platforms hand it out) and `postgresql://` name psycopg 3 explicitly, so neither SQLAlchemy's
    default driver nor a missing dialect decides what Alembic connects with."""
    raw = _text(env, name)
    if raw is None:
        return None
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port or an IPv6 bracket it cannot read
        raise SettingsError(f"{name} is not a database URL: {_DATABASE_URL_FORM}") from None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise SettingsError(f"{name} must be a PostgreSQL URL ({_DATABASE_URL_FORM}), not {url.drivername}://…")
    return url.set(drivername=_POSTGRES_DRIVER).render_as_string(hide_password=False)


def _metrics_addr(env: Mapping[str, str]) -> str:
    """WEBHOOKD_METRICS_ADDR, where "" (set but empty) means no metrics server."""
    if env.get("WEBHOOKD_METRICS_ADDR") == "":
        return ""
    return _address(env, "WEBHOOKD_METRICS_ADDR", "127.0.0.1:9464")


# Past this many of each kind, the default processes' connections (4 x 15 + 4 x 7 = 88) would not fit
# PostgreSQL's default max_connections of 100, the embedded database's included, and `make run` on a
# large machine would not start. More is a choice made with the database in mind: serve checks it.
DEFAULT_PROCESSES_MOST = 4


def _half_the_cores() -> int:
    """The default process count of each kind: servers and workers share the machine evenly, up to
    DEFAULT_PROCESSES_MOST each."""
    return min(DEFAULT_PROCESSES_MOST, max(1, (os.cpu_count() or 2) // 2))


def load(env: Mapping[str, str] | None = None, *, dev: bool = False) -> Settings:
    """Read settings from `env` (the process environment by default). `dev` changes only defaults."""
    env = os.environ if env is None else env
    http_addr = _address(env, "WEBHOOKD_HTTP_ADDR", DEFAULT_HTTP_ADDR)
    return Settings(
        grpc_addr=_address(env, "WEBHOOKD_GRPC_ADDR", DEFAULT_GRPC_ADDR),
        http_addr=http_addr,
        public_url=public_url(env, http_addr),
        data_dir=Path(env.get("WEBHOOKD_DATA_DIR") or ".webhookd"),
        database_url=_database_url(env, "WEBHOOKD_DATABASE_URL"),
        vault_addr=_vault_addr(env),
        vault_token=_text(env, "VAULT_TOKEN"),
        vault_login=_vault_login(env),
        vault_namespace=env.get("VAULT_NAMESPACE", "").strip("/"),
        vault_mount=_vault_path(env, "WEBHOOKD_VAULT_MOUNT", "secret"),
        vault_prefix=_vault_path(env, "WEBHOOKD_VAULT_PREFIX", "webhookd"),
        jwt_secret=_text(env, "WEBHOOKD_JWT_SECRET"),
        jwt_public_key_file=_path(env, "WEBHOOKD_JWT_PUBLIC_KEY_FILE"),
        jwt_jwks_file=_path(env, "WEBHOOKD_JWT_JWKS_FILE"),
        jwt_jwks_url=_jwks_url(env, insecure_allowed=_flag(env, "WEBHOOKD_ALLOW_INSECURE_URLS", dev)),
        jwt_jwks_refresh_seconds=_float(env, "WEBHOOKD_JWT_JWKS_REFRESH_SECONDS", 300.0, 10.0, 24 * _HOUR),
        jwt_issuer=_text(env, "WEBHOOKD_JWT_ISSUER"),
        jwt_audience=_text(env, "WEBHOOKD_JWT_AUDIENCE"),
        allow_insecure_urls=_flag(env, "WEBHOOKD_ALLOW_INSECURE_URLS", dev),
        allow_private_targets=_flag(env, "WEBHOOKD_ALLOW_PRIVATE_TARGETS", dev),
        allowed_target_cidrs=_cidrs(env),
        delivery_proxy=_delivery_proxy(env),
        workers=_int(env, "WEBHOOKD_WORKERS", 32, 0, 4096),
        per_webhook_concurrency=_int(env, "WEBHOOKD_PER_WEBHOOK_CONCURRENCY", 4, 1, 1000),
        per_tenant_concurrency=_int(env, "WEBHOOKD_PER_TENANT_CONCURRENCY", 24, 1, 100_000),
        max_streams_per_tenant=_int(env, "WEBHOOKD_MAX_STREAMS_PER_TENANT", 20, 1, 100_000),
        inbound_rate_per_second=_float(env, "WEBHOOKD_INBOUND_RATE_PER_SECOND", 50.0, 0, 1_000_000, above=True),
        inbound_burst=_int(env, "WEBHOOKD_INBOUND_BURST", 100, 1, 1_000_000),
        pause_after_failures=_int(env, "WEBHOOKD_PAUSE_AFTER_FAILURES", 25, 1, 1_000_000),
        retention_days=_int(env, "WEBHOOKD_RETENTION_DAYS", 30, 1, 3650),
        max_payload_bytes=_int(env, "WEBHOOKD_MAX_PAYLOAD_BYTES", 256 * 1024, 1024, 16 * 1024 * 1024),
        max_request_bytes=_int(env, "WEBHOOKD_MAX_REQUEST_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
        server_processes=_int(env, "WEBHOOKD_SERVER_PROCESSES", _half_the_cores(), 1, 256),
        worker_processes=_int(env, "WEBHOOKD_WORKER_PROCESSES", _half_the_cores(), 0, 256),
        metrics_addr=_metrics_addr(env),
        database_pool_size=_int(env, "WEBHOOKD_DATABASE_POOL_SIZE", 10, 1, 1000),
        database_timeout_seconds=_float(env, "WEBHOOKD_DATABASE_TIMEOUT_SECONDS", 5.0, 0, _HOUR, above=True),
        vault_timeout_seconds=_float(env, "WEBHOOKD_VAULT_TIMEOUT_SECONDS", 5.0, 0, _HOUR, above=True),
        orphan_secret_grace_seconds=_float(env, "WEBHOOKD_ORPHAN_SECRET_GRACE_SECONDS", 900.0, 0, _YEAR, above=True),
        secret_sweep_seconds=_float(env, "WEBHOOKD_SECRET_SWEEP_SECONDS", 60.0, 1, 24 * _HOUR),
        secret_sweep_batch=_int(env, "WEBHOOKD_SECRET_SWEEP_BATCH", 200, 1, 10_000),
        shutdown_grace_seconds=_float(env, "WEBHOOKD_SHUTDOWN_GRACE_SECONDS", 10.0, 0, _HOUR),
        schema_check_seconds=_float(env, "WEBHOOKD_SCHEMA_CHECK_SECONDS", 10.0, 0.1, _HOUR),
        grpc_keepalive_seconds=_float(env, "WEBHOOKD_GRPC_KEEPALIVE_SECONDS", 30.0, 1, _HOUR),
        stream_stall_seconds=_float(env, "WEBHOOKD_STREAM_STALL_SECONDS", 60.0, 0, _HOUR, above=True),
        http_request_timeout_seconds=_float(env, "WEBHOOKD_HTTP_REQUEST_TIMEOUT_SECONDS", 60.0, 0, _HOUR, above=True),
        http_tcp_keepalive_seconds=_float(env, "WEBHOOKD_HTTP_TCP_KEEPALIVE_SECONDS", 30.0, 1, _HOUR),
        http_max_connections=_int(env, "WEBHOOKD_HTTP_MAX_CONNECTIONS", 1000, 1, 1_000_000),
        cors_origins=_cors_origins(env),
        log_level=_log_level(env),
    )
