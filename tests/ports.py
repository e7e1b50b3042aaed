"""Loopback ports for what a test starts on a port of its choosing, or for a port nothing listens on.

A port taken from the kernel (bind to 0, then let go) can be handed to the other pytest process of a
`make test` run before ours binds it, and our servers bind with SO_REUSEPORT (several server
processes share a port), so two services would share it without an error and each answer half of the
other's calls. These come instead from a block below the kernel's ephemeral range (32768 and up on
Linux) that is this pytest process's own, one block per pytest-xdist worker.
"""

from __future__ import annotations

import itertools
import os
import socket

BLOCK_START = 10_000
BLOCK_SIZE = 1_500  # 15 blocks end below 32,768: the controller's and up to 14 workers'


def _block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; unset without xdist
    index = int(worker.removeprefix("gw")) + 1 if worker.startswith("gw") else 0
    start = BLOCK_START + BLOCK_SIZE * index
    return range(start, start + BLOCK_SIZE)


_candidates = itertools.cycle(_block())


def free_port() -> int:
    """A loopback port no one listens on now, and no other pytest process of the run will pick."""
    for port in itertools.islice(_candidates, BLOCK_SIZE):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in {_block()}")


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    return free_port()
