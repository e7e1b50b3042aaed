"""Content negotiation: which of the media types an answer can be written in the request's `Accept`
header ranks first (RFC 9110 12.5.1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# An element of the list: anything up to a comma outside a quoted string (a parameter may quote one).
_ELEMENT = re.compile(r'(?:[^,"]|"(?:\\.|[^"\\])*")+')
_TOKEN = r"[!#$%&'*+.^_`|~0-9a-z-]+"
_MEDIA_RANGE = re.compile(rf"({_TOKEN})/({_TOKEN})")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
WILDCARD = "*"


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    quality: float

    def specificity(self, media_type: str) -> int | None:
        """How closely the range names `media_type`: 2 exactly, 1 by its type (`text/*`), 0 as `*/*`;
        None when it does not name it."""
        kind, _, subtype = media_type.partition("/")
        if self.type == WILDCARD:
            return 0
        if self.type != kind:
            return None
        if self.subtype == WILDCARD:
            return 1
        return 2 if self.subtype == subtype else None


def media_ranges(accept: str | None) -> list[MediaRange] | None:
    """The header's media ranges, in lower case; None when it says nothing (absent, empty, or no
    element that parses). An element that does not parse (no `type/subtype`, `*/json`, a q-value
    out of range) is left out rather than refusing the request over it."""
    if accept is None:
        return None
    ranges = []
    for element in _ELEMENT.findall(accept):
        name, *parameters = element.split(";")
        matched = _MEDIA_RANGE.fullmatch(name.strip().lower())
        if matched is None or (matched[1] == WILDCARD and matched[2] != WILDCARD):
            continue
        quality = _quality(parameters)
        if quality is not None:
            ranges.append(MediaRange(matched[1], matched[2], quality))
    return ranges or None


def _quality(parameters: Sequence[str]) -> float | None:
    """The `q` parameter's weight (1 without one); None when it is not a q-value. Other parameters
    (`charset`, ...) do not narrow what a range admits here: no answer of ours has variants by them."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            return float(value.strip()) if _QVALUE.fullmatch(value.strip()) else None
    return 1.0


def preferred(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer `accept` ranks highest, or None when it admits none of them (each at q=0 or named by
    no range). An offer weighs what the most specific range naming it says (`application/json;q=0,
    */*` refuses JSON). Among equal weights, one named more closely wins (`text/event-stream, */*`
    asks for that one), then the earlier offer. A header that says nothing admits the first."""
    ranges = media_ranges(accept)
    if ranges is None:
        return offers[0] if offers else None
    best: tuple[float, int, str] | None = None
    for offer in offers:
        quality, specificity = _weight_of(offer, ranges)
        if quality > 0 and (best is None or (quality, specificity) > best[:2]):
            best = (quality, specificity, offer)
    return best[2] if best is not None else None


def _weight_of(media_type: str, ranges: Sequence[MediaRange]) -> tuple[float, int]:
    """The q-value of the most specific range naming `media_type`, and how specific it is."""
    closest = -1
    quality = 0.0
    for media_range in ranges:
        specificity = media_range.specificity(media_type)
        if specificity is None or specificity < closest:
            continue
        # Equally specific ranges (`application/json;q=0, application/json;charset=utf-8`): the kinder one.
        quality = media_range.quality if specificity > closest else max(quality, media_range.quality)
        closest = specificity
    return quality, closest
