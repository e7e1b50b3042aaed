"""OpenBao or PostgreSQL stopped (SIGSTOP), or the server process killed (SIGKILL), while a
RotateWebhookSecret or SetWebhookCredential holds its webhook's secret change lease (migration 0018),
under `webhookd serve`.

The call ends UNAVAILABLE (never a hang); its lease is given back, or lapses (a dead holder's); once the
dependency is back a change goes ahead with no restart. What the caller was told failed changes nothing
deliveries carry, even when OpenBao carries out the record write it had been sent after the call gave
up (a frozen one does on resuming while the connection that sent it is still open: `VaultGate` keeps it
open, as a proxy or a slow network may). Deliveries are checked with the `standardwebhooks` library, or
for the credential header.

`VaultGate` passes every request through to OpenBao, and runs a fault (a freeze, a kill) as the write of
one webhook's secret record arrives, before passing that write on: the fault strikes between the
change's read of the record and its write, or between its write and its row's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import grpc
import psutil
import pytest
from aiohttp import web
from backends import FaultyOpenBao, FaultyPostgres, in_thread
from cpod.integration.v1 import webhook_pb2 as wpb
from cpod.integration.v1 import webhook_service_pb2 as pb
from google.protobuf import duration_pb2, struct_pb2
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from harness import CALL_DEADLINE_SECONDS, Calls, FaultBackends, Serving, readyz, record, serving, until
from receivers import Received, Receiver
from support import AuthedStub, Database, make_caller
from webhookd.domain.fingerprints import fingerprint
from webhookd.secrets.vault import VaultSecretStore

pytestmark = pytest.mark.slow
# A change retried once the dependency is back: it may meet the outage's end, or the lease lapsing.
RETRY_WITHIN = 60.0
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class VaultGate:
    """A pass-through HTTP proxy in front of OpenBao. `arm(webhook_id, fault)`: the next write of that
    webhook's secret record runs `fault` first, then goes on to OpenBao over a connection kept open
    until it answers, whatever the caller does meanwhile."""

    upstream: str
    url: str = ""
    struck: asyncio.Event = field(default_factory=asyncio.Event)
    write_answered: asyncio.Event = field(default_factory=asyncio.Event)
    write_status: int = 0
    _armed: tuple[str, Callable[[], Awaitable[None]]] | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _passing: set[asyncio.Task[web.Response]] = field(default_factory=set)

    def arm(self, webhook_id: str, fault: Callable[[], Awaitable[None]]) -> None:
        self._armed = (webhook_id, fault)
        self.struck.clear()
        self.write_answered.clear()

    async def start(self) -> VaultGate:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_DEADLINE_SECONDS * 4))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await asyncio.gather(*self._passing, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _pass(self, request: web.Request) -> web.Response:
        body = await request.read()
        armed, is_write = self._armed, request.method in ("POST", "PUT") and "/data/" in request.path
        gated = armed is not None and is_write and armed[0] in request.path
        passing = asyncio.ensure_future(self._through(request, body, armed[1] if gated and armed else None))
        self._passing.add(passing)
        passing.add_done_callback(self._passing.discard)
        return await asyncio.shield(passing)  # a caller that gives up does not cut the write short

    async def _through(
        self, request: web.Request, body: bytes, fault: Callable[[], Awaitable[None]] | None
    ) -> web.Response:
        if fault is not None:
            self._armed = None
            await fault()
            self.struck.set()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            content = await answer.read()
        if fault is not None:
            self.write_status = answer.status
            self.write_answered.set()
        return web.Response(status=answer.status, body=content, content_type=answer.content_type)


@pytest.fixture(scope="module")
async def gate(fault_backends: FaultBackends) -> AsyncIterator[VaultGate]:
    started = await VaultGate(fault_backends.vault_addr).start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture(scope="module")
async def service(fault_backends: FaultBackends, gate: VaultGate) -> AsyncIterator[Serving]:
    async with serving(fault_backends, "secret-change-faults", VAULT_ADDR=gate.url) as running:
        yield running


@pytest.fixture
async def database(fault_backends: FaultBackends) -> AsyncIterator[Database]:
    opened = Database(fault_backends.database_url)
    try:
        yield opened
    finally:
        await opened.close()


def verifies(secret: str, delivered: Received) -> bool:
    try:
        StandardWebhook(secret).verify(delivered.body, delivered.headers)
    except WebhookVerificationError:
        return False
    return True


async def create(caller: AuthedStub, receiver: Receiver, name: str) -> pb.CreateWebhookResponse:
    request = pb.CreateWebhookRequest(webhook=wpb.Webhook(name=name, url=f"{receiver.url}/{name}"))
    created: pb.CreateWebhookResponse = await caller.CreateWebhook(request, timeout=CALL_DEADLINE_SECONDS)
    return created


async def once_ok(call: Callable[[], Awaitable[object]], what: str) -> object:
    """`call` until it answers OK (ABORTED while a lease lapses, UNAVAILABLE while an outage ends)."""
    tries = Calls()
    answered: list[object] = []

    async def ok() -> bool:
        result = await tries.make(call)
        if result is not None:
            answered.append(result)
        return result is not None

    await until(ok, what, within=RETRY_WITHIN)
    assert set(tries.codes()) <= {"OK", "ABORTED", "UNAVAILABLE"}, tries.codes()
    return answered[0]


async def delivered_to(caller: AuthedStub, receiver: Receiver, webhook_id: str, name: str) -> Received:
    """Publishes one event to the webhook and returns its delivery."""
    payload = struct_pb2.Struct()
    payload.update({"n": 0})
    request = pb.PublishEventRequest(event_type="secret.fault", payload=payload, webhook_id=webhook_id)
    await once_ok(lambda: caller.PublishEvent(request, timeout=CALL_DEADLINE_SECONDS), "a publish")
    path = f"/hook/{name}"
    await until(lambda: any(r.path == path for r in receiver.received), f"a delivery to {name}")
    [delivered] = [r for r in receiver.received if r.path == path]
    receiver.received.remove(delivered)
    return delivered


async def lease_of(database: Database, webhook_id: str) -> dict[str, object]:
    [row] = await database.rows(
        "SELECT secret_change_token, secret_fingerprint, credential_id FROM webhooks WHERE id = :id", id=webhook_id
    )
    return dict(row)


async def vault_record(backends: FaultBackends, database: Database, webhook_id: str) -> dict[str, str]:
    path = await database.value("SELECT vault_path FROM webhooks WHERE id = :id", id=webhook_id)
    vault = VaultSecretStore(backends.vault_addr, backends.vault_token)
    try:
        return await vault.read(path)
    finally:
        vault.close()


def rotation(webhook_id: str, overlap_seconds: int | None) -> pb.RotateWebhookSecretRequest:
    if overlap_seconds is None:
        return pb.RotateWebhookSecretRequest(id=webhook_id)
    return pb.RotateWebhookSecretRequest(id=webhook_id, overlap=duration_pb2.Duration(seconds=overlap_seconds))


async def frozen_at_its_write(
    gate: VaultGate, process: FaultyPostgres | FaultyOpenBao, webhook_id: str, call: Callable[[], Awaitable[object]]
) -> Calls:
    """`call`, with `process` frozen when the webhook's secret-record write reaches the gate, and thawed
    once the call has answered."""
    gate.arm(webhook_id, lambda: in_thread(process.freeze))
    during = Calls()
    try:
        await during.make(call)
    finally:
        await in_thread(process.thaw)
    return during


async def delivered_rotated_delivered(
    caller: AuthedStub, receiver: Receiver, webhook_id: str, name: str, overlap_seconds: int | None
) -> tuple[Received, pb.RotateWebhookSecretResponse, Received]:
    """A delivery after the fault, a rotation once one succeeds, and a delivery after it."""
    first = await delivered_to(caller, receiver, webhook_id, name)
    rotated = await once_ok(lambda: caller.RotateWebhookSecret(rotation(webhook_id, overlap_seconds)), "a rotation")
    assert isinstance(rotated, pb.RotateWebhookSecretResponse)
    second = await delivered_to(caller, receiver, webhook_id, name)
    return first, rotated, second


async def row_and_record(
    backends: FaultBackends, database: Database, webhook_id: str
) -> tuple[dict[str, object], dict[str, str]]:
    """The webhook's row (its lease and fingerprint) and its secret record in Vault."""
    return await lease_of(database, webhook_id), await vault_record(backends, database, webhook_id)


