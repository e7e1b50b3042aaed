"""Server-streaming RPCs through the gateway, over a real socket (uvicorn) so that "not buffered"
is observable: NDJSON, SSE ids from the entry cursor, Last-Event-ID resume, errors before and
after the stream starts, heartbeats, and cancellation when the client leaves."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from google.rpc import status_pb2

from webhookd.api.errors import to_status
from webhookd.domain.errors import Unavailable
from webhookd.gateway.app import create_gateway_app


class FakeProbe:
    """Tail yields `count` entries after `after_cursor`; flags hold it or fail it midway."""

    def __init__(self, messages: ModuleType) -> None:
        self.messages = messages
        self.requests: list[Any] = []
        self.release = asyncio.Event()
        self.finished = asyncio.Event()

    async def Tail(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self.requests.append(request)
        try:
            if request.probe_id == "missing":
                status = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="no such probe")
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    "no such probe",
                    trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
                )
            if request.hold_before_first:
                await self.release.wait()
            start = int(request.after_cursor or 0)
            for number in range(start + 1, start + 1 + request.count):
                entry = self.messages.Entry(cursor=str(number), text=f"line {number}")
                yield self.messages.TailResponse(entry=entry)
                if request.hold_after_first and number == start + 1:
                    await self.release.wait()
            if request.fail_midway:
                # With its rich status, as the server's interceptor sends every error it raises: a bare
                # UNAVAILABLE is gRPC's own (a server not reached), whose words the gateway does not pass on.
                await context.abort_with_status(to_status(Unavailable("store went away")))
        finally:
            self.finished.set()


@dataclass
class Streams:
    http: httpx.AsyncClient
    fake: FakeProbe

    def reset(self) -> None:
        self.fake.release = asyncio.Event()
        self.fake.finished = asyncio.Event()


@pytest.fixture(scope="module")
async def streams(probe: tuple[ModuleType, ModuleType, Path]) -> AsyncIterator[Streams]:
    messages, _, descriptors = probe
    fake = FakeProbe(messages)
    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(
        fake.Tail,
        request_deserializer=messages.TailRequest.FromString,
        response_serializer=messages.TailResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("gatewaytest.v1.ProbeService", {"Tail": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        app = create_gateway_app(
            channel,
            services=[messages.DESCRIPTOR.services_by_name["ProbeService"]],
            descriptor_set=descriptors,
            stream_grace_seconds=0.2,
            heartbeat_seconds=0.1,
        )
        # A socket already listening queues connections, so no wait for uvicorn's start-up.
        listener = socket.create_server(("127.0.0.1", 0))
        web_port = listener.getsockname()[1]
        web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(web.serve(sockets=[listener]))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=5) as http:
            yield Streams(http, fake)
        web.should_exit = True
        await serving
    await server.stop(None)


def sse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        events.append(fields)
    return events


async def test_ndjson_is_the_default(streams: Streams) -> None:
    response = await streams.http.get("/v1/probes/p1/log", params={"count": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == [{"entry": {"cursor": str(n), "text": f"line {n}"}} for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/x-ndjson"),
        ("*/*", "application/x-ndjson"),
        ("application/*", "application/x-ndjson"),
        ("application/json", "application/x-ndjson"),  # its lines are JSON: clients that ask for JSON by habit
        ("application/x-ndjson", "application/x-ndjson"),
        ("text/event-stream", "text/event-stream"),
        ("application/json, Text/Event-Stream;q=0.9", "text/event-stream"),
        ("text/event-stream;q=0.5, application/x-ndjson", "application/x-ndjson"),
        ("text/*", "text/event-stream"),
    ],
)
async def test_a_stream_answers_in_the_media_type_accept_ranks_first(
    streams: Streams, accept: str | None, media_type: str
) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = await streams.http.get("/v1/probes/p1/log", params={"count": 1}, headers=headers)
    assert (response.status_code, response.headers["content-type"].split(";")[0]) == (200, media_type)


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/event-stream;q=0, application/x-ndjson;q=0"])
async def test_a_stream_whose_accept_admits_neither_ndjson_nor_sse_is_406_before_it_starts(
    streams: Streams, accept: str
) -> None:
    calls = len(streams.fake.requests)
    response = await streams.http.get("/v1/probes/p1/log", params={"count": 1}, headers={"Accept": accept})
    assert (response.status_code, response.headers["content-type"]) == (406, "application/json")
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(streams.fake.requests) == calls


async def test_a_stream_offers_no_head(streams: Streams) -> None:
    response = await streams.http.head("/v1/probes/p1/log")
    assert (response.status_code, response.headers["allow"]) == (405, "GET")


async def test_sse_events_carry_the_entry_cursor_as_id(streams: Streams) -> None:
    response = await streams.http.get("/v1/probes/p1/log?count=2", headers={"Accept": "text/event-stream"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_events(response.text) == [
        {"id": "1", "data": '{"entry":{"cursor":"1","text":"line 1"}}'},
        {"id": "2", "data": '{"entry":{"cursor":"2","text":"line 2"}}'},
    ]


async def test_last_event_id_resumes_after_that_cursor(streams: Streams) -> None:
    response = await streams.http.get(
        "/v1/probes/p1/log?count=1&after_cursor=0", headers={"Accept": "text/event-stream", "Last-Event-ID": "7"}
    )
    assert streams.fake.requests[-1].after_cursor == "7"
    assert [e["id"] for e in sse_events(response.text)] == ["8"]


async def test_an_immediate_failure_keeps_its_http_status(streams: Streams) -> None:
    response = await streams.http.get("/v1/probes/missing/log", headers={"Accept": "text/event-stream"})
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


async def test_a_failure_after_the_start_is_the_last_ndjson_line(streams: Streams) -> None:
    response = await streams.http.get("/v1/probes/p1/log", params={"count": 1, "fail_midway": "true"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["entry"]["cursor"] == "1"
    assert lines[-1]["error"] == {
        "code": 503,
        "message": "store went away",
        "status": "UNAVAILABLE",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "UNAVAILABLE",
                "domain": "integration.cpod.io",
            }
        ],
    }


async def test_a_failure_after_the_start_is_an_sse_error_event(streams: Streams) -> None:
    response = await streams.http.get(
        "/v1/probes/p1/log", params={"count": 1, "fail_midway": "true"}, headers={"Accept": "text/event-stream"}
    )
    last = sse_events(response.text)[-1]
    assert last["event"] == "error" and json.loads(last["data"])["error"]["code"] == 503


async def test_frames_arrive_before_the_stream_ends(streams: Streams) -> None:
    streams.reset()
    async with streams.http.stream(
        "GET", "/v1/probes/p1/log", params={"count": 2, "hold_after_first": "true"}
    ) as response:
        lines = response.aiter_lines()
        first = await asyncio.wait_for(anext(lines), timeout=3)
        assert json.loads(first)["entry"]["cursor"] == "1"  # while the server still holds the stream open
        streams.fake.release.set()
        assert json.loads(await asyncio.wait_for(anext(lines), timeout=3))["entry"]["cursor"] == "2"


async def test_a_quiet_stream_answers_after_the_grace_period_and_sends_heartbeats(streams: Streams) -> None:
    streams.reset()
    headers = {"Accept": "text/event-stream"}
    async with streams.http.stream(
        "GET", "/v1/probes/p1/log", params={"count": 1, "hold_before_first": "true"}, headers=headers
    ) as response:
        assert response.status_code == 200  # headers came before any message
        chunks = response.aiter_text()
        assert (await asyncio.wait_for(anext(chunks), timeout=3)).startswith(": keep-alive")
        streams.fake.release.set()
        received = ""
        while "data:" not in received:
            received += await asyncio.wait_for(anext(chunks), timeout=3)
        assert 'id: 1\ndata: {"entry"' in received


async def test_leaving_client_cancels_the_grpc_stream(streams: Streams) -> None:
    streams.reset()
    async with streams.http.stream(
        "GET", "/v1/probes/p1/log", params={"count": 2, "hold_after_first": "true"}
    ) as response:
        await asyncio.wait_for(anext(response.aiter_lines()), timeout=3)
    await asyncio.wait_for(streams.fake.finished.wait(), timeout=3)
    assert not streams.fake.release.is_set()
