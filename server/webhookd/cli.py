"""The `webhookd` command: dev, serve, worker, gateway, migrate, token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from sqlalchemy.exc import SQLAlchemyError

from webhookd import app, config, logs
from webhookd.auth.tokens import mint
from webhookd.config import Settings, SettingsError
from webhookd.domain.errors import Unavailable
from webhookd.http.operations import grpc_serving_check, readiness_route
from webhookd.http.receiver import inbound_route
from webhookd.observability import Metrics
from webhookd.store import migrate
from webhookd.store.embedded import EmbeddedPostgres

DEV_TENANT = "tnt_dev"
DEV_SUBJECT = "dev-user"


def dev_jwt_secret(data_dir: Path) -> str:
    """A per-data-dir random secret, kept so dev tokens stay valid across restarts."""
    path = data_dir / "dev-jwt-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def dev_settings() -> Settings:
    settings = config.load(dev=True)
    if settings.jwt_secret is None and settings.jwt_public_key_file is None and settings.jwt_jwks_file is None:
        settings = settings.with_overrides(jwt_secret=dev_jwt_secret(settings.data_dir))
    return settings


def dev_token_source(settings: Settings) -> Callable[[], str] | None:
    """Mints the dev tenant's token on each call, with every claim the settings check (issuer,
    audience): what the banner prints and the Playground's "Use dev token" gets. None when tokens
    are verified with a public key, which this process cannot sign for."""
    if settings.jwt_secret is None:
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


def _print_banner(
    settings: Settings, service: app.Service, http_port: int, dev_token: Callable[[], str] | None
) -> None:
    if dev_token is None:
        token_lines = "Tokens are verified with WEBHOOKD_JWT_PUBLIC_KEY_FILE/JWKS_FILE: bring one of yours."
    else:
        token_lines = f"Dev token (tenant {DEV_TENANT}, 12 h):\n  export TOKEN={dev_token()}"
    target = service.grpc_target
    embedded = f"embedded, under {settings.data_dir}"
    database = embedded if settings.database_url is None else "WEBHOOKD_DATABASE_URL"
    vault = embedded if settings.vault_addr is None else settings.vault_addr
    create = '{"webhook": {"name": "demo", "url": "http://127.0.0.1:9000/hook", "event_types": ["rfp.*"]}}'
    print(
        f"""
webhookd dev is running
  gRPC      {target}  (reflection and grpc.health.v1 on)
  database  {database}
  vault     {vault}
  browser   http://{settings.http_addr.rsplit(":", 1)[0]}:{http_port}/playground  (its "Use dev token" signs you in)

{token_lines}