@pytest.mark.parametrize("overlap_seconds", [0, None])
async def test_a_rotation_whose_write_openbao_carries_out_after_answering_unavailable_changes_no_signature(
    fault_backends: FaultBackends,
    gate: VaultGate,
    service: Serving,
    receiver: Receiver,
    database: Database,
    overlap_seconds: int | None,
) -> None:
    openbao = fault_backends.openbao
    name = f"rotate-{overlap_seconds}"
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        created = await create(caller, receiver, name)
        webhook_id = created.webhook.id

        during = await frozen_at_its_write(
            gate, openbao, webhook_id, lambda: caller.RotateWebhookSecret(rotation(webhook_id, overlap_seconds))
        )
        assert gate.struck.is_set(), "the rotation never wrote the record"
        await asyncio.wait_for(gate.write_answered.wait(), CALL_DEADLINE_SECONDS)  # OpenBao carried it out
        after_call = await lease_of(database, webhook_id)

        first, rotated, second = await delivered_rotated_delivered(caller, receiver, webhook_id, name, overlap_seconds)
    row, stored = await row_and_record(fault_backends, database, webhook_id)

    record(
        f"openbao SIGSTOP at a rotation's write (overlap {overlap_seconds})",
        time_to_unavailable_s=during.outcomes[0].seconds,
        late_write_status=gate.write_status,
    )
    assert during.codes() == {"UNAVAILABLE": 1} and during.outcomes[0].retry_info
    assert after_call["secret_change_token"] is None  # given back, not left to lapse
    assert after_call["secret_fingerprint"] == created.webhook.secret_fingerprint
    assert verifies(created.signing_secret, first), "the secret the caller holds no longer verifies"
    assert verifies(rotated.signing_secret, second)
    assert row["secret_fingerprint"] == fingerprint(rotated.signing_secret) == fingerprint(stored["current"])


