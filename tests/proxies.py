"""A real forward proxy for tests: proxy.py on loopback, as an operator would put one in front of
webhookd's deliveries (WEBHOOKD_DELIVERY_PROXY)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_LIMIT = 30.0


@contextlib.contextmanager
def forward_proxy(directory: Path, credentials: str, port: int = 0) -> Iterator[str]:
    """proxy.py on 127.0.0.1 (on `port`, 0: any free one) asking for `credentials` (user:password);
    yields its host:port. Its log, one line per request it served (`CONNECT host:port` for a tunnel),
    is `directory`/proxy.log."""
    with running_proxy(directory, credentials, port) as (address, _):
        yield address


@contextlib.contextmanager
def running_proxy(directory: Path, credentials: str, port: int = 0) -> Iterator[tuple[str, int]]:
    """forward_proxy, with its process group (proxy.py forks its acceptors and workers): for tests
    that kill it, with os.killpg."""
    port_file = directory / "proxy.port"
    port_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
    command += ["--port-file", str(port_file)]
    command += ["--num-workers", "1", "--num-acceptors", "1", "--basic-auth", credentials, "--log-level", "INFO"]
    with (directory / "proxy.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + START_LIMIT
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {(directory / 'proxy.log').read_text()}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port_file.read_text().strip()}", process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a group a test froze would hold SIGTERM pending
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
