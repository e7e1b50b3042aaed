"""Tokens checked against an identity provider's JWKS URL (WEBHOOKD_JWT_JWKS_URL), a real HTTP
server on loopback: a key the provider publishes after start-up is accepted without a restart; a
key id it never published is UNAUTHENTICATED and costs it at most one request however often it is
sent; a provider that was down at start-up makes calls UNAVAILABLE until it answers, then they work."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import jwt
import pytest
from aiohttp import web
from cpod.integration.v1 import webhook_service_pb2 as pb
from cpod.integration.v1 import webhook_service_pb2_grpc as rpc
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from support import new_tenant_id
from webhookd import app
from webhookd.app import Backends, open_service
from webhookd.auth import jwks
from webhookd.config import Settings


class Provider:
    """The identity provider's JWKS endpoint, serving the public halves of `published` signing keys."""

    def __init__(self) -> None:
        self.signing_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.published: list[str] = []
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    def new_key(self, kid: str, *, publish: bool = True) -> None:
        self.signing_keys[kid] = ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.published.append(kid)

    def token(self, kid: str, tenant_id: str) -> str:
        claims = {"tenant_id": tenant_id, "exp": int(time.time()) + 600}
        return jwt.encode(claims, self.signing_keys[kid], algorithm="ES256", headers={"kid": kid})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests += 1
        keys = [
            json.loads(ECAlgorithm.to_jwk(self.signing_keys[kid].public_key())) | {"kid": kid, "alg": "ES256"}
            for kid in self.published
        ]
        return web.json_response({"keys": keys})

    async def start(self, port: int = 0) -> None:
        application = web.Application()
        application.router.add_get("/jwks.json", self._jwks)
        self.runner = web.AppRunner(application)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    provider = Provider()
    await provider.start()
    yield provider
    await provider.stop()


Serve = Callable[..., Awaitable[app.Service]]


@pytest.fixture
async def serve(settings: Settings, backends: Backends, own_database: str) -> AsyncIterator[Serve]:
    """Starts the service on its own database, its tokens checked against the JWKS at a URL."""
    started: list[app.Service] = []

    async def serve(url: str, **overrides: Any) -> app.Service:
        own = settings.with_overrides(jwt_secret=None, jwt_jwks_url=url, **overrides)
        service = await open_service(own, Backends(own_database, backends.vault_addr, backends.vault_token))
        started.append(service)
        return service

    yield serve
    for service in started:
        await service.stop()


async def list_webhooks(channel: grpc.aio.Channel, token: str) -> Any:
    stub = rpc.WebhookServiceStub(channel)
    return await stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=(("authorization", f"Bearer {token}"),))


async def test_a_key_published_after_start_up_is_accepted_without_a_restart(provider: Provider, serve: Serve) -> None:
    provider.new_key("2026-11")
    service = await serve(provider.url)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        await list_webhooks(channel, provider.token("2026-11", new_tenant_id()))

        provider.new_key("2026-12")  # the provider rotates: publishes the new key, then signs with it
        await list_webhooks(channel, provider.token("2026-12", new_tenant_id()))
        await list_webhooks(channel, provider.token("2026-11", new_tenant_id()))  # the old one, still published


async def test_a_key_never_published_is_unauthenticated_and_asks_the_provider_at_most_once(
    provider: Provider, serve: Serve
) -> None:
    provider.new_key("real")
    provider.new_key("forged", publish=False)
    service = await serve(provider.url)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        await list_webhooks(channel, provider.token("real", new_tenant_id()))
        before = provider.requests
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_webhooks(channel, provider.token("forged", new_tenant_id()))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert refused.value.details() == "the configured JWKS holds no ES256 key with the token's key id"
        assert provider.requests - before <= 1


async def test_a_token_accepted_with_a_key_the_provider_then_drops_is_refused_after_the_refresh(
    provider: Provider, serve: Serve
) -> None:
    """Accepted tokens are remembered until they expire; a key dropped from the JWKS must not keep
    them accepted for the hours they may still run."""
    provider.new_key("retiring")
    provider.new_key("current")
    service = await serve(provider.url, jwt_jwks_refresh_seconds=0.2)
    token = provider.token("retiring", new_tenant_id())
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        await list_webhooks(channel, token)
        provider.published.remove("retiring")

        deadline = time.monotonic() + 10
        while True:
            try:
                await list_webhooks(channel, token)
            except grpc.aio.AioRpcError as refused:
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
                break
            assert time.monotonic() < deadline, "the dropped key's token is still accepted"
            await asyncio.sleep(0.05)
        await list_webhooks(channel, provider.token("current", new_tenant_id()))


async def test_a_provider_down_at_start_up_gives_unavailable_until_it_answers(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "RELOAD_MIN_SECONDS", 0.2)
    provider = Provider()
    provider.new_key("k1")
    await provider.start()
    port = provider.port
    await provider.stop()  # its port is known, and nothing answers there
    service = await serve(f"http://127.0.0.1:{port}/jwks.json")
    token = provider.token("k1", new_tenant_id())
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await list_webhooks(channel, token)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE

        await provider.start(port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await list_webhooks(channel, token)
                    break
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "calls did not recover"
        finally:
            await provider.stop()


async def test_a_stream_opened_with_a_key_the_provider_then_drops_ends_unauthenticated(
    provider: Provider, serve: Serve
) -> None:
    """Whoever holds a leaked signing key can mint a token that expires in a century: the refresh
    that drops the key must end the streams it opened, not only refuse their next calls."""
    provider.new_key("leaked")
    provider.new_key("current")
    service = await serve(provider.url, jwt_jwks_refresh_seconds=0.2)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        stub = rpc.WebhookServiceStub(channel)
        following = stub.DeliveryLog(
            pb.DeliveryLogRequest(follow=True),
            metadata=(("authorization", f"Bearer {provider.token('leaked', new_tenant_id())}"),),
        )
        # Answered on the same connection after the stream's call was taken: the stream was accepted.
        await list_webhooks(channel, provider.token("leaked", new_tenant_id()))
        provider.published.remove("leaked")

        try:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async with asyncio.timeout(10):  # the bound on a stream that never ends: a failure
                    await following.read()
        finally:
            following.cancel()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, ended.value.details()
        assert "while the stream was open" in (ended.value.details() or "")