async def test_a_credential_whose_write_openbao_carries_out_after_answering_unavailable_changes_no_delivery(
    fault_backends: FaultBackends, gate: VaultGate, service: Serving, receiver: Receiver, database: Database
) -> None:
    openbao = fault_backends.openbao
    name = "credential"

    def credential(value: str) -> Callable[[], Awaitable[object]]:
        request = pb.SetWebhookCredentialRequest(id=webhook_id, header_name="Authorization", header_value=value)
        return lambda: caller.SetWebhookCredential(request, timeout=CALL_DEADLINE_SECONDS)

    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        webhook_id = (await create(caller, receiver, name)).webhook.id
        await credential("Bearer first")()

        during = await frozen_at_its_write(gate, openbao, webhook_id, credential("Bearer second"))
        assert gate.struck.is_set(), "the change never wrote the record"
        await asyncio.wait_for(gate.write_answered.wait(), CALL_DEADLINE_SECONDS)
        after_call = await lease_of(database, webhook_id)

        first = await delivered_to(caller, receiver, webhook_id, name)
        await once_ok(credential("Bearer third"), "a credential change")
        second = await delivered_to(caller, receiver, webhook_id, name)

    record(
        "openbao SIGSTOP at a credential's write",
        time_to_unavailable_s=during.outcomes[0].seconds,
        late_write_status=gate.write_status,
    )
    assert during.codes() == {"UNAVAILABLE": 1} and during.outcomes[0].retry_info
    assert after_call["secret_change_token"] is None
    assert first.headers.get("Authorization") == "Bearer first", "the credential the row names is not sent"
    assert second.headers.get("Authorization") == "Bearer third"


async def test_a_rotation_whose_commit_postgres_does_not_answer_hands_out_nothing_and_the_lease_lapses(
    fault_backends: FaultBackends, gate: VaultGate, service: Serving, receiver: Receiver, database: Database
) -> None:
    postgres = fault_backends.postgres
    name = "rotate-commit"
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        created = await create(caller, receiver, name)
        webhook_id = created.webhook.id

        during = await frozen_at_its_write(
            gate, postgres, webhook_id, lambda: caller.RotateWebhookSecret(rotation(webhook_id, None))
        )
        assert gate.struck.is_set(), "the rotation never wrote the record"

        first, rotated, second = await delivered_rotated_delivered(caller, receiver, webhook_id, name, None)
    row, stored = await row_and_record(fault_backends, database, webhook_id)

    record("postgres SIGSTOP at a rotation's commit", time_to_unavailable_s=during.outcomes[0].seconds)
    assert during.codes() == {"UNAVAILABLE": 1} and during.outcomes[0].retry_info
    assert verifies(created.signing_secret, first)
    assert verifies(rotated.signing_secret, second) and verifies(created.signing_secret, second)  # the overlap
    assert row["secret_change_token"] is None
    assert row["secret_fingerprint"] == fingerprint(rotated.signing_secret) == fingerprint(stored["current"])


