"""Wiring: the only module that knows every room. Builds the running service from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from cpod.integration.v1 import webhook_service_pb2, webhook_service_pb2_grpc
from grpc_health.v1 import health, health_pb2_grpc
from starlette.routing import BaseRoute

from webhookd.api import health as grpc_health
from webhookd.api.interceptor import CallInterceptor
from webhookd.api.local import LocalChannel
from webhookd.api.reflection import enable_reflection
from webhookd.api.service import WebhookServicer
from webhookd.auth.tokens import TokenVerifier
from webhookd.config import Settings
from webhookd.delivery.attempt import Deliverer
from webhookd.delivery.http import HttpSender
from webhookd.delivery.pool import DeliveryPool
from webhookd.delivery.recorder import AttemptRecorder
from webhookd.domain.errors import Unavailable
from webhookd.domain.secret_changes import lease_lasting
from webhookd.domain.topics import Topic, new_deliveries_payload
from webhookd.gateway import create_gateway_app
from webhookd.gateway.playground import DevTokenSource, local_hosts, playground_routes
from webhookd.http.operations import ObservedApp, metrics_route, readiness_route
from webhookd.http.receiver import inbound_route
from webhookd.http.request_bounds import RequestBounds
from webhookd.http.server import HttpServer
from webhookd.observability import Metrics
from webhookd.secrets.embedded import EmbeddedOpenBao
from webhookd.secrets.login import VaultLogin
from webhookd.secrets.token_renewal import keep_token_alive
from webhookd.secrets.vault import VaultSecretStore
from webhookd.services.ended_overlaps import EndedOverlaps
from webhookd.services.event_types import EventTypes
from webhookd.services.events import Events
from webhookd.services.history import History
from webhookd.services.inbound import Inbound
from webhookd.services.orphan_secrets import OrphanSecrets
from webhookd.services.pings import Pings
from webhookd.services.published_events import PublishedEvents
from webhookd.services.readiness import Check, Readiness, database_checks
from webhookd.services.signing_secrets import SigningSecrets
from webhookd.services.tailing import StreamSlots
from webhookd.services.webhooks import Webhooks
from webhookd.store import migrate, partitions, retention, token_buckets
from webhookd.store.database import Database, probe
from webhookd.store.deliveries import DeliveryStore
from webhookd.store.embedded import EmbeddedPostgres
from webhookd.store.event_history import EventHistoryStore
from webhookd.store.event_types import EventTypeStore
from webhookd.store.events import EventStore
from webhookd.store.history import HistoryStore
from webhookd.store.inbound import InboundStore
from webhookd.store.lifecycle import LifecycleStore
from webhookd.store.log_consumers import LogConsumerStore
from webhookd.store.notifications import PostgresNotifications
from webhookd.store.ping_buckets import PingBucketStore
from webhookd.store.pings import PingStore
from webhookd.store.secret_overlaps import SecretOverlapStore
from webhookd.store.secret_owners import SecretOwners
from webhookd.store.statistics import keep_statistics
from webhookd.store.stranded_held import release_stranded
from webhookd.store.stream_leases import PostgresStreamLeases
from webhookd.store.webhooks import WebhookStore

log = logging.getLogger("webhookd")
RETENTION_INTERVAL_SECONDS = 3600
# How long at most an operational event held past its webhook's resume waits (store/stranded_held.py);
# an idle round reads a few index pages.
HELD_ROUND_SECONDS = 60.0
# How often an idle server runs a round of its readiness checks, so its gRPC health is not stale.
HEALTH_PING_SECONDS = 2.0
SERVICE_DESCRIPTOR = webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"]
SERVICE_NAME = SERVICE_DESCRIPTOR.full_name
HEALTH_SERVICES = ("", SERVICE_NAME)  # the server as a whole, and its one service
# What a server process opens beside its pool: one to send notifications, up to four to LISTEN.
SERVER_CONNECTIONS_BESIDE_POOL = 5
# A worker's pool (only the claimer, recorder, maintenance and releases use one), and what it opens
# beside it: one to send notifications, one to LISTEN.
WORKER_POOL_SIZE = 5
WORKER_CONNECTIONS_BESIDE_POOL = 2


@dataclass
class Backends:
    """Where the database and Vault are, and the embedded servers this process started for them."""

    database_url: str
    vault_addr: str
    vault_token: str
    embedded: list[EmbeddedPostgres | EmbeddedOpenBao] = field(default_factory=list)
    vault_namespace: str = ""  # the configured Vault's; the embedded OpenBao has none
    # How the configured Vault's token is had, when VAULT_TOKEN does not give it.
    vault_login: VaultLogin | None = None

    def secret_store(self, settings: Settings) -> VaultSecretStore:
        """A Vault client for one component (each owns and closes its own, and logs in for itself)."""
        return VaultSecretStore(
            self.vault_addr,
            self.vault_login or self.vault_token,
            namespace=self.vault_namespace,
            mount=settings.vault_mount,
            prefix=settings.vault_prefix,
            timeout=settings.vault_timeout_seconds,
        )

    def stop(self) -> None:
        for server in reversed(self.embedded):
            server.stop()


def start_backends(settings: Settings) -> Backends:
    """Start embedded PostgreSQL/OpenBao for whatever the settings leave unset (blocking)."""
    embedded: list[EmbeddedPostgres | EmbeddedOpenBao] = []
    try:
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.data_dir)
            database_url = postgres.start()
            embedded.append(postgres)
        vault_namespace, vault_login = "", None
        if settings.vault_addr is None:
            vault = EmbeddedOpenBao(settings.data_dir, mode="persistent", mount=settings.vault_mount)
            vault_addr, vault_token = vault.start()
            embedded.append(vault)
        else:
            vault_addr, vault_token = settings.vault_addr, settings.vault_token or ""
            vault_namespace, vault_login = settings.vault_namespace, settings.vault_login
    except BaseException:
        for server in reversed(embedded):
            server.stop()
        raise
    return Backends(database_url, vault_addr, vault_token, embedded, vault_namespace, vault_login)


class Core:
    """The use cases and the adapters they run on, as one process shares them: one connection pool, one
    Vault client, one notification channel."""

    def __init__(self, settings: Settings, backends: Backends, *, metrics: Metrics) -> None:
        self.database = Database(
            backends.database_url,
            size=settings.database_pool_size,
            timeout_seconds=settings.database_timeout_seconds,
            name="webhookd-server",
        )
        self.secrets = backends.secret_store(settings)
        self.notifications = PostgresNotifications(backends.database_url)
        self._running = contextlib.AsyncExitStack()
        webhook_store = WebhookStore(self.database)
        lifecycle = LifecycleStore(self.database)
        self.stream_leases = PostgresStreamLeases(self.database)
        self.stream_slots = StreamSlots(self.stream_leases, settings.max_streams_per_tenant, metrics=metrics.streams)
        # The server process has no workers: SendTestEvent posts through a sender (and SSRF guard) of its own.
        self.sender = HttpSender.from_settings(settings)
        signing_secrets = SigningSecrets(self.secrets)
        self.webhooks = Webhooks(
            webhook_store,
            self.secrets,
            self.notifications,
            public_url=settings.public_url,
            allow_insecure_urls=settings.allow_insecure_urls,
            secret_lease=lease_lasting(
                vault_timeout=timedelta(seconds=settings.vault_timeout_seconds),
                database_timeout=timedelta(seconds=settings.database_timeout_seconds),
            ),
        )
        self.event_types = EventTypes(EventTypeStore(self.database), webhook_store, self.notifications)
        self.events = Events(
            EventStore(self.database),
            max_payload_bytes=settings.max_payload_bytes,
            schemas=self.event_types,
        )
        self.history = History(
            HistoryStore(self.database),
            webhook_store,
            self.notifications,
            lifecycle=lifecycle,
            consumers=LogConsumerStore(self.database),
            stream_slots=self.stream_slots,
        )
        self.published = PublishedEvents(EventHistoryStore(self.database), webhook_store)
        self.pings = Pings(
            webhook_store,
            signing_secrets,
            self.sender,
            PingStore(self.database),
            self.notifications,
            buckets=PingBucketStore(self.database),
            examples=self.event_types,
        )
        self.inbound = Inbound(
            InboundStore(self.database),
            signing_secrets,
            webhook_store,
            self.notifications,
            rate_per_second=settings.inbound_rate_per_second,
            burst=settings.inbound_burst,
            stream_slots=self.stream_slots,
            max_body_bytes=settings.max_request_bytes,
        )
        # What /readyz and gRPC health both answer from. A server stays up on a schema a newer release
        # migrated (its calls in flight finish), but is not ready: balancers drain it for the new release.
        self._revisions = migrate.this_release()
        self.readiness = Readiness(self.readiness_checks())

    async def start(self) -> None:
        await self.database.open()
        await self.sender.start()
        self.notifications.start()
        self.stream_leases.start()
        await self._running.enter_async_context(self.webhooks.follow_changes())
        self._running.push_async_callback(self.webhooks.close)
        await self._running.enter_async_context(self.event_types.follow_changes())
        token = asyncio.create_task(keep_token_alive(self.secrets), name="vault-token")
        self._running.push_async_callback(_cancelled, token)
        # Publishes and inbound receipts write history here too: a fleet without workers still gets its weeks.
        weeks_ahead = asyncio.create_task(partitions.keep_created_ahead(self.database), name="partitions")
        self._running.push_async_callback(_cancelled, weeks_ahead)

    async def close(self) -> None:
        await self._running.aclose()
        await self.readiness.close()
        await self.stream_leases.close()
        await self.notifications.close()
        await self.sender.close()
        await self.database.close()
        await self.secrets.log_out()
        self.secrets.close()

    def readiness_checks(self) -> dict[str, Check]:
        return _readiness_checks(self.database, self.secrets, self._revisions)

    def http_routes(self) -> list[BaseRoute]:
        """Routes every HTTP server of this process serves from the core directly."""
        return [readiness_route(self.readiness), inbound_route(self.inbound)]


class Service:
    """The running gRPC server and everything it owns."""

    def __init__(
        self, settings: Settings, backends: Backends, *, metrics: Metrics | None = None, reuse_port: bool = False
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.metrics = metrics or Metrics()
        self.core = Core(settings, backends, metrics=self.metrics)
        self.metrics.backlog.watch(DeliveryStore(self.core.database, pause_after_failures=0).backlog)
        self.health = health.aio.HealthServicer()
        self.verifier = TokenVerifier(settings)
        self.interceptor = CallInterceptor(
            self.verifier, self.metrics.grpc, stall_seconds=settings.stream_stall_seconds
        )
        self.server = grpc.aio.server(
            interceptors=[self.interceptor], options=grpc_server_options(settings, reuse_port=reuse_port)
        )
        self.servicer = WebhookServicer(
            self.core.webhooks,
            self.core.events,
            self.core.history,
            self.core.inbound,
            self.core.published,
            self.core.pings,
            self.core.event_types,
        )
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection([SERVICE_NAME, health.SERVICE_NAME], self.server)
        self.grpc_port = 0
        self._health_task: asyncio.Task[None] | None = None
        self._keys_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.grpc_port = self.server.add_insecure_port(self.settings.grpc_addr)
        if self.grpc_port == 0:
            raise RuntimeError(f"cannot listen on {self.settings.grpc_addr}")
        await self.core.start()
        await self.server.start()
        await grpc_health.show(self.health, HEALTH_SERVICES, serving=self.core.readiness.ready)
        # NOT_SERVING while a readiness check (the database, Vault) is down; a call that finds the
        # database gone wakes it before the next round (a failed ping starts the database's probe).
        follow = grpc_health.follow_readiness(
            self.health,
            self.core.readiness,
            HEALTH_SERVICES,
            every_seconds=HEALTH_PING_SECONDS,
            wake=self.core.database.reachability_changed,
        )
        self._health_task = asyncio.create_task(follow, name="health")
        self._keys_task = asyncio.create_task(self.verifier.keep_keys_fresh(), name="jwks")

    @property
    def grpc_target(self) -> str:
        host = self.settings.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.grpc_port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight ones finish within the grace period, then release."""
        await self.stop_serving(grace)
        await self.close()

    async def stop_serving(self, grace: float | None = None) -> None:
        """Stop taking gRPC calls and end those still running after the grace period; the core stays
        open for a gateway beside it (LocalChannel) until `close`."""
        for task in (self._health_task, self._keys_task):
            if task is not None:
                await _cancelled(task)
        await self.health.enter_graceful_shutdown()
        # Before the grace starts: open streams end now, UNAVAILABLE, rather than hold it all.
        self.core.stream_slots.close()
        await self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)

    async def close(self) -> None:
        await self.core.close()

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    def http_routes(self) -> list[BaseRoute]:
        """Routes the gateway serves from this process directly (they need the database, not gRPC)."""
        return self.core.http_routes()

    def local_channel(self) -> LocalChannel:
        """The service's methods called inside this process, for a gateway running beside it."""
        return LocalChannel(SERVICE_DESCRIPTOR, self.servicer, self.interceptor)


