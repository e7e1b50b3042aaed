"""The `webhookd` command: dev, serve, server, worker, gateway, migrate, token."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from webhookd import config, logs, runners
from webhookd.auth.tokens import TokenVerifier, mint
from webhookd.config import Settings, SettingsError
from webhookd.domain.errors import Unauthenticated, Unavailable
from webhookd.runners import PARENT_PID_VARIABLE, StartError, started
from webhookd.store import migrate
from webhookd.store.database import probe
from webhookd.store.embedded import EmbeddedPostgres
from webhookd.supervisor import Supervisor, supervise

DEV_TENANT = "tnt_dev"
DEV_SUBJECT = "dev-user"


def dev_jwt_secret(data_dir: Path) -> str:
    """A per-data-dir random secret, kept so dev tokens stay valid across restarts."""
    path = data_dir / "dev-jwt-secret"
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()
    except OSError as error:
        raise SettingsError(
            f"WEBHOOKD_DATA_DIR ({data_dir}) cannot hold the dev JWT secret: {error.strerror or error}"
        ) from None


def _public_key_setting(settings: Settings) -> str | None:
    """The setting that has tokens verified with a public key, which no HS256 token passes."""
    for name, value in (
        ("WEBHOOKD_JWT_JWKS_URL", settings.jwt_jwks_url),
        ("WEBHOOKD_JWT_JWKS_FILE", settings.jwt_jwks_file),
        ("WEBHOOKD_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file),
    ):
        if value is not None:
            return name
    return None


def dev_settings() -> Settings:
    settings = config.load(dev=True)
    if settings.jwt_secret is None and _public_key_setting(settings) is None:
        settings = settings.with_overrides(jwt_secret=dev_jwt_secret(settings.data_dir))
    return settings


def dev_token_source(settings: Settings) -> Callable[[], str] | None:
    """Mints the dev tenant's token on each call, with every claim the settings check (issuer,
    audience): what the banner prints and the Playground's "Use dev token" gets. None when tokens
    are verified with a public key, which this process cannot sign for."""
    if settings.jwt_secret is None or _public_key_setting(settings) is not None:
        return None
    secret = settings.jwt_secret

    def mint_dev_token() -> str:
        return mint(
            secret,
            tenant_id=DEV_TENANT,
            subject=DEV_SUBJECT,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    return mint_dev_token


def grpcurl_command() -> str:
    """grpcurl as the banner's reader can run it: `make` installs it beside this Python, in
    `.venv/bin`, which a new user's PATH does not hold. So it is named by its path (relative to here
    when under here) unless the PATH finds that same one."""
    installed = Path(sys.executable).parent / "grpcurl"
    if not installed.exists():
        return "grpcurl"
    found = shutil.which("grpcurl")
    if found is not None and Path(found).resolve() == installed.resolve():
        return "grpcurl"
    try:
        return shlex.quote(str(installed.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(installed))


def _print_banner(settings: Settings, supervisor: Supervisor, dev_token: Callable[[], str] | None) -> None:
    if dev_token is None:
        token_lines = f"Tokens are verified with {_public_key_setting(settings)}: bring one of yours."
    else:
        token_lines = f"Dev token (tenant {DEV_TENANT}, 12 h):\n  export TOKEN={dev_token()}"
    target = supervisor.grpc_addr
    embedded = f"embedded, under {settings.data_dir}"
    database = embedded if settings.database_url is None else "WEBHOOKD_DATABASE_URL"
    vault = embedded if settings.vault_addr is None else settings.vault_addr
    create = '{"webhook": {"name": "demo", "url": "http://127.0.0.1:9000/hook", "event_types": ["rfp.*"]}}'
    grpcurl = grpcurl_command()
    print(
        f"""
webhookd dev is running
  gRPC      {target}  (reflection and grpc.health.v1 on)
  HTTP      http://{supervisor.http_addr}  (REST, /readyz, /metrics)
  processes {settings.server_processes} server, {settings.worker_processes} worker
  database  {database}
  vault     {vault}
  browser   http://{supervisor.http_addr}/playground  (its "Use dev token" signs you in)

{token_lines}

Try it:
  {grpcurl} -plaintext {target} list
  {grpcurl} -plaintext -H "authorization: Bearer $TOKEN" -d {shlex.quote(create)} \\
      {target} cpod.integration.v1.WebhookService/CreateWebhook
  {grpcurl} -plaintext -H "authorization: Bearer $TOKEN" {target} cpod.integration.v1.WebhookService/ListWebhooks
