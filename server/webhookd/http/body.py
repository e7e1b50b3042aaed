"""Reading request bodies, for every HTTP transport: one capped reader, and JSON on top of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from webhookd.domain import json_text
from webhookd.domain.errors import PayloadTooLarge
from webhookd.http.errors import malformed_json, unsupported_content_coding, unsupported_media_type


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; PayloadTooLarge as soon as it is known to exceed `limit` bytes.

    The size is checked against Content-Length before reading and counted while reading, since
    a chunked upload has no Content-Length and a client may understate it.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class JsonBody:
    text: str  # as received: values a caller wants kept as written are cut from it
    value: Any  # parsed


async def read_json_body(request: Request, limit: int, *, field: str = "") -> JsonBody | None:
    """The body, or None when it is empty (a POST like `:undelete` often sends none). Checked by
    domain/json_text.py's rules (depth, finite numbers): Invalid naming `field` and the path in it."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return None
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        raise unsupported_media_type(content_type)
    # Nothing here decodes a content coding: read as it came, gzip was "not UTF-8", and a plain body
    # sent under a coding's name was served as if it had none.
    coding = ", ".join(request.headers.getlist("content-encoding")).strip()
    if coding and coding.lower() != "identity":
        raise unsupported_content_coding(coding)
    try:
        text = raw.decode()
        return JsonBody(text, json_text.loads(text, field=field))
    except UnicodeDecodeError as error:
        raise malformed_json(f"not UTF-8 ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise malformed_json(f"{error.msg} at line {error.lineno} column {error.colno}") from error