def grpc_server_options(settings: Settings, *, reuse_port: bool) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments."""
    keepalive_ms = round(settings.grpc_keepalive_seconds * 1000)
    return [
        # Shared only when several server processes serve one port; otherwise a port already
        # taken is an error, not a silent second listener.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # A following stream whose client's host vanished (no FIN, no RST) would hold its
        # tenant's place for the kernel's two hours: an unanswered ping ends its connection.
        ("grpc.keepalive_time_ms", keepalive_ms),
        # What gRPC 1.85 waits for a ping's answer, whatever the keepalive timeout says.
        ("grpc.http2.ping_timeout_ms", grpc_ping_timeout_ms(settings)),
        # gRPC core sets the connections' TCP_USER_TIMEOUT from this alone (grpc_user_timeout_ms).
        ("grpc.keepalive_timeout_ms", grpc_user_timeout_ms(settings)),
        # An idle following stream sends no data, after which gRPC stops pinging at the second ping.
        ("grpc.http2.max_pings_without_data", 0),
    ]


WRITE_STALL_MARGIN_SECONDS = 5.0


def grpc_ping_timeout_ms(settings: Settings) -> int:
    """How long a keepalive ping may go unanswered before the server ends the connection, every call on it
    UNAVAILABLE: the keepalive, or the stream stall bound with its margin if longer. A live client whose
    process stopped reading its socket (a stop-the-world collection, a host short of CPU) answers no ping
    either; at the keepalive alone, a ping that reached its socket while the server's writes waited on a
    small HTTP/2 window cut it before the stall bound ended its stream ABORTED (a CI run's paused-reader
    test). An idle client whose host vanished is found after the keepalive and this: 95 s by default."""
    return math.ceil(
        max(settings.grpc_keepalive_seconds, settings.stream_stall_seconds + WRITE_STALL_MARGIN_SECONDS) * 1000
    )


def grpc_user_timeout_ms(settings: Settings) -> int:
    """How long data the gRPC server sent may go unacknowledged before the kernel ends its connection
    (TCP_USER_TIMEOUT), every call on it UNAVAILABLE: a client whose host vanished while a stream was
    writing to it is found so when no ping can go out (none is sent while a write to a full socket waits).

    Linux ends by the same bound a connection whose client keeps its window shut (a live process that
    stopped reading its socket: a stop-the-world collection, a host short of CPU). gRPC core derives it
    from the keepalive timeout; at the keepalive alone it cut such a client before the stream stall
    bound, which ends only the stalled stream, ABORTED with why. So, as for HTTP (http/server.py), it
    is as long as keepalive takes to find a dead peer (a ping, then its timeout) or the stall bound with
    its margin, whichever is longer."""
    keepalive_seconds = 2 * settings.grpc_keepalive_seconds
    return math.ceil(max(keepalive_seconds, settings.stream_stall_seconds + WRITE_STALL_MARGIN_SECONDS) * 1000)


def http_bounds(settings: Settings) -> RequestBounds:
    """What every HTTP server of the process holds a client to (http/request_bounds.py)."""
    return RequestBounds(
        request_timeout_seconds=settings.http_request_timeout_seconds,
        max_connections=settings.http_max_connections,
        tcp_keepalive_seconds=settings.http_tcp_keepalive_seconds,
        # Past the streams' own bound, which ends a REST stream first with its error frame (api/interceptor.py).
        write_stall_seconds=settings.stream_stall_seconds + WRITE_STALL_MARGIN_SECONDS,
    )


class Gateway:
    """The REST gateway: an HTTP server whose routes call the service through `channel`: a
    LocalChannel beside the servicers (`serve`, `dev`), or a gRPC channel to them (`gateway`)."""

    def __init__(
        self,
        settings: Settings,
        channel: grpc.aio.Channel | LocalChannel,
        *,
        extra_routes: list[BaseRoute] | None = None,
        metrics: Metrics | None = None,
        dev_token: DevTokenSource | None = None,
        reuse_port: bool = False,
        listening: socket.socket | None = None,
    ) -> None:
        """dev_token: offered to the Playground page ("Use dev token"); `webhookd dev` only.
        listening: the HTTP address's socket, made already (runners.py); else it is made at start."""
        self.metrics = metrics or Metrics()
        self.channel = channel
        configured_host = settings.http_addr.rpartition(":")[0]
        self._closing = asyncio.Event()
        self.app = create_gateway_app(
            self.channel,
            max_request_bytes=settings.max_request_bytes,
            closing=self._closing,
            cors_origins=settings.cors_origins,
            extra_routes=[
                metrics_route(self.metrics),
                # The configured address with the port it listens on (configured as 0 in tests).
                *playground_routes(
                    dev_token=dev_token, dev_token_hosts=lambda: local_hosts(f"{configured_host}:{self.port}")
                ),
                *(extra_routes or []),
            ],
        )
        self.http = HttpServer(
            ObservedApp(self.app, self.metrics),
            settings.http_addr,
            bounds=http_bounds(settings),
            reuse_port=reuse_port,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
            listening=listening,
        )

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()

    async def stop(self) -> None:
        """Streams end at once; other requests in flight get the shutdown grace."""
        self._closing.set()
        await self.http.stop()
        await self.channel.close()