""",
        flush=True,
    )


def cmd_dev(args: argparse.Namespace) -> int:
    settings = dev_settings()
    logs.configure(settings.log_level)
    dev_token = dev_token_source(settings)

    def ready(supervisor: Supervisor) -> None:
        _print_banner(settings, supervisor, dev_token)

    return asyncio.run(supervise(settings, dev=True, environment=_environment(settings), on_ready=ready))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)

    def ready(supervisor: Supervisor) -> None:
        print(
            f"webhookd serving gRPC on {supervisor.grpc_addr}, HTTP on {supervisor.http_addr}"
            f" ({settings.server_processes} server and {settings.worker_processes} worker processes)",
            flush=True,
        )

    return asyncio.run(supervise(settings, dev=False, environment=_environment(settings), on_ready=ready))


def _environment(settings: Settings) -> dict[str, str]:
    """What the children inherit: this environment, with the dev JWT secret when dev made one."""
    environment = dict(os.environ)
    if settings.jwt_secret is not None:
        environment["WEBHOOKD_JWT_SECRET"] = settings.jwt_secret
    return environment


def cmd_server(args: argparse.Namespace) -> int:
    settings = dev_settings() if args.dev else config.load()
    logs.configure(settings.log_level)
    # Under `serve` the servers share their ports; alone, a taken port is an error.
    shared = os.environ.get(PARENT_PID_VARIABLE) is not None
    dev_token = dev_token_source(settings) if args.dev else None  # never offered outside dev
    return runners.run_server(settings, dev_token=dev_token, reuse_port=shared)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = dev_settings() if args.dev else config.load()
    logs.configure(settings.log_level)
    return runners.run_worker(settings)


def cmd_gateway(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)
    return runners.run_gateway(settings, args.grpc_target or settings.grpc_addr)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)
    try:
        asyncio.run(_migrate(settings))
    except StartError as error:
        print(f"webhookd: cannot migrate: {error}", file=sys.stderr)
        return 2
    print("database schema is up to date")
    return 0


async def _migrate(settings: Settings) -> None:
    """Migrating needs only the database: Vault is not started for it. StartError when it cannot be."""
    if settings.database_url is not None:
        await _upgrade(settings.database_url, settings.database_timeout_seconds)
        return
    postgres = EmbeddedPostgres(settings.data_dir)
    try:
        where = f"embedded PostgreSQL under WEBHOOKD_DATA_DIR ({settings.data_dir})"
        url = await started(where, lambda: asyncio.to_thread(postgres.start))
        await _upgrade(url, settings.database_timeout_seconds)
    finally:
        await asyncio.to_thread(postgres.stop)


async def _upgrade(url: str, timeout_seconds: float) -> None:
    try:
        # Bounded like every other start-up: a database that does not answer is a line, not a hang.
        await probe(url, timeout_seconds)
    except Unavailable as error:
        raise StartError(error.message) from None
    await started("database schema", lambda: migrate.upgrade(url))


def cmd_token(args: argparse.Namespace) -> int:
    settings = config.load(dev=True)
    public_key = _public_key_setting(settings)
    if public_key is not None:
        raise SettingsError(f"tokens are verified with {public_key}: `webhookd token` mints HS256 only")
    secret = settings.jwt_secret or dev_jwt_secret(settings.data_dir)
    token = mint(
        secret,
        tenant_id=args.tenant,
        subject=args.sub,
        app_id=args.app,
        ttl_seconds=args.ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    try:
        # What the server would refuse on the first call (an empty or malformed id) is refused now.
        TokenVerifier(settings.with_overrides(jwt_secret=secret)).verify(token)
    except Unauthenticated as refused:
        print(f"webhookd: {refused.message}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _lifetime(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of seconds, not {text!r}") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"a token lives at least 1 second, not {seconds}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhookd", description="cPod's integration webhook service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "dev", help="run everything on embedded PostgreSQL and OpenBao, with dev defaults"
    ).set_defaults(run=cmd_dev)
    commands.add_parser(
        "serve", help="run the service on the configured database and Vault: server and worker processes"
    ).set_defaults(run=cmd_serve)
    server = commands.add_parser("server", help="run one server process: gRPC and HTTP, no delivery workers")
    server.add_argument("--dev", action="store_true", help="with dev defaults (as `webhookd dev` starts it)")
    server.set_defaults(run=cmd_server)
    worker = commands.add_parser("worker", help="run only the delivery workers (several may share one database)")
    worker.add_argument("--dev", action="store_true", help="with dev defaults (as `webhookd dev` starts it)")
    worker.set_defaults(run=cmd_worker)
    gateway = commands.add_parser("gateway", help="run only the REST gateway, calling a webhookd gRPC server")
    gateway.add_argument(
        "--grpc-target", default=None, help="host:port of the gRPC server (default: WEBHOOKD_GRPC_ADDR)"
    )
    gateway.set_defaults(run=cmd_gateway)
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=cmd_migrate)
    token = commands.add_parser("token", help="mint an HS256 JWT (WEBHOOKD_JWT_SECRET, or the dev secret)")
    token.add_argument("--tenant", default=DEV_TENANT, help=f"tenant_id claim (default {DEV_TENANT})")
    token.add_argument("--sub", default=DEV_SUBJECT, help="sub claim: the person")
    token.add_argument("--app", default=None, help="app_id claim: for integration keys")
    token.add_argument("--ttl", type=_lifetime, default=12 * 3600, help="lifetime in seconds")
    token.set_defaults(run=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.run(args))
    except SettingsError as error:
        print(f"webhookd: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # `python -m webhookd.cli`, as `webhookd serve` starts its children
    main()
