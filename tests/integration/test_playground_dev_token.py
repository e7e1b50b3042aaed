"""The dev token of a gateway as `webhookd dev` runs it (a real HTTP server on loopback) is given only to
requests that name the address it listens on: a DNS-rebound name gets nothing."""

from __future__ import annotations

import httpx

from webhookd.app import Gateway


async def test_dev_token_only_for_the_listening_address(settings, service) -> None:
    running = Gateway(settings, service.local_channel(), dev_token=lambda: "dev.token.value")
    await running.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}", timeout=10) as http:
            given = await http.get("/playground/dev-token")
            by_name = await http.get("/playground/dev-token", headers={"Host": f"localhost:{running.port}"})
            rebound = await http.get("/playground/dev-token", headers={"Host": "rebind.attacker.example"})
            other_port = await http.get("/playground/dev-token", headers={"Host": "127.0.0.1:1"})
    finally:
        await running.stop()

    assert given.status_code == by_name.status_code == 200
    assert given.json() == {"token": "dev.token.value"}
    assert rebound.status_code == other_port.status_code == 403
    assert "dev.token.value" not in rebound.text
