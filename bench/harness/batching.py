"""How well a service's workers batched, read from its /metrics: each claim and each recorded batch is
one transaction (webhookd_delivery_claim_size, webhookd_delivery_record_batch_size), so their counts
per delivery say what batching saved at the load that ran. Under `webhookd serve` any server process
reports for every process, workers included."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, fields

from prometheus_client.parser import text_string_to_metric_families

CLAIM = "webhookd_delivery_claim_size"
BATCH = "webhookd_delivery_record_batch_size"
TIMEOUT = 10.0


@dataclass
class Batching:
    queue_claims: float = 0.0
    empty_queue_claims: float = 0.0
    express_claims: float = 0.0
    empty_express_claims: float = 0.0
    batches: float = 0.0
    reported: bool = False  # a build from before these metrics reports none

    def since(self, before: Batching) -> Batching:
        counts = {f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self) if f.name != "reported"}
        return Batching(**counts, reported=self.reported)

    def add(self, other: Batching) -> None:
        for f in fields(self):
            if f.name != "reported":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.reported = self.reported or other.reported

    def note(self, deliveries: int) -> str:
        if not self.reported:
            return "this build reports no claim or batch sizes"
        per = 1000 / max(1, deliveries)
        return (
            f"per 1,000 deliveries (probes included) {self.queue_claims * per:,.1f} claims of the queue "
            f"({self.empty_queue_claims * per:,.1f} empty), {self.express_claims * per:,.1f} express claims "
            f"({self.empty_express_claims * per:,.1f} empty), {self.batches * per:,.1f} recorded batches"
        )


def read(http_url: str) -> Batching:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=TIMEOUT) as response:
        text = response.read().decode()
    counted = Batching()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            claim = sample.labels.get("claim")
            if sample.name == f"{CLAIM}_count":
                counted.reported = True
                setattr(counted, f"{claim}_claims", sample.value)
            elif sample.name == f"{CLAIM}_bucket" and float(sample.labels["le"]) == 0:
                setattr(counted, f"empty_{claim}_claims", sample.value)
            elif sample.name == f"{BATCH}_count":
                counted.batches = sample.value
    return counted
