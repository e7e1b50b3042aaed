"""Stream framing: NDJSON lines and Server-Sent Events."""

from __future__ import annotations

import json

from webhookd.gateway.streaming import ndjson_frame, sse_comment, sse_frame, stream_format


def test_ndjson_is_one_compact_line_per_message() -> None:
    frame = ndjson_frame({"entry": {"text": "a\nb", "cursor": "c1"}})
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert json.loads(frame) == {"entry": {"text": "a\nb", "cursor": "c1"}}


def test_sse_event_has_id_then_data_and_a_blank_line() -> None:
    assert sse_frame({"n": 1}, event_id="c1") == b'id: c1\ndata: {"n":1}\n\n'


def test_sse_without_cursor_has_no_id_line() -> None:
    assert sse_frame({"n": 1}) == b'data: {"n":1}\n\n'


def test_sse_error_event() -> None:
    assert sse_frame({"error": {"code": 503}}, event="error") == b'event: error\ndata: {"error":{"code":503}}\n\n'


def test_sse_fields_cannot_be_split_by_newlines() -> None:
    frame = sse_frame({"t": "x"}, event_id="a\nb\0")
    assert frame.startswith(b"id: a b\n")


def test_sse_heartbeat_is_a_comment() -> None:
    assert sse_comment("keep-alive") == b": keep-alive\n\n"
    assert stream_format("text/event-stream", 15).heartbeat() == b": keep-alive\n\n"


def test_only_sse_has_heartbeats() -> None:
    assert stream_format("application/x-ndjson", 15).media_type == "application/x-ndjson"
    assert stream_format("application/x-ndjson", 15).heartbeat_seconds is None
    assert stream_format("text/event-stream", 15).heartbeat_seconds == 15
