"""A scripted HTTP/1.1 server on loopback, for the Vault transports' tests (the blocking one of
secrets/transport.py and the event loop's of secrets/loop_transport.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

OK_JSON = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": true}'
LIMIT = 10.0


@dataclass
class Seen:
    connection: int
    head: str
    body: bytes


@dataclass
class Scripted:
    """Answers the n-th request with answers[n] (bytes, then whether to close the connection after)."""

    answers: list[tuple[bytes, bool]]
    wrap: Callable[[socket.socket], socket.socket | None] = lambda sock: sock
    seen: list[Seen] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def serve(self, listener: socket.socket) -> None:
        connections = 0
        while len(self.seen) < len(self.answers):
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            connections += 1
            conn = self.wrap(raw)
            if conn is None:
                raw.close()
                continue
            with conn:
                conn.settimeout(LIMIT)
                with contextlib.suppress(OSError):  # the client hung up: wait for its next connection
                    self._answer(conn, connections)

    def _answer(self, conn: socket.socket, connection: int) -> None:
        buffered = b""
        while len(self.seen) < len(self.answers):
            while b"\r\n\r\n" not in buffered:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
            while len(buffered) < length:
                buffered += conn.recv(65536)
            self.seen.append(Seen(connection, head.decode("latin-1"), buffered[:length]))
            buffered = buffered[length:]
            answer, close = self.answers[len(self.seen) - 1]
            conn.sendall(answer)
            if close:
                conn.shutdown(socket.SHUT_RDWR)
                self.closed.set()
                return


@contextlib.contextmanager
def scripted_servers() -> Iterator[Callable[..., str]]:
    """Starts scripted servers (`start(server, scheme)` gives each one's base URL); stops them at the end."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(server: Scripted, scheme: str = "http") -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        thread = threading.Thread(target=server.serve, args=(listener,), daemon=True)
        thread.start()
        threads.append(thread)
        return f"{scheme}://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        # close() alone does not wake a thread blocked in accept(); shutdown() does (EINVAL), so a
        # server still waiting for a request its test never sent ends now, not at the join's limit.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(LIMIT)
