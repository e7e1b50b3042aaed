"""Observability: the Prometheus metrics every room reports to, on one registry per process.

metrics.py   Metrics: the registry and its families (gRPC calls, HTTP requests, delivery attempts,
             open streams), rendered for /metrics after the scrape-time gauges are refreshed
queue.py     the delivery backlog (queue depth, oldest due age), read with one SQL query per scrape
log_throttle.py  ThrottledLog: a warning every call of an outage would repeat, once an interval per kind

Rooms never import prometheus_client themselves: they are handed the small recorder they need
(`GrpcMetrics`, `HttpMetrics`, `DeliveryMetrics`, `StreamMetrics`) by the wiring in app.py.
Structured JSON logs live in webhookd/logs.py; the request id they carry is set per call by
api/errors.py (gRPC) and gateway/operations.py (HTTP).
"""

from webhookd.observability.metrics import Metrics

__all__ = ["Metrics"]
