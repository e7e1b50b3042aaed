"""The media types webhookd's HTTP transports speak."""

from __future__ import annotations

JSON_MEDIA_TYPE = "application/json"
NDJSON_MEDIA_TYPE = "application/x-ndjson"
SSE_MEDIA_TYPE = "text/event-stream"
TWIML_MEDIA_TYPE = "text/xml"  # Twilio's instructions (TwiML), the answer it reads
PLAIN_TEXT_MEDIA_TYPE = "text/plain"
HTML_MEDIA_TYPE = "text/html"  # the Playground page
STREAM_MEDIA_TYPES = (NDJSON_MEDIA_TYPE, SSE_MEDIA_TYPE)  # NDJSON first: a stream's default
