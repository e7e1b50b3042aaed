"""Operating every HTTP transport: /healthz, /readyz, /metrics (no token needed), and what is
recorded per request.

`ObservedApp` wraps the whole Starlette app: it settles each request's id at the door (so the
RPC handler forwards the same one to gRPC and the response echoes it), counts the request under
its route template and status, counts the streams it is serving, and writes one access log line.
That line names the method, route template, status, duration and request id, and nothing from
the request itself: no Authorization header, query string or body can reach a log.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhookd.http.media_types import STREAM_MEDIA_TYPES
from webhookd.http.trailing_slash import redirect_slashes_by_path
from webhookd.observability.metrics import Metrics
from webhookd.observability.request_ids import REQUEST_ID_HEADER, current_request_id, settle_request_id
from webhookd.services.readiness import CHECK_TIMEOUT_SECONDS, Check, Readiness

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
OPERATIONAL_PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path, so scanners cannot grow the series
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STREAM_MEDIA_TYPES = tuple(media_type.encode() for media_type in STREAM_MEDIA_TYPES)
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()

access_log = logging.getLogger("webhookd.gateway.access")


def health_route() -> Route:
    """Liveness: the process serves HTTP."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Route(HEALTH_PATH, healthz, methods=["GET"])


def readiness_route(readiness: Readiness) -> Route:
    """A round of the process's readiness checks (services/readiness.py: the rule gRPC health follows
    too): 503 unless every one answered "ok", each named with its answer."""

    async def readyz(request: Request) -> JSONResponse:
        report = await readiness.probe()
        ready = report.ready
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": report.checks}, 200 if ready else 503
        )

    return Route(READY_PATH, readyz, methods=["GET"])


def metrics_route(metrics: Metrics) -> Route:
    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    return Route(METRICS_PATH, scrape, methods=["GET"])


def operations_app(readiness: Readiness, metrics: Metrics) -> ASGIApp:
    """What a process without the gateway serves (a `webhookd worker` started alone): /healthz,
    /readyz and /metrics."""
    routes = [health_route(), readiness_route(readiness), metrics_route(metrics)]
    return ObservedApp(redirect_slashes_by_path(Starlette(routes=routes)), metrics)


def grpc_serving_check(channel: grpc.aio.Channel, service: str = "") -> Check:
    """A readiness check: the target's grpc.health.v1 Check answers SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def check() -> str | None:
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=CHECK_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            return f"unreachable: {error.code().name}"
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return f"not serving: {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
        return None

    return check


def route_label(route: BaseRoute | None) -> str:
    """The route template a request matched (`/api/v1/integration/webhooks/{id}`), never its raw path."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class ObservedApp:
    """ASGI middleware around the gateway app: request id, metrics, open streams, access log."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _settle_request_id(scope)
        rid_token = current_request_id.set(rid)
        status = 500  # unless a response starts: an exception that escaped every handler
        open_stream = ExitStack()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(key.lower() == _REQUEST_ID_KEY for key, _ in headers):
                    message = {**message, "headers": [*headers, (_REQUEST_ID_KEY, rid.encode())]}
                if _is_stream(headers):
                    open_stream.enter_context(self._metrics.streams.open("http"))
            await send(message)

        try:
            await self._app(scope, receive, observing_send)
        finally:
            open_stream.close()
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            route = route_label(scope.get("route"))
            self._metrics.http.observe(method, route, status, seconds)
            _log_access(method, route, status, seconds, rid)
            current_request_id.reset(rid_token)


def _settle_request_id(scope: Scope) -> str:
    """The caller's X-Request-Id when it is sane, else a new one written into the request's headers,
    so every later reader (the RPC handler, the error handlers) sees this same id."""
    headers = Headers(scope=scope)
    rid = settle_request_id(headers.get(REQUEST_ID_HEADER))
    if headers.get(REQUEST_ID_HEADER) != rid:
        raw = [(key, value) for key, value in scope["headers"] if key.lower() != _REQUEST_ID_KEY]
        scope["headers"] = [*raw, (_REQUEST_ID_KEY, rid.encode())]
    return rid


def _is_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(_STREAM_MEDIA_TYPES) for key, value in headers)


def _log_access(method: str, route: str, status: int, seconds: float, rid: str) -> None:
    # Probes and scrapes are not traffic: their lines only show at DEBUG.
    level = logging.DEBUG if route in OPERATIONAL_PATHS else logging.INFO
    if access_log.isEnabledFor(level):
        access_log.log(
            level,
            "http request",
            extra={
                "http_method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": rid,
            },
        )
