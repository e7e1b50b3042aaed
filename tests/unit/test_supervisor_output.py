"""supervisor.py passes its children's output on line by line, whatever a line's length: a child
whose pipe is no longer read blocks on its next log line, and the whole process with it."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from webhookd import supervisor
from webhookd.logs import JsonFormatter


async def test_a_line_longer_than_asyncios_limit_is_passed_on_and_so_is_what_follows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = asyncio.StreamReader()  # asyncio's default limit: 64 KiB a line
    long_line = '{"exception": "' + "x" * 200_000 + '"}\n'
    stream.feed_data(long_line.encode() + b'{"message": "after"}\nwebhookd: cannot start: no database\n')
    stream.feed_eof()

    reason = await supervisor._relay_errors(stream)

    assert reason == "no database"
    assert capsys.readouterr().err == long_line + '{"message": "after"}\n'


async def test_a_line_past_the_longest_kept_is_passed_on_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """So an endless line holds no more than that in memory."""
    monkeypatch.setattr(supervisor, "_LONGEST_LINE", 10)
    monkeypatch.setattr(supervisor, "_READ_BYTES", 4)
    stream = asyncio.StreamReader()
    stream.feed_data(b"a" * 25 + b"\nend")
    stream.feed_eof()

    pieces = [piece async for piece in supervisor._lines(stream)]

    assert pieces == [b"a" * 12, b"a" * 12, b"a\n", b"end"]


def test_a_tracebacks_middle_is_left_out_past_its_bound() -> None:
    # Two functions calling each other, as a $ref cycle's validation does: no frame repeats the one
    # before it, so Python collapses none of them.
    def there(n: int) -> int:
        return back(n + 1)

    def back(n: int) -> int:
        return there(n + 1)

    try:
        there(0)
    except RecursionError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(record)

    assert len(line) < 20_000 and "RecursionError" in line and "characters left out" in line


async def test_a_childs_settings_error_is_its_reason_not_a_second_line(capsys: pytest.CaptureFixture[str]) -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"webhookd: WEBHOOKD_JWT_PUBLIC_KEY_FILE cannot be read: No such file or directory\n")
    stream.feed_eof()

    reason = await supervisor._relay_errors(stream)

    assert reason == "WEBHOOKD_JWT_PUBLIC_KEY_FILE cannot be read: No such file or directory"
    assert capsys.readouterr().err == ""
