"""Our JSON log lines carry what a record says, never how a terminal would colour it: uvicorn adds a
`color_message` (ANSI escape codes) to its own records for its coloured console formatter."""

from __future__ import annotations

import io
import json
import logging

import uvicorn

from webhookd.logs import JsonFormatter


async def no_app(scope: object, receive: object, send: object) -> None:
    """Never called: only the socket is bound."""


def test_uvicorns_colour_is_left_out_of_our_json_lines() -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        # uvicorn's own start-up line, logged with its coloured twin (log_config=None: ours stay in place).
        uvicorn.Config(no_app, host="127.0.0.1", port=0, log_config=None).bind_socket().close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    [line] = lines.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"].startswith("Uvicorn running on http://127.0.0.1:")
    assert "color_message" not in entry
    assert "\x1b" not in line and "\\u001b" not in line
