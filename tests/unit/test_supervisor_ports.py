"""supervisor.py's held ports: gRPC and HTTP never share one, which SO_REUSEPORT would let them do."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from webhookd import app, config, supervisor
from webhookd.runners import StartError


@pytest.fixture
async def ports() -> AsyncIterator[supervisor.Supervisor]:
    """A supervisor that starts nothing but the ports it holds, which its stop closes."""
    held = supervisor.Supervisor(config.load({}), dev=False, environment={})
    yield held
    await held.stop()


def _held_on(port: int) -> tuple[socket.socket, str]:
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind(("127.0.0.1", port))
    return held, f"127.0.0.1:{port}"


def test_a_port_zero_the_kernel_hands_out_twice_is_picked_again(ports, monkeypatch) -> None:
    grpc = ports._hold("WEBHOOKD_GRPC_ADDR", "127.0.0.1:0")
    grpc_port = int(grpc.rpartition(":")[2])
    picks = iter([_held_on(grpc_port), _held_on(0)])  # the gRPC port again first, as the kernel may
    monkeypatch.setattr(supervisor, "_reserve_port", lambda addr: next(picks))

    http = ports._hold("WEBHOOKD_HTTP_ADDR", "127.0.0.1:0")

    assert int(http.rpartition(":")[2]) != grpc_port
    assert next(picks, None) is None  # both picks were used


def test_a_port_named_twice_is_refused_with_both_settings(ports) -> None:
    grpc = ports._hold("WEBHOOKD_GRPC_ADDR", "127.0.0.1:0")

    with pytest.raises(StartError) as refused:
        ports._hold("WEBHOOKD_HTTP_ADDR", grpc)

    assert str(refused.value) == f"cannot listen on {grpc} (WEBHOOKD_HTTP_ADDR): WEBHOOKD_GRPC_ADDR names the same port"


def test_the_same_port_on_another_host_is_not_the_same_port(ports) -> None:
    grpc = ports._hold("WEBHOOKD_GRPC_ADDR", "127.0.0.1:0")

    http = ports._hold("WEBHOOKD_HTTP_ADDR", f"127.0.0.2:{grpc.rpartition(':')[2]}")

    assert http.startswith("127.0.0.2:")


@pytest.mark.parametrize("given", [None, "https://hooks.example.com/in"], ids=["default", "set"])
async def test_children_get_the_public_url_of_the_http_port_drawn(given) -> None:
    environment = {"WEBHOOKD_HTTP_ADDR": "127.0.0.1:0"} | ({"WEBHOOKD_PUBLIC_URL": given} if given else {})
    held = supervisor.Supervisor(config.load(environment), dev=False, environment=environment)
    try:
        held.http_addr = held._hold("WEBHOOKD_HTTP_ADDR", "127.0.0.1:0")
        children = held._child_environment(app.Backends("postgresql://db", "http://vault", "token"))
    finally:
        await held.stop()

    assert not held.http_addr.endswith(":0")
    # Inbound callback URLs are made from it: port 0 would send callers nowhere.
    assert children["WEBHOOKD_PUBLIC_URL"] == (given or f"http://{held.http_addr}")
