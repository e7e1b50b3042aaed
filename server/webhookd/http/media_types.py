"""The media types webhookd's HTTP transports speak."""

from __future__ import annotations

JSON_MEDIA_TYPE = "application/json"
NDJSON_MEDIA_TYPE = "application/x-ndjson"
SSE_MEDIA_TYPE = "text/event-stream"
STREAM_MEDIA_TYPES = (NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE)
