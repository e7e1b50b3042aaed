"""secrets/loop_transport.py: hvac's requests sent from the event loop, against a scripted HTTP/1.1
server on loopback (OpenBao itself is behind it in tests/integration/test_vault_store.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import hvac
import hvac.exceptions
import pytest

from scripted_http import LIMIT, OK_JSON, Scripted, scripted_servers
from webhookd.secrets.loop_transport import LoopConnections, Prepared, Request, TwoPassSession
from webhookd.secrets.transport import Headers, Response, TransportError


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    with scripted_servers() as start:
        yield start


def get(base: str, path: str = "/v1/a", timeout: float | None = LIMIT) -> Request:
    return Request("GET", f"{base}{path}", {}, b"", timeout, None, None)


def test_hvac_builds_the_request_and_reads_the_answer_it_is_given() -> None:
    session = TwoPassSession()
    client = hvac.Client(url="http://127.0.0.1:9", token="t0k", namespace="team", session=session)

    def write() -> object:
        return client.secrets.kv.v2.create_or_update_secret(path="a/b", secret={"k": "v"}, cas=0)

    with pytest.raises(Prepared) as prepared:
        write()
    session.answer(response(200, b'{"a": true}'))

    assert write() == {"a": True}
    request = prepared.value.request
    assert (request.method, request.url) == ("POST", "http://127.0.0.1:9/v1/secret/data/a/b")
    assert {"X-Vault-Token": "t0k", "X-Vault-Namespace": "team", "Content-Type": "application/json"}.items() <= (
        request.headers.items()
    )
    assert request.body == b'{"options":{"cas":0},"data":{"k":"v"}}'


def test_a_prepared_request_shows_neither_its_token_nor_its_body() -> None:
    client = hvac.Client(url="http://127.0.0.1:9", token="t0k-secret", session=TwoPassSession())

    with pytest.raises(Prepared) as prepared:
        client.secrets.kv.v2.create_or_update_secret(path="a", secret={"current": "whsec_shh"})

    shown = f"{prepared.value} {prepared.value!r} {prepared.value.request!r}"
    assert "t0k-secret" not in shown and "whsec_shh" not in shown


def test_hvac_maps_an_error_answer_as_it_always_does() -> None:
    session = TwoPassSession()
    client = hvac.Client(url="http://127.0.0.1:9", token="t0k", session=session)
    with pytest.raises(Prepared):
        client.secrets.kv.v2.create_or_update_secret(path="a", secret={"k": "v"})
    session.answer(response(403, b'{"errors":["permission denied"]}'))

    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.create_or_update_secret(path="a", secret={"k": "v"})


async def test_requests_share_one_kept_alive_connection(serve: Callable[..., str]) -> None:
    server = Scripted([(OK_JSON, False)] * 3)
    connections, base = LoopConnections(limit=1), serve(server)

    answers = [(await connections.send(get(base))).json() for _ in range(3)]

    assert answers == [{"a": True}] * 3
    assert [seen.connection for seen in server.seen] == [1, 1, 1]
    assert server.seen[0].head.startswith("GET /v1/a HTTP/1.1")
    connections.close()


async def test_a_connection_the_server_closed_or_asked_to_close_is_replaced(serve: Callable[..., str]) -> None:
    close = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    # The second answer just hangs up after it, as an idle timeout does.
    server = Scripted([(close, False), (OK_JSON, True), (OK_JSON, False)])
    connections, base = LoopConnections(limit=1), serve(server)

    assert (await connections.send(get(base))).status_code == 204
    assert (await connections.send(get(base))).status_code == 200
    assert server.closed.wait(LIMIT)
    assert (await connections.send(get(base))).status_code == 200

    assert [seen.connection for seen in server.seen] == [1, 2, 3]
    connections.close()


async def test_chunked_and_close_delimited_bodies_are_read_whole(serve: Callable[..., str]) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n5\r\n: 1}\n\r\n0\r\n\r\n'
    unframed = b'HTTP/1.1 200 OK\r\n\r\n{"b": 2}'
    server = Scripted([(chunked, False), (unframed, True)])
    connections, base = LoopConnections(limit=1), serve(server)

    assert (await connections.send(get(base))).json() == {"a": 1}
    assert (await connections.send(get(base))).json() == {"b": 2}
    connections.close()


async def test_a_response_cut_short_is_an_error_and_the_next_request_reconnects(serve: Callable[..., str]) -> None:
    server = Scripted([(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a"', True), (OK_JSON, False)])
    connections, base = LoopConnections(limit=1), serve(server)

    with pytest.raises(TransportError, match="before the response was complete"):
        await connections.send(get(base))

    assert (await connections.send(get(base))).status_code == 200
    assert [seen.connection for seen in server.seen] == [1, 2]
    connections.close()


async def test_a_malformed_response_is_an_error(serve: Callable[..., str]) -> None:
    server = Scripted([(b"HTTQ/9 nonsense\r\n\r\n", True)])
    connections = LoopConnections(limit=1)

    with pytest.raises(TransportError, match="malformed"):
        await connections.send(get(serve(server)))
    connections.close()


async def test_no_answer_in_time_is_a_timeout_and_its_connection_is_not_kept(serve: Callable[..., str]) -> None:
    # Nothing comes back to the first request; an answer to it arriving late must not be taken for
    # the second's.
    server = Scripted([(b"", False), (OK_JSON, False)])
    connections, base = LoopConnections(limit=1), serve(server)

    with pytest.raises(TimeoutError):
        await connections.send(get(base, timeout=0.2))

    assert (await connections.send(get(base, "/v1/b"))).status_code == 200
    assert [seen.connection for seen in server.seen] == [1, 2]
    connections.close()


def response(status: int, body: bytes) -> Response:
    return Response(status, Headers({"content-type": "application/json"}), body)
