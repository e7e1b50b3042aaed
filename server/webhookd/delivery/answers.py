"""What an attempt keeps of a receiver's answer: the start of its body and its headers, both bounded.

Every attempt's row is read back whole (GetDelivery shows a delivery's attempts in one message, under
gRPC's 4 MB default), and a receiver chooses how much it answers: aiohttp alone lets ~1 MB of headers
through, so both are cut here, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import aiohttp

# We keep excerpts short in the database, and never read more of a response than we keep.
RESPONSE_EXCERPT_BYTES: Final = 65536
# Of the response headers: each value cut to this many characters, and the headers (names and values)
# kept until they total this many; the rest are dropped, and a pseudo-header says how many.
RESPONSE_HEADER_VALUE_CHARS: Final = 1024
RESPONSE_HEADERS_CHARS: Final = 16384
VALUE_CUT: Final = "…[cut]"
# Not a token, so no real header has this name.
NOT_RECORDED: Final = "[not recorded]"


async def read_excerpt(response: aiohttp.ClientResponse) -> str:
    """At most RESPONSE_EXCERPT_BYTES of the body; the rest is never read (the connection is dropped)."""
    chunks: list[bytes] = []
    remaining = RESPONSE_EXCERPT_BYTES
    while remaining > 0 and not response.content.at_eof():
        chunk = await response.content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def kept_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """`headers` in order, each value cut to RESPONSE_HEADER_VALUE_CHARS (marked VALUE_CUT), until they
    would pass RESPONSE_HEADERS_CHARS; then (NOT_RECORDED, "<n> more headers")."""
    kept: list[tuple[str, str]] = []
    room = RESPONSE_HEADERS_CHARS
    pairs = list(headers)
    for name, value in pairs:
        if len(value) > RESPONSE_HEADER_VALUE_CHARS:
            value = value[:RESPONSE_HEADER_VALUE_CHARS] + VALUE_CUT
        room -= len(name) + len(value)
        if room < 0:
            kept.append((NOT_RECORDED, f"{len(pairs) - len(kept)} more headers"))
            break
        kept.append((name, value))
    return tuple(kept)
