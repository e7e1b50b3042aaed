"""Deliveries through the delivery proxy (WEBHOOKD_DELIVERY_PROXY), a real forward proxy (proxy.py)
on loopback, as an operator sets one up for fixed egress addresses: what reaches the receiver goes
through it, with the proxy's credentials, and the SSRF policy still refuses targets before the proxy
is asked to connect."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from ports import closed_port
from proxies import forward_proxy
from receivers import Receiver
from webhookd.delivery.http import HttpSender
from webhookd.delivery.ssrf import TargetPolicy
from webhookd.domain.deliveries import AttemptResult
from webhookd.domain.errors import Unavailable
from webhookd.domain.statuses import Outcome

LOOPBACK = TargetPolicy(allowed_cidrs=["127.0.0.0/8", "::1/128"])
CREDENTIALS = "relay:s3cret-relay"
STALL_TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with forward_proxy(tmp_path_factory.mktemp("proxy"), CREDENTIALS) as address:
        yield address


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    try:
        yield started
    finally:
        await started.stop()


async def send(
    url: str, *, proxy: str | None, policy: TargetPolicy = LOOPBACK, resolver: AbstractResolver | None = None
) -> AttemptResult:
    async with HttpSender(policy, proxy=proxy, resolver=resolver) as sender:
        return await sender.send(url, body=b"{}", headers={}, timeout_ms=STALL_TIMEOUT_MS if resolver else 10_000)


class StalledResolver(AbstractResolver):
    """A DNS server that never answers: each lookup waits until it is cancelled."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


async def test_a_delivery_goes_through_the_proxy_with_its_credentials(proxy: str, receiver: Receiver) -> None:
    delivered = await send(f"http://localhost:{receiver.port}/hook", proxy=f"http://{CREDENTIALS}@{proxy}")

    assert (delivered.outcome, delivered.http_status) == (Outcome.SUCCEEDED, 200)
    assert [request.path for request in receiver.received] == ["/hook"]
    # The attempt log keeps the headers sent to the receiver: the proxy's credentials are not among them.
    assert "proxy-authorization" not in {name.lower() for name, _ in delivered.request_headers}


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_refusing_webhookds_credentials_is_unavailable_not_an_attempt(
    proxy: str, receiver: Receiver, scheme: str
) -> None:
    """The proxy answers 407 (to the request itself for http, to the tunnel's CONNECT for https): the
    receiver was never asked, so this is webhookd's way out failing, not an attempt of the receiver's."""
    with pytest.raises(Unavailable) as refused:
        await send(f"{scheme}://localhost:{receiver.port}/hook", proxy=f"http://relay:wrong@{proxy}")

    assert refused.value.message == "the delivery proxy refused webhookd's credentials (HTTP 407)"
    assert receiver.received == []


async def test_a_tunnel_the_proxy_cannot_open_is_a_connection_error_naming_the_proxy(proxy: str) -> None:
    """Through the proxy, an https receiver that is down is the proxy's answer to the CONNECT."""
    result = await send(f"https://localhost:{closed_port()}/hook", proxy=f"http://{CREDENTIALS}@{proxy}")

    assert (result.outcome, result.http_status) == (Outcome.CONNECTION_ERROR, None)
    assert result.error.startswith("the delivery proxy answered HTTP 5"), result.error


async def test_the_ssrf_policy_refuses_targets_before_the_proxy_connects(proxy: str, receiver: Receiver) -> None:
    """The proxy would connect anywhere: webhookd refuses a forbidden address, as an IP literal or as a
    name that resolves to one (localhost, from /etc/hosts), before asking it to."""
    through = f"http://{CREDENTIALS}@{proxy}"

    by_name = await send(f"http://localhost:{receiver.port}/hook", proxy=through, policy=TargetPolicy())
    by_address = await send(f"http://127.0.0.1:{receiver.port}/hook", proxy=through, policy=TargetPolicy())

    assert (by_name.outcome, by_address.outcome) == (Outcome.REFUSED, Outcome.REFUSED)
    assert "loopback" in by_name.error
    assert receiver.received == []


async def test_a_proxy_that_is_down_is_unavailable_not_an_attempt(receiver: Receiver) -> None:
    with pytest.raises(Unavailable) as down:
        await send(f"http://localhost:{receiver.port}/hook", proxy=f"http://127.0.0.1:{closed_port()}")

    assert down.value.message == "the delivery proxy cannot be reached: connection refused"
    assert receiver.received == []


@pytest.mark.parametrize("through_proxy", [True, False], ids=["through-the-proxy", "direct"])
async def test_a_name_lookup_that_never_answers_times_the_attempt_out(
    proxy: str, receiver: Receiver, through_proxy: bool
) -> None:
    """The attempt's timeout bounds the lookup of the target's name too, whoever looks it up."""
    through = f"http://{CREDENTIALS}@{proxy}" if through_proxy else None

    async with asyncio.timeout(10):  # a lookup left unbounded fails here instead of hanging the suite
        result = await send(f"http://stalled.example:{receiver.port}/hook", proxy=through, resolver=StalledResolver())

    assert (result.outcome, result.error) == (Outcome.TIMED_OUT, f"timed out after {STALL_TIMEOUT_MS} ms")
    assert receiver.received == []