async def _rounds(every_seconds: float, round_: Callable[[], Awaitable[object]], name: str) -> None:
    """`round_` every `every_seconds`, for ever: a round that fails is logged, and the next one runs."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await round_()
        except Unavailable as error:
            log.warning(f"{name} round skipped", extra={"reason": error.message})
        except Exception:
            log.exception(f"{name} round failed")


class DeliveryWorkers:
    """The worker pool with what it owns: its connection pool, notifications, the Vault client and one HTTP session."""

    def __init__(self, settings: Settings, backends: Backends, *, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        # A worker holds no connection while it POSTs: only the claimer, the express claims, the
        # recorder, maintenance and the odd release use one, so a few suffice however many workers run.
        self.database = Database(
            backends.database_url,
            size=min(WORKER_POOL_SIZE, settings.database_pool_size),
            timeout_seconds=settings.database_timeout_seconds,
            name="webhookd-worker",
        )
        self.notifications = PostgresNotifications(backends.database_url)
        self.secrets = backends.secret_store(settings)
        self.sender = HttpSender.from_settings(settings)
        queue = DeliveryStore(self.database, pause_after_failures=settings.pause_after_failures)
        recorder = AttemptRecorder(queue, self.notifications, observer=self.metrics.deliveries)
        deliverer = Deliverer(
            queue,
            SigningSecrets(self.secrets),
            self.sender,
            recorder,
            self.notifications,
            observer=self.metrics.deliveries,
        )
        self.pool = DeliveryPool(
            queue,
            deliverer,
            recorder,
            self.notifications,
            workers=settings.workers,
            per_webhook=settings.per_webhook_concurrency,
            per_tenant=settings.per_tenant_concurrency,
            grace_seconds=settings.shutdown_grace_seconds,
            observer=self.metrics.deliveries,
        )
        self.retention_days = settings.retention_days
        self.buckets = retention.bucket_limits(
            inbound_per_second=settings.inbound_rate_per_second, inbound_burst=settings.inbound_burst
        )
        grace = timedelta(seconds=settings.orphan_secret_grace_seconds)
        self.orphan_secrets = OrphanSecrets(self.secrets, SecretOwners(self.database), grace=grace)
        # Often enough that an orphan goes soon after its grace, never more than hourly.
        self._orphan_interval = max(1.0, min(settings.orphan_secret_grace_seconds, RETENTION_INTERVAL_SECONDS))
        self.ended_overlaps = EndedOverlaps(
            WebhookStore(self.database),
            SecretOverlapStore(self.database),
            self.secrets,
            batch=settings.secret_sweep_batch,
            lease=lease_lasting(
                vault_timeout=timedelta(seconds=settings.vault_timeout_seconds),
                database_timeout=timedelta(seconds=settings.database_timeout_seconds),
            ),
        )
        self._secret_sweep_seconds = settings.secret_sweep_seconds
        self._ended_overlaps_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._partitions_task: asyncio.Task[None] | None = None
        self._statistics_task: asyncio.Task[None] | None = None
        self._orphan_task: asyncio.Task[None] | None = None
        self._held_task: asyncio.Task[None] | None = None
        self._token_task: asyncio.Task[None] | None = None
        self._revisions = migrate.this_release()
        self._schema_check_seconds = settings.schema_check_seconds
        self._schema_task: asyncio.Task[str] | None = None
        self.readiness = Readiness(_readiness_checks(self.database, self.secrets, self._revisions))

    async def start(self) -> None:
        await self.database.open()
        await self.sender.start()
        self.notifications.start()
        self._task = asyncio.create_task(self.pool.run(), name="delivery-pool")
        self._retention_task = asyncio.create_task(self._retention_loop(), name="retention")
        self._partitions_task = asyncio.create_task(partitions.keep_created_ahead(self.database), name="partitions")
        self._statistics_task = asyncio.create_task(keep_statistics(self.database), name="statistics")
        self._orphan_task = asyncio.create_task(
            _rounds(self._orphan_interval, self.orphan_secrets.sweep, "orphan secret"), name="orphan-secrets"
        )
        self._ended_overlaps_task = asyncio.create_task(
            _rounds(self._secret_sweep_seconds, self.ended_overlaps.sweep, "ended overlaps"), name="ended-overlaps"
        )
        self._held_task = asyncio.create_task(
            _rounds(HELD_ROUND_SECONDS, self._held_round, "stranded held"), name="held-round"
        )
        self._token_task = asyncio.create_task(keep_token_alive(self.secrets), name="vault-token")
        watch = migrate.until_schema_changes(self.database, self._revisions, every_seconds=self._schema_check_seconds)
        self._schema_task = asyncio.create_task(watch, name="schema")

    async def schema_changed(self) -> str:
        """Completes, saying why, once a newer release migrated the database (or it went back to an older
        schema) since the workers started: their queries are written for this release's schema alone."""
        assert self._schema_task is not None, "started first"
        return await asyncio.shield(self._schema_task)

    async def _retention_loop(self) -> None:
        while True:
            await sweep_history(self.database, retention_days=self.retention_days, buckets=self.buckets)
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

    async def _held_round(self) -> None:
        released = await release_stranded(self.database, now=datetime.now(UTC))
        if released:
            log.info("released deliveries held past their webhook's resume", extra={"released": released})
            # A name per delivery: a quiet webhook's express claim takes one (delivery/pool.py), the claimer the rest.
            named = [webhook_id for webhook_id, count in sorted(released.items()) for _ in range(count)]
            self.notifications.notify(Topic.DELIVERIES, new_deliveries_payload(named))

    async def stop(self) -> None:
        self.pool.stop()
        tasks = (
            self._retention_task,
            self._partitions_task,
            self._statistics_task,
            self._orphan_task,
            self._ended_overlaps_task,
            self._held_task,
            self._token_task,
        )
        for task in tasks:
            if task is not None:
                await _cancelled(task)
        if self._schema_task is not None:
            self._schema_task.cancel()
            await asyncio.gather(self._schema_task, return_exceptions=True)
        if self._task is not None:
            await self._task
        await self.ended_overlaps.close()
        await self.readiness.close()
        await self.notifications.close()
        await self.sender.close()
        await self.database.close()
        await self.secrets.log_out()
        self.secrets.close()


