"""What hvac sends its requests through: the part of `requests.Session` its adapter uses, on one
kept-alive HTTP/1.1 connection, its responses parsed by httptools (llhttp, as uvicorn uses it).

hvac stays the Vault client (paths, headers, error mapping); only the HTTP underneath changes.
Measured per KV v2 write against the embedded OpenBao, CPU of the calling process: requests about
900 µs, urllib3 420-470 µs, this 145 µs, that CPU taken from the event loop's thread by the GIL.
A Create's write goes out from the event loop instead (secrets/loop_transport.py, which reads its
response with this module's parser). What a Vault client needs and no more: no proxies
(Vault is reached directly), no redirects followed (as before: a 3xx comes back to hvac), no
compression.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import httptools

USER_AGENT = "webhookd"
_READ_SIZE = 65536
# (scheme, host, port, verify, cert): a connection is reused only for the same server and TLS settings.
TransportKey = tuple[str, str, int, bool | str | None, tuple[str, str] | str | None]


class TransportError(OSError):
    """The request could not be sent or its response not read in full (an OSError, as socket's are)."""


class Headers(dict[str, str]):
    """Response headers, looked up whatever their case (hvac asks for "Content-Type")."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class Response:
    """The part of `requests.Response` hvac reads."""

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Reading:
    """httptools' callbacks, collecting one response."""

    def __init__(self, *, head: bool) -> None:
        self.head = head
        self.parser = httptools.HttpResponseParser(self)
        self.headers = Headers()
        self.body: list[bytes] = []
        self.headers_done = False
        self.keep_alive = False
        self.status = 0
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked here: once the message is complete the parser has reset for the next one.
        self.keep_alive = self.parser.should_keep_alive()
        self.status = self.parser.get_status_code()
        # A HEAD response's length is the body a GET would have had; none follows.
        self.done = self.head

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def ends_at_close(self) -> bool:
        """A response framed by neither length nor chunks ends where the server closes."""
        return self.headers_done and "content-length" not in self.headers and "transfer-encoding" not in self.headers


class VaultSession:
    """One connection at a time: each of a store's threads has its own session (and hvac client)."""

    # Left unset so hvac passes its own TLS settings (VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT…)
    # with each request.
    verify: bool | str | None = None
    cert: tuple[str, str] | None = None
    proxies: Mapping[str, str] | None = None

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._key: TransportKey | None = None
        self._tls: dict[tuple[bool | str | None, tuple[str, str] | str | None], ssl.SSLContext] = {}

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
        timeout: float | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | str | None = None,
        verify: bool | str | None = True,
        cert: tuple[str, str] | str | None = None,
        **_: Any,  # proxies: Vault is reached directly
    ) -> Response:
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not target.hostname:
            raise TransportError(f"not an http(s) URL: {target.scheme}://{target.hostname or ''}")
        body = encode_body(json, data)
        sent_headers = dict(headers or {})
        if json is not None:
            sent_headers["Content-Type"] = "application/json"
        query = "&".join(part for part in (target.query, urlencode(params or {})) if part)
        path = (target.path or "/") + (f"?{query}" if query else "")
        message = request_bytes(method, path, target.netloc, sent_headers, body)
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self._connection(target, verify, cert, deadline)
        try:
            return self._exchange(sock, message, deadline, head=method.upper() == "HEAD")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock, self._key = self._sock, None, None
            sock.close()

    def _connection(
        self, target: SplitResult, verify: bool | str | None, cert: tuple[str, str] | str | None, deadline: float | None
    ) -> socket.socket:
        port = target.port or (443 if target.scheme == "https" else 80)
        key: TransportKey = (target.scheme, target.hostname or "", port, verify, cert)
        if self._sock is not None and (self._key != key or dropped(self._sock)):
            self.close()
        if self._sock is None:
            sock = socket.create_connection((key[1], port), timeout=_remaining(deadline))
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if target.scheme == "https":
                    sock = self._tls_context(verify, cert).wrap_socket(sock, server_hostname=key[1])
            except BaseException:
                sock.close()
                raise
            self._sock, self._key = sock, key
        return self._sock

    def _tls_context(self, verify: bool | str | None, cert: tuple[str, str] | str | None) -> ssl.SSLContext:
        context = self._tls.get((verify, cert))
        if context is None:
            context = self._tls[(verify, cert)] = new_tls_context(verify, cert)
        return context

    def _exchange(self, sock: socket.socket, message: bytes, deadline: float | None, *, head: bool) -> Response:
        sock.settimeout(_remaining(deadline))
        sock.sendall(message)
        reading = Reading(head=head)
        while not reading.done:
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(_READ_SIZE)
            if not chunk:
                if reading.ends_at_close():
                    self.close()
                    break
                raise TransportError("Vault closed the connection before the response was complete")
            try:
                reading.parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                raise TransportError(f"Vault sent a malformed response: {exc}") from None
        if not reading.keep_alive:
            self.close()
        return Response(reading.status, reading.headers, b"".join(reading.body))


def new_tls_context(verify: bool | str | None, cert: tuple[str, str] | str | None) -> ssl.SSLContext:
    """The TLS settings hvac passes (`verify`: a CA file or folder, or False; `cert`: the client's)."""
    context = ssl.create_default_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        context.load_verify_locations(**{"capath" if os.path.isdir(verify) else "cafile": verify})
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif isinstance(cert, str):
        context.load_cert_chain(cert)
    return context


def encode_body(json_value: Any, data: bytes | str | None) -> bytes:
    if json_value is not None:
        return json.dumps(json_value, separators=(",", ":")).encode()
    if isinstance(data, str):
        return data.encode()
    return data or b""


def request_bytes(method: str, path: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{method.upper()} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    lines.append(f"Content-Length: {len(body)}")
    for name, value in headers.items():
        # A token or namespace with a line break in it would add headers of its own.
        if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
            raise TransportError(f"header {name.splitlines()[0][:40]!r} is not one line")
        lines.append(f"{name}: {value}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def dropped(sock: socket.socket) -> bool:
    """A kept connection with something to read between responses was closed by the server (or is
    out of step): never reuse it, as urllib3 does not."""
    poller = select.poll()  # not select(): a busy server's sockets may be numbered past its 1,024
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("Vault did not answer in time")
    return left
