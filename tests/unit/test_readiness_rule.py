"""One readiness rule for both transports: /readyz answers from `Readiness` rounds, and gRPC health
follows the same state, so a dependency /readyz names as down (Vault included) makes the server and
its WebhookService NOT_SERVING, and SERVING again once it answers, with no restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2

from webhookd.api.health import follow_readiness
from webhookd.services.readiness import Readiness

SERVICES = ("", "cpod.integration.v1.WebhookService")
NEVER = 3600.0  # a round interval that never passes in a test: only what the test does wakes the follower
# A bound no fake that answers comes near; only the hanging check's test uses a short one.
BOUND_SECONDS = 10.0


class Dependency:
    """A check that answers as told: None when up, the reason when down; `asked` counts the askings."""

    def __init__(self) -> None:
        self.down: str | None = None
        self.asked = 0
        self.frozen: asyncio.Event | None = None  # when given, answers only once it is set (thawed)

    async def __call__(self) -> str | None:
        self.asked += 1
        if self.frozen is not None:
            await self.frozen.wait()
        return self.down


class Unknown(Exception):
    pass


class CallContext:
    """What Check needs of a call's context: abort, for a service it has no status for yet."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Unknown(code)


async def check(servicer: health.aio.HealthServicer, service: str) -> str:
    """What grpcurl's Check would read (the servicer called directly: no sockets in unit tests)."""
    try:
        response = await servicer.Check(health_pb2.HealthCheckRequest(service=service), CallContext())
    except Unknown:
        return "NOT_FOUND"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def all_say(servicer: health.aio.HealthServicer, status: str) -> bool:
    return all([await check(servicer, service) == status for service in SERVICES])


@contextlib.asynccontextmanager
async def following(
    readiness: Readiness, *, every_seconds: float = NEVER, wake: Callable[[], Awaitable[object]] | None = None
) -> AsyncIterator[health.aio.HealthServicer]:
    """A health servicer with follow_readiness showing `readiness` on it while the block runs."""
    servicer = health.aio.HealthServicer()
    task = asyncio.create_task(
        follow_readiness(servicer, readiness, SERVICES, every_seconds=every_seconds, wake=wake or asyncio.Event().wait)
    )
    try:
        yield servicer
        assert not task.done(), "the follower ended while the test still watched it"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await readiness.close()


async def test_a_readyz_round_that_finds_vault_down_makes_grpc_health_not_serving_then_serving() -> None:
    database, vault = Dependency(), Dependency()
    readiness = Readiness({"database": database, "vault": vault}, timeout_seconds=BOUND_SECONDS)
    async with following(readiness) as servicer:
        await until_async(lambda: all_say(servicer, "SERVING"))

        vault.down = "vault unreachable: ConnectionRefusedError"
        report = await readiness.probe()  # what /readyz does
        assert (report.ready, report.checks) == (
            False,
            {"database": "ok", "vault": "vault unreachable: ConnectionRefusedError"},
        )
        await until_async(lambda: all_say(servicer, "NOT_SERVING"))

        vault.down = None
        assert (await readiness.probe()).ready
        await until_async(lambda: all_say(servicer, "SERVING"))


async def test_an_idle_server_notices_on_its_own_rounds() -> None:
    database, vault = Dependency(), Dependency()
    readiness = Readiness({"database": database, "vault": vault}, timeout_seconds=BOUND_SECONDS)
    async with following(readiness, every_seconds=0.01) as servicer:
        vault.down = "vault unreachable: no answer in time"
        await until_async(lambda: all_say(servicer, "NOT_SERVING"))
        vault.down = None
        await until_async(lambda: all_say(servicer, "SERVING"))


async def test_a_wake_starts_a_round_at_once() -> None:
    """The database's reachability changing (a call found it gone) need not wait for the next round."""
    database, vault = Dependency(), Dependency()
    readiness = Readiness({"database": database, "vault": vault}, timeout_seconds=BOUND_SECONDS)
    woken = asyncio.Event()
    async with following(readiness, wake=woken.wait) as servicer:
        await until_async(lambda: all_say(servicer, "SERVING"))
        database.down = "database unavailable: OperationalError"
        woken.set()
        await until_async(lambda: all_say(servicer, "NOT_SERVING"))


async def test_a_check_that_never_answers_is_not_ready_and_is_not_asked_again_while_it_hangs() -> None:
    """A frozen Vault holds one of its client's threads per question: rounds join the question still
    out instead of asking again."""
    vault = Dependency()
    vault.frozen = asyncio.Event()
    readiness = Readiness({"vault": vault}, timeout_seconds=0.01)
    try:
        first, second = await readiness.probe(), await readiness.probe()
        assert first.checks == second.checks == {"vault": "no answer within 0.01s"}
        assert not readiness.ready
        assert vault.asked == 1
    finally:
        await readiness.close()


async def test_a_check_that_raises_is_a_reason_not_ready_and_health_goes_on_following() -> None:
    """A check's own fault (a bug, an error it did not expect) is one more way of not being ready: it
    must not end the rounds, or gRPC health would stay at its last answer for good."""
    database = Dependency()
    faulty = {"raise": True}

    async def vault() -> str | None:
        if faulty["raise"]:
            raise RuntimeError("unexpected")
        return None

    readiness = Readiness({"database": database, "vault": vault}, timeout_seconds=BOUND_SECONDS)
    async with following(readiness, every_seconds=0.01) as servicer:
        report = await readiness.probe()
        assert (report.ready, report.checks) == (False, {"database": "ok", "vault": "check failed: RuntimeError"})
        await until_async(lambda: all_say(servicer, "NOT_SERVING"))
        faulty["raise"] = False
        await until_async(lambda: all_say(servicer, "SERVING"))


async def until_async(condition: Callable[[], Awaitable[bool]]) -> None:
    """Polls an async condition until true, bounded."""
    for _ in range(2000):
        if await condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 2000 polls")
