"""What an attempt keeps of a receiver's answer: the start of its body and its headers, both bounded.

Every attempt's row is read back whole (GetDelivery shows a delivery's newest attempts in one message,
under gRPC's 4 MB default: domain.history.DELIVERY_ATTEMPTS_SHOWN is sized from these bounds), and a
receiver chooses how much it answers: aiohttp alone lets ~1 MB of headers through, so both are cut
here, in one place.

The body is only informational: the status is the receiver's answer. So the session does not decode
bodies (aiohttp failed the whole exchange on an encoding it cannot decode, `br` or `zstd` without their
libraries, or on broken gzip, and a 2xx was retried, a 410 not honoured); `read_excerpt` decodes gzip
and deflate itself, bounded, and keeps a note in place of a body it cannot decode.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

import aiohttp
from aiohttp import hdrs

from webhookd.delivery.framing import BrokenFraming

# We keep excerpts short in the database, and never read more of a response than we keep.
RESPONSE_EXCERPT_BYTES: Final = 65536
# What the session asks for: the encodings read_excerpt decodes.
ACCEPT_ENCODING: Final = "gzip, deflate"
# Of a compressed body, at most this much is read: a stream of empty gzip members decodes to nothing
# however long it runs.
_COMPRESSED_READ_BYTES: Final = 4 * RESPONSE_EXCERPT_BYTES
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_DEFLATE: Final = "deflate"
_CODING_SHOWN: Final = 40  # characters of an unknown Content-Encoding named in a note
# Of the response headers: each value cut to this many characters, and the headers (names and values)
# kept until they total this many; the rest are dropped, and a pseudo-header says how many.
RESPONSE_HEADER_VALUE_CHARS: Final = 1024
RESPONSE_HEADERS_CHARS: Final = 16384
VALUE_CUT: Final = "…[cut]"
# Not a token, so no real header has this name.
NOT_RECORDED: Final = "[not recorded]"
# After what came of a body that stopped coming, why it stopped.
_TIMED_OUT: Final = "…[body cut short: the timeout ran out]"
_BROKEN: Final = "…[body cut short: the connection broke]"
_FRAMING_BROKEN: Final = "…[body cut short: its framing is broken]"


async def read_excerpt(response: aiohttp.ClientResponse) -> str:
    """At most RESPONSE_EXCERPT_BYTES of the body, decoded from gzip or deflate, as UTF-8 with
    replacement; the rest is never read (the connection is dropped). A body in another encoding, or
    not valid in its own, is a short note. A body that stops coming (the exchange's timeout runs
    out, the connection breaks, or its framing does) is what came and a note: the status already answered."""
    coding = _content_coding(response.headers.get(hdrs.CONTENT_ENCODING, ""))
    if coding == "":
        decoded: _Plain | _Inflater = _Plain()
    elif coding in _GZIP or coding == _DEFLATE:
        decoded = _Inflater(gzip=coding in _GZIP)
    else:
        return f"[body not shown: its Content-Encoding {coding[:_CODING_SHOWN]!r} is not decoded]"
    cut_short = ""
    try:
        await _read(response.content, decoded)
    except zlib.error:
        return f"[body not shown: it is not valid {coding}]"
    except TimeoutError:  # before OSError, which it is; aiohttp's total timeout ends the read here
        cut_short = _TIMED_OUT
    except BrokenFraming:  # before ClientError, which it is
        cut_short = _FRAMING_BROKEN
    except (aiohttp.ClientError, OSError):
        cut_short = _BROKEN
    return bytes(decoded.out).decode("utf-8", errors="replace") + cut_short


def _content_coding(header: str) -> str:
    """The codings of a Content-Encoding header, identity left out: '' for none."""
    if not header:
        return ""  # the usual answer, without the parse below
    codings = (coding.strip().lower() for coding in header.split(","))
    return ", ".join(coding for coding in codings if coding not in ("", "identity"))


async def _read(content: aiohttp.StreamReader, decoded: _Plain | _Inflater) -> None:
    """Feeds `decoded` until it is done, the body ends, or `decoded.read_at_most` bytes were read;
    what was fed stays in `decoded.out` whatever the read raises."""
    remaining = decoded.read_at_most
    while remaining > 0 and not decoded.done and not content.at_eof():
        try:
            chunk = await content.read(remaining)
        except BrokenFraming:
            break  # raised before what it carries, fed below
        if not chunk:
            break
        remaining -= len(chunk)
        decoded.feed(chunk)
    broken = content.exception()
    if isinstance(broken, BrokenFraming) and remaining > 0 and not decoded.done:  # raised, or set as the body ended
        decoded.feed(broken.unread[:remaining])
        raise broken


class _Plain:
    """A body without a content coding, kept as it comes."""

    read_at_most = RESPONSE_EXCERPT_BYTES

    def __init__(self) -> None:
        self.out = bytearray()

    @property
    def done(self) -> bool:
        return len(self.out) >= RESPONSE_EXCERPT_BYTES

    def feed(self, data: bytes) -> None:
        self.out += data


class _Inflater:
    """gzip (members one after another) or deflate (zlib-wrapped or, as some servers send it, raw)
    decoded to at most RESPONSE_EXCERPT_BYTES. `feed` raises zlib.error on what is not valid."""

    read_at_most = _COMPRESSED_READ_BYTES

    def __init__(self, *, gzip: bool) -> None:
        self.out = bytearray()
        self._gzip = gzip
        self._pending = b""
        self._decoder: zlib._Decompress | None = None
        self._ended = False  # a deflate stream is one; after it, nothing

    @property
    def done(self) -> bool:
        return self._ended or len(self.out) >= RESPONSE_EXCERPT_BYTES

    def feed(self, data: bytes) -> None:
        self._pending += data
        while self._pending and not self.done:
            if self._decoder is None:
                if not self._gzip and len(self._pending) < 2:
                    return  # the zlib header's two bytes tell it from raw deflate
                self._decoder = zlib.decompressobj(self._window_bits())
            self.out += self._decoder.decompress(self._pending, RESPONSE_EXCERPT_BYTES - len(self.out))
            # Input left over is the next gzip member, or (with the output full) not needed.
            self._pending = self._decoder.unused_data if self._decoder.eof else b""
            if self._decoder.eof:
                self._decoder = None
                self._ended = not self._gzip

    def _window_bits(self) -> int:
        if self._gzip:
            return 16 + zlib.MAX_WBITS
        first, second = self._pending[0], self._pending[1]
        wrapped = first & 0x0F == zlib.DEFLATED and (first << 8 | second) % 31 == 0
        return zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS


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
