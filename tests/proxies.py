"""A real forward proxy for tests: proxy.py on loopback, as an operator would put one in front of
webhookd's deliveries (WEBHOOKD_DELIVERY_PROXY)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_LIMIT = 30.0


@contextlib.contextmanager
def forward_proxy(directory: Path, credentials: str) -> Iterator[str]:
    """proxy.py on 127.0.0.1 asking for `credentials` (user:password); yields its host:port. Its log,
    one line per request it served (`CONNECT host:port` for a tunnel), is `directory`/proxy.log."""
    port_file = directory / "proxy.port"
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    command += ["--num-workers", "1", "--num-acceptors", "1", "--basic-auth", credentials, "--log-level", "INFO"]
    with (directory / "proxy.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_LIMIT
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {(directory / 'proxy.log').read_text()}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(10)
