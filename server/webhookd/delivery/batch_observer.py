"""What the pool and the recorder report of their batches (metrics): how many deliveries each claim
took and how many attempts each recorder batch wrote. Both are one transaction each, so their counts
per delivery are what batching saves, and they differ most between a saturating load and a partial
one (bench/delivery.py prints them for both)."""

from __future__ import annotations

from typing import Protocol

# The claimer's claims of the whole queue, and express claims of named quiet webhooks (delivery/pool.py).
QUEUE_CLAIM = "queue"
EXPRESS_CLAIM = "express"
CLAIMS = (QUEUE_CLAIM, EXPRESS_CLAIM)


class BatchObserver(Protocol):
    """Told after each claim and each batch written that the database answered; it must neither block nor raise."""

    def claimed(self, claim: str, deliveries: int) -> None: ...

    def recorded(self, attempts: int) -> None: ...
