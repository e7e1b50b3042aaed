"""store/sql.py's storable_text: what a receiver sent, made storable in PostgreSQL text and JSON."""

from __future__ import annotations

from webhookd.store.sql import storable_text


def test_nul_becomes_the_replacement_character() -> None:
    assert storable_text("a\x00b\x00") == "a\ufffdb\ufffd"


def test_each_byte_that_was_not_utf8_becomes_one_replacement_character() -> None:
    # As aiohttp decodes a header sent as b"caf\xe9 \xff" (surrogateescape).
    sent = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")

    assert storable_text(sent) == "caf\ufffd \ufffd"


def test_text_that_is_already_storable_is_kept_as_it_is() -> None:
    for text in ("", "plain ascii", "ünïcode — «ok» 😀"):
        assert storable_text(text) == text
