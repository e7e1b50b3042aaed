"""The id of the request being served: set once at each transport's door, read by every log line."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept when it is a sane token (it is logged and echoed), else a fresh one is made.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("webhookd_request_id", default="-")


def settle_request_id(given: str | None) -> str:
    """The caller's id when it is acceptable, else a new one."""
    return given if given is not None and _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