async def sweep_history(database: Database, *, retention_days: int, buckets: Sequence[token_buckets.Limit]) -> None:
    """One round of the workers' retention: the expired history removed, and the token bucket rows
    as good as absent."""
    try:
        cutoff = await retention.cutoff(database, keep=timedelta(days=retention_days))
        swept = await retention.sweep(database, cutoff=cutoff, buckets=buckets)
        if swept.dropped or swept.deleted:
            log.info("retention sweep", extra={"swept": swept, "cutoff": cutoff.isoformat()})
    except Exception:
        log.exception("retention sweep failed")


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _readiness_checks(database: Database, secrets: VaultSecretStore, revisions: migrate.Revisions) -> dict[str, Check]:
    # One statement a round for both: reading the revision proves the database answers.
    on_database = database_checks(lambda: migrate.current_revision(database), revisions.unlike)

    async def vault_check() -> str | None:
        try:
            await secrets.ping()
        except Unavailable as error:
            return error.message
        return None

    return {"database": on_database["database"], "vault": vault_check, "schema": on_database["schema"]}


async def check_backends(settings: Settings, backends: Backends) -> None:
    """Fail fast with a clear message when the database or Vault cannot be reached."""
    await probe(backends.database_url, settings.database_timeout_seconds)
    secrets = backends.secret_store(settings)
    try:
        await secrets.ping_at_start()
    finally:
        await secrets.log_out()
        secrets.close()


async def open_service(settings: Settings, backends: Backends, *, metrics: Metrics | None = None) -> Service:
    await migrate.upgrade(backends.database_url)
    service = Service(settings, backends, metrics=metrics)
    await service.start()
    return service
