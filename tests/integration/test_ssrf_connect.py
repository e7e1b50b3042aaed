"""The SSRF guard against real sockets: a loopback aiohttp server, clients with the guarded connector.

Traffic goes only to 127.0.0.1; `localhost` resolves from /etc/hosts, no external DNS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from webhookd.delivery.ssrf import (
    GuardedResolver,
    TargetPolicy,
    find_refusal,
    guarded_connector,
)


@dataclass
class LoopbackServer:
    port: int
    hits: list[str] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    hits: list[str] = []

    async def receive(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path == "/redirect":
            raise web.HTTPFound(request.query["to"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield LoopbackServer(port=port, hits=hits)
    finally:
        await runner.cleanup()


async def _post(policy: TargetPolicy, url: str) -> int:
    async with (
        aiohttp.ClientSession(connector=guarded_connector(policy)) as session,
        session.post(url, data=b"{}", allow_redirects=False) as response,
    ):
        return response.status


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
    ],
)
async def test_default_policy_refuses_loopback_targets(server: LoopbackServer, url: str) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await _post(TargetPolicy(), url.format(port=server.port))
    refusal = find_refusal(caught.value)
    assert refusal is not None
    assert refusal.reason == "loopback"
    assert server.hits == []


@pytest.mark.parametrize(
    "policy",
    [TargetPolicy(allow_private=True), TargetPolicy(allowed_cidrs=["127.0.0.0/8"])],
    ids=["allow_private", "allowed_cidr"],
)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_permissive_policies_reach_the_loopback_server(
    server: LoopbackServer, policy: TargetPolicy, host: str
) -> None:
    assert await _post(policy, f"http://{host}:{server.port}/hook") == 200
    assert server.hits == ["/hook"]


async def test_a_redirect_to_a_forbidden_address_is_refused(server: LoopbackServer) -> None:
    # Only 127.0.0.1 is allowed; the receiver redirects to 127.0.0.2. Every hop's socket is checked.
    policy = TargetPolicy(allowed_cidrs=["127.0.0.1/32"])
    url = f"http://127.0.0.1:{server.port}/redirect?to=http://127.0.0.2:{server.port}/hook"
    async with aiohttp.ClientSession(connector=guarded_connector(policy)) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(url, allow_redirects=True)
    refusal = find_refusal(caught.value)
    assert refusal is not None and refusal.reason == "loopback"
    assert server.hits == ["/redirect"]


async def test_aiohttp_skips_the_resolver_for_ip_literals(server: LoopbackServer) -> None:
    # Why guarded_connector also installs a socket factory: a resolver alone never sees `127.0.0.1`.
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(TargetPolicy()))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://127.0.0.1:{server.port}/unguarded") as response,
    ):
        assert response.status == 200
    assert server.hits == ["/unguarded"]
