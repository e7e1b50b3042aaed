"""The whole-string scans of validation.py find exactly the characters their per-character rules name,
for every code point: Unicode's Cc (control) characters, and with them whatever str.isspace() calls space."""

from __future__ import annotations

import sys
import unicodedata

from webhookd.domain.validation import _has_control, _has_space_or_control

EVERY_CHARACTER = [chr(point) for point in range(sys.maxunicode + 1)]


def test_has_control_finds_exactly_the_cc_characters() -> None:
    found = [ch for ch in EVERY_CHARACTER if _has_control(f"a{ch}b")]
    assert found == [ch for ch in EVERY_CHARACTER if unicodedata.category(ch) == "Cc"]


def test_has_space_or_control_finds_exactly_the_spaces_and_cc_characters() -> None:
    found = [ch for ch in EVERY_CHARACTER if _has_space_or_control(f"a{ch}b")]
    assert found == [ch for ch in EVERY_CHARACTER if ch.isspace() or unicodedata.category(ch) == "Cc"]


def test_text_without_either_is_clean() -> None:
    assert not _has_control("https://example.com/hooks?a=1")
    assert not _has_space_or_control("https://example.com/hooks?a=1")
    assert not _has_space_or_control("")
