"""Every statement the stores run is one psycopg converts once and keeps (store/sql.py)."""

from __future__ import annotations

import importlib
import pkgutil
import re

from psycopg import _queries
from psycopg.adapt import Transformer

import webhookd.store
from webhookd.store.sql import STATEMENT_CACHE_BYTES

_STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|COPY)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def statements() -> dict[str, str]:
    """Each module-level statement text of the stores, by module and name."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(webhookd.store.__path__):
        module = importlib.import_module(f"webhookd.store.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, str) and _STATEMENT.match(value):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_statement_fits_the_bound_psycopg_caches_under() -> None:
    lengths = {name: len(text.encode()) for name, text in statements().items()}

    assert len(lengths) > 50  # the stores' statements were found
    assert max(lengths.values()) > 4096  # some are past psycopg's own bound: the raised one matters
    assert {name: length for name, length in lengths.items() if length > STATEMENT_CACHE_BYTES} == {}
    assert _queries.MAX_CACHED_STATEMENT_LENGTH >= STATEMENT_CACHE_BYTES


def test_the_longest_statement_is_converted_once() -> None:
    longest = max(statements().values(), key=len)
    values = dict.fromkeys(_PLACEHOLDER.findall(longest))
    _queries.PostgresQuery(Transformer()).convert(longest, values)
    before = _queries._query2pg.cache_info().hits

    _queries.PostgresQuery(Transformer()).convert(longest, values)

    assert _queries._query2pg.cache_info().hits == before + 1
