"""Form-encoded bodies (`application/x-www-form-urlencoded`), as Twilio and Slack post them."""

from __future__ import annotations

import urllib.parse

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def is_form(content_type: str) -> bool:
    """Whether a Content-Type header names a form body, whatever its parameters (`; charset=utf-8`)."""
    return content_type.split(";")[0].strip().lower() == FORM_CONTENT_TYPE


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """The fields in order, blank values kept (a signature covers them); ValueError when the body is
    not UTF-8."""
    return urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
