"""Which media type the Accept header ranks first (http/accept.py), as RFC 9110 12.5.1 ranks them."""

from __future__ import annotations

import pytest

from webhookd.http.accept import preferred

JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),  # says nothing, as an absent header
        ("*/*", JSON),
        ("application/*", JSON),
        ("APPLICATION/JSON; charset=UTF-8", JSON),
        ("application/json ; q=0.001", JSON),
        ('application/json;profile="a,b", text/html', JSON),  # a comma inside a quoted parameter
        ("text/html, */*;q=0.1", JSON),
        ("nonsense, application/json;q=2", JSON),  # nothing that parses: as if absent
        ("text/html", None),
        ("application/xml, text/*", None),
        ("application/json;q=0, */*", None),  # the most specific range refuses it
        ("application/json;q=0.0", None),
        ("*/json, text/html", None),  # `*/json` is no media range; text/html still says no
    ],
)
def test_json_is_chosen_when_accept_admits_it(accept: str | None, chosen: str | None) -> None:
    assert preferred(accept, (JSON,)) == chosen


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, NDJSON),
        ("*/*", NDJSON),  # a tie goes to the first offer
        ("text/event-stream, */*", SSE),  # ...unless one is named more closely
        ("text/event-stream, application/x-ndjson", NDJSON),
        ("text/event-stream;q=0.5, application/x-ndjson", NDJSON),
        ("application/x-ndjson;q=0.5, text/*", SSE),
        ("application/json", None),
        ("*/*;q=0", None),
    ],
)
def test_the_highest_q_wins_then_the_closer_range_then_the_first_offer(accept: str | None, chosen: str | None) -> None:
    assert preferred(accept, (NDJSON, SSE)) == chosen