def server_child(serving_: Serving) -> psutil.Process:
    """The one `webhookd server` process under `webhookd serve`."""
    [child] = [
        child
        for child in psutil.Process(serving_.process.pid).children(recursive=True)
        if "server" in child.cmdline()[1:]
    ]
    return child


@pytest.mark.parametrize("overlap_seconds", [0, None])
async def test_a_server_killed_mid_rotation_hands_out_nothing_that_does_not_sign_and_its_lease_lapses(
    fault_backends: FaultBackends,
    gate: VaultGate,
    service: Serving,
    receiver: Receiver,
    database: Database,
    overlap_seconds: int | None,
) -> None:
    """The server process holding the lease dies between its Vault write (which OpenBao carries out) and
    its row's commit: nobody releases the lease, and nobody was handed the new secret."""
    name = f"rotate-killed-{overlap_seconds}"
    killed = server_child(service)

    async def kill_the_server() -> None:
        killed.kill()
        await in_thread(killed.wait, 10)

    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        created = await create(caller, receiver, name)
        webhook_id = created.webhook.id

        gate.arm(webhook_id, kill_the_server)
        during = Calls()
        await during.make(lambda: caller.RotateWebhookSecret(rotation(webhook_id, overlap_seconds)))
        await asyncio.wait_for(gate.write_answered.wait(), CALL_DEADLINE_SECONDS)
        left = await lease_of(database, webhook_id)

        first, rotated, second = await delivered_rotated_delivered(caller, receiver, webhook_id, name, overlap_seconds)
    row, stored = await row_and_record(fault_backends, database, webhook_id)

    record(
        f"server SIGKILL mid-rotation (overlap {overlap_seconds})",
        call=during.outcomes[0].code,
        late_write_status=gate.write_status,
    )
    assert during.codes() == {"UNAVAILABLE": 1}
    assert left["secret_change_token"] is not None  # the dead holder's, until it lapses
    assert left["secret_fingerprint"] == created.webhook.secret_fingerprint
    assert verifies(created.signing_secret, first), "the secret the caller holds no longer verifies"
    assert verifies(rotated.signing_secret, second)
    assert row["secret_change_token"] is None
    assert row["secret_fingerprint"] == fingerprint(rotated.signing_secret) == fingerprint(stored["current"])


async def test_a_rotation_and_a_credential_while_openbao_is_frozen_end_unavailable_and_give_the_lease_back(
    fault_backends: FaultBackends, service: Serving, receiver: Receiver, database: Database
) -> None:
    openbao = fault_backends.openbao
    name = "frozen-before-read"
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        caller = make_caller(channel, subject="person_1")
        created = await create(caller, receiver, name)
        webhook_id = created.webhook.id
        credential = pb.SetWebhookCredentialRequest(id=webhook_id, header_name="Authorization", header_value="Bearer x")

        await in_thread(openbao.freeze)
        during = Calls()
        try:
            await during.make(lambda: caller.RotateWebhookSecret(rotation(webhook_id, 0)))
            await during.make(lambda: caller.SetWebhookCredential(credential, timeout=CALL_DEADLINE_SECONDS))
            left = await lease_of(database, webhook_id)
            ready_status, _ = await readyz(service.http_url)
        finally:
            await in_thread(openbao.thaw)

        rotated = await once_ok(lambda: caller.RotateWebhookSecret(rotation(webhook_id, 0)), "a rotation")
        assert isinstance(rotated, pb.RotateWebhookSecretResponse)
        await once_ok(lambda: caller.SetWebhookCredential(credential, timeout=CALL_DEADLINE_SECONDS), "a credential")
        delivered = await delivered_to(caller, receiver, webhook_id, name)

    record(
        "openbao SIGSTOP before a rotation and a credential change",
        slowest_failed_call_s=max(outcome.seconds for outcome in during.outcomes),
    )
    assert during.codes() == {"UNAVAILABLE": 2} and all(outcome.retry_info for outcome in during.outcomes)
    assert left["secret_change_token"] is None
    assert ready_status == 503
    assert verifies(rotated.signing_secret, delivered) and not verifies(created.signing_secret, delivered)
    assert delivered.headers.get("Authorization") == "Bearer x"
