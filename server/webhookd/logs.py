"""Structured JSON logs, one object a line, carrying the request id of the call being served."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from webhookd.observability.request_ids import current_request_id

# Attributes every record has, and uvicorn's `color_message`: the same message with ANSI escape codes
# for its coloured console formatter, noise (and an escape sequence) in a JSON line.
_LEFT_OUT = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
_LONGEST_TRACEBACK = 16 * 1024


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": current_request_id.get(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _LEFT_OUT})
        if record.exc_info:
            entry["exception"] = _bounded(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _bounded(text: str) -> str:
    """A traceback's start and end when it is longer than _LONGEST_TRACEBACK: a RecursionError's runs
    to thousands of frames, one log line of hundreds of KiB, and the frames that matter are at its ends."""
    if len(text) <= _LONGEST_TRACEBACK:
        return text
    half = _LONGEST_TRACEBACK // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters left out ...]\n{text[-half:]}"


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Their INFO lines are per-request noise; warnings still come through.
    for noisy in ("httpx", "uvicorn.access", "hvac", "pgserver", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