Try it:
  grpcurl -plaintext {target} list
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d {shlex.quote(create)} \\
      {target} cpod.integration.v1.WebhookService/CreateWebhook
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" {target} cpod.integration.v1.WebhookService/ListWebhooks
""",
        flush=True,
    )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


class StartError(Exception):
    """A part of the service could not start; the message is the one line the command prints."""


async def _started(what: str, start: Callable[[], Awaitable[object]]) -> None:
    try:
        await start()
    except (Unavailable, OSError, SQLAlchemyError, RuntimeError) as error:
        raise StartError(f"{what}: {error or type(error).__name__}") from error


async def _run_until_signalled(settings: Settings, *, dev: bool) -> int:
    stop = _stop_on_signals()
    metrics = Metrics()  # one registry for the whole process, served at the gateway's /metrics
    dev_token = dev_token_source(settings)
    backends = await asyncio.to_thread(app.start_backends, settings)
    try:
        # Whatever started is stopped in reverse order, on a signal or when a later part fails.
        async with contextlib.AsyncExitStack() as running:
            try:
                await _started("backends", lambda: app.check_backends(settings, backends))
                await _started("database schema", lambda: migrate.upgrade(backends.database_url))
                workers = app.DeliveryWorkers(settings, backends, metrics=metrics)
                await _started("delivery workers", workers.start)
                # Stopped after the front doors, so no new event is accepted while they drain.
                running.push_async_callback(workers.stop)
                service = app.Service(settings, backends, metrics=metrics)
                await _started("gRPC server", service.start)
                running.push_async_callback(service.stop)
                gateway = app.Gateway(
                    settings,
                    service.grpc_target,
                    extra_routes=service.http_routes(),
                    metrics=metrics,
                    dev_token=dev_token if dev else None,  # never offered by `serve`
                )
                await _started("HTTP gateway", gateway.start)
                running.push_async_callback(gateway.stop)
            except StartError as error:
                print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
                return 2
            if dev:
                _print_banner(settings, service, gateway.port, dev_token)
            else:
                print(f"webhookd serving gRPC on {service.grpc_target}, HTTP on port {gateway.port}", flush=True)
            await stop.wait()
        return 0
    finally:
        await asyncio.to_thread(backends.stop)


async def _run_workers(settings: Settings) -> int:
    stop = _stop_on_signals()
    backends = await asyncio.to_thread(app.start_backends, settings)
    try:
        async with contextlib.AsyncExitStack() as running:
            try:
                await _started("backends", lambda: app.check_backends(settings, backends))
                workers = app.DeliveryWorkers(settings, backends)
                await _started("delivery workers", workers.start)
                running.push_async_callback(workers.stop)
            except StartError as error:
                print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
                return 2
            print(f"webhookd worker running ({settings.workers} workers)", flush=True)
            await stop.wait()
        return 0
    finally:
        await asyncio.to_thread(backends.stop)


async def _run_gateway(settings: Settings, grpc_target: str) -> int:
    stop = _stop_on_signals()
    backends = await asyncio.to_thread(app.start_backends, settings)
    try:
        # Its own channel, so readiness reports the target's health, not the gateway channel's state.
        async with grpc.aio.insecure_channel(grpc_target) as upstream, contextlib.AsyncExitStack() as running:
            try:
                await _started("backends", lambda: app.check_backends(settings, backends))
                # The inbound receiver needs the database and Vault, not gRPC: it runs here.
                core = app.Core(settings, backends, metrics=Metrics())
                await core.start()
                running.push_async_callback(core.close)
                checks = {**core.readiness_checks(), "grpc": grpc_serving_check(upstream)}
                gateway = app.Gateway(
                    settings, grpc_target, extra_routes=[readiness_route(checks), inbound_route(core.inbound)]
                )
                await _started("HTTP gateway", gateway.start)
                running.push_async_callback(gateway.stop)
            except StartError as error:
                print(f"webhookd: cannot start: {error}", file=sys.stderr, flush=True)
                return 2
            print(f"webhookd gateway serving HTTP on port {gateway.port}, calling gRPC at {grpc_target}", flush=True)
            await stop.wait()
        return 0
    finally:
        await asyncio.to_thread(backends.stop)


def cmd_dev(args: argparse.Namespace) -> int:
    settings = dev_settings()
    logs.configure(settings.log_level)
    return asyncio.run(_run_until_signalled(settings, dev=True))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)
    return asyncio.run(_run_until_signalled(settings, dev=False))


def cmd_worker(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)
    return asyncio.run(_run_workers(settings))


def cmd_gateway(args: argparse.Namespace) -> int:
    settings = config.load()
    logs.configure(settings.log_level)
    return asyncio.run(_run_gateway(settings, args.grpc_target or settings.grpc_addr))


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = config.load()
    if settings.database_url is not None:
        migrate.upgrade_sync(settings.database_url)
    else:
        # Migrating needs only the database: Vault is not started for it.
        postgres = EmbeddedPostgres(settings.data_dir)
        try:
            migrate.upgrade_sync(postgres.start())
        finally:
            postgres.stop()
    print("database schema is up to date")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = config.load(dev=True)
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
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhookd", description="cPod's integration webhook service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "dev", help="run everything on embedded PostgreSQL and OpenBao, with dev defaults"
    ).set_defaults(run=cmd_dev)
    commands.add_parser("serve", help="run the service on the configured database and Vault").set_defaults(
        run=cmd_serve
    )
    commands.add_parser("worker", help="run only the delivery workers (several may share one database)").set_defaults(
        run=cmd_worker
    )
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
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.set_defaults(run=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.run(args))
    except SettingsError as error:
        print(f"webhookd: {error}", file=sys.stderr)
        sys.exit(2)
