"""secrets/transport.py's session, against a scripted HTTP/1.1 server on loopback (OpenBao itself is
behind it in tests/integration/test_vault_store.py)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certificates import self_signed
from scripted_http import LIMIT, OK_JSON, Scripted, scripted_servers
from webhookd.secrets.transport import TransportError, VaultSession


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    with scripted_servers() as start:
        yield start


def test_a_json_request_carries_its_headers_query_and_body_and_reads_the_answer(serve: Callable[..., str]) -> None:
    server = Scripted([(OK_JSON, False)])
    base = serve(server)

    response = VaultSession().request(
        "post", f"{base}/v1/secret/data/a", headers={"X-Vault-Token": "t0k"}, params={"list": "true"}, json={"k": "v"}
    )

    assert (response.status_code, response.ok, response.json()) == (200, True, {"a": True})
    assert response.headers.get("content-type") == response.headers["Content-Type"] == "application/json"
    head = server.seen[0].head.split("\r\n")
    assert head[0] == "POST /v1/secret/data/a?list=true HTTP/1.1"
    assert {"X-Vault-Token: t0k", "Content-Type: application/json", "Content-Length: 9"} <= set(head[1:])
    assert server.seen[0].body == b'{"k":"v"}'


def test_one_connection_carries_request_after_request(serve: Callable[..., str]) -> None:
    server = Scripted([(OK_JSON, False)] * 3)
    session, base = VaultSession(), serve(server)

    statuses = [session.request("LIST", f"{base}/v1/secret/metadata/x").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert [seen.connection for seen in server.seen] == [1, 1, 1]
    assert server.seen[0].head.startswith("LIST /v1/secret/metadata/x HTTP/1.1")


def test_a_connection_the_server_closed_between_requests_is_replaced(serve: Callable[..., str]) -> None:
    # No "Connection: close": the server just hangs up after answering, as an idle timeout does.
    server = Scripted([(OK_JSON, True), (OK_JSON, False)])
    session, base = VaultSession(), serve(server)
    session.request("GET", f"{base}/v1/a")
    assert server.closed.wait(LIMIT)

    response = session.request("GET", f"{base}/v1/b")

    assert response.status_code == 200
    assert [seen.connection for seen in server.seen] == [1, 2]


def test_connection_close_is_honoured(serve: Callable[..., str]) -> None:
    answer = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    server = Scripted([(answer, False), (OK_JSON, False)])
    session, base = VaultSession(), serve(server)

    first = session.request("DELETE", f"{base}/v1/a")
    second = session.request("GET", f"{base}/v1/b")

    assert (first.status_code, first.content, second.status_code) == (204, b"", 200)
    assert [seen.connection for seen in server.seen] == [1, 2]


def test_chunked_and_close_delimited_bodies_are_read_whole(serve: Callable[..., str]) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n5\r\n: 1}\n\r\n0\r\n\r\n'
    unframed = b'HTTP/1.1 200 OK\r\n\r\n{"b": 2}'
    server = Scripted([(chunked, False), (unframed, True)])
    session, base = VaultSession(), serve(server)

    assert session.request("GET", f"{base}/v1/a").json() == {"a": 1}
    assert session.request("GET", f"{base}/v1/b").json() == {"b": 2}


def test_a_head_response_has_no_body_whatever_its_length_says(serve: Callable[..., str]) -> None:
    server = Scripted([(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", False), (OK_JSON, False)])
    session, base = VaultSession(), serve(server)

    head = session.request("HEAD", f"{base}/v1/sys/health", timeout=LIMIT)

    assert (head.status_code, head.content) == (200, b"")
    assert session.request("GET", f"{base}/v1/b").json() == {"a": True}
    assert [seen.connection for seen in server.seen] == [1, 1]


def test_a_response_cut_short_is_an_error_and_the_next_request_reconnects(serve: Callable[..., str]) -> None:
    server = Scripted([(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a"', True), (OK_JSON, False)])
    session, base = VaultSession(), serve(server)

    with pytest.raises(TransportError, match="before the response was complete"):
        session.request("GET", f"{base}/v1/a")

    assert session.request("GET", f"{base}/v1/b").status_code == 200
    assert [seen.connection for seen in server.seen] == [1, 2]


def test_a_malformed_response_is_an_error(serve: Callable[..., str]) -> None:
    server = Scripted([(b"HTTQ/9 nonsense\r\n\r\n", True)])

    with pytest.raises(TransportError, match="malformed"):
        VaultSession().request("GET", f"{serve(server)}/v1/a")


def test_no_answer_in_time_is_a_timeout(serve: Callable[..., str]) -> None:
    # Nothing comes back, and the connection stays open waiting for a second request.
    server = Scripted([(b"", False), (OK_JSON, False)])

    with pytest.raises(TimeoutError):
        VaultSession().request("GET", f"{serve(server)}/v1/slow", timeout=0.2)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(serve: Callable[..., str]) -> None:
    server = Scripted([(OK_JSON, False)])
    session, base = VaultSession(), serve(server)

    with pytest.raises(TransportError, match="not one line"):
        session.request("GET", f"{base}/v1/a", headers={"X-Vault-Token": "t\r\nX-Evil: 1"})

    session.request("GET", f"{base}/v1/b")
    assert [seen.head.split("\r\n")[0] for seen in server.seen] == ["GET /v1/b HTTP/1.1"]


def _certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = self_signed("vault test")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate)
    key_path.write_bytes(key)
    return cert_path, key_path


def _tls(context: ssl.SSLContext) -> Callable[[socket.socket], socket.socket | None]:
    """The server's side of TLS; None for a handshake that failed (the client refused our certificate,
    or offered none where one is required)."""

    def wrap(sock: socket.socket) -> socket.socket | None:
        try:
            return context.wrap_socket(sock, server_side=True)
        except OSError:  # ssl.SSLError is one
            return None

    return wrap


def test_tls_follows_the_verify_setting_hvac_passes(serve: Callable[..., str], tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    server = Scripted([(OK_JSON, False), (OK_JSON, False)], wrap=_tls(context))
    base = serve(server, "https")

    with pytest.raises(ssl.SSLCertVerificationError):
        VaultSession().request("GET", f"{base}/v1/a", verify=True)
    assert VaultSession().request("GET", f"{base}/v1/a", verify=str(cert)).json() == {"a": True}
    assert VaultSession().request("GET", f"{base}/v1/b", verify=False).json() == {"a": True}


def test_a_client_certificate_is_presented_when_hvac_passes_one(serve: Callable[..., str], tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED  # and the client's must chain to this one (it is its own CA)
    context.load_verify_locations(cert)

    server = Scripted([(OK_JSON, False)], wrap=_tls(context))
    base = serve(server, "https")

    with pytest.raises(OSError):  # refused by the server, however TLS 1.3 reports it to the client
        VaultSession().request("GET", f"{base}/v1/a", verify=str(cert), timeout=LIMIT)
    response = VaultSession().request("GET", f"{base}/v1/a", verify=str(cert), cert=(str(cert), str(key)))
    assert response.json() == {"a": True}
