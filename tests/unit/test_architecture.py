"""The rooms of docs/architecture.md, checked on the source: which way imports go, who sends NOTIFY, and
where status words may be spelled. Each failure names the file, the line and what broke the rule."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, cached_property
from pathlib import Path

import pytest

from webhookd.domain import statuses
from webhookd.store import tables

SERVER = Path(__file__).resolve().parents[2] / "server"
PACKAGE = SERVER / "webhookd"
# The outbound HTTP adapter (aiohttp), its SSRF guard, its keep-alive and what it keeps of an answer
# live in delivery/ beside the core.
OUTBOUND_ADAPTER = frozenset(
    {"webhookd.delivery.http", "webhookd.delivery.ssrf", "webhookd.delivery.keepalive", "webhookd.delivery.answers"}
)


@dataclass(frozen=True)
class Module:
    name: str  # webhookd.store.events
    path: str  # webhookd/store/events.py, as a failure message shows it
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.path.endswith("__init__.py") else self.name.rpartition(".")[0]

    @cached_property
    def literals(self) -> tuple[Literal, ...]:
        return tuple(string_literals(self.tree))


@cache
def modules() -> tuple[Module, ...]:
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        relative = file.relative_to(SERVER)
        parts = relative.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append(Module(name, relative.as_posix(), ast.parse(file.read_text(), filename=str(file))))
    return tuple(found)


def room(name: str) -> str:
    """`webhookd.store.events` -> `store`, `webhookd.ports` -> `ports`; the outbound adapter is a room of its own."""
    if any(name == adapter or name.startswith(adapter + ".") for adapter in OUTBOUND_ADAPTER):
        return "outbound adapter"
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the webhookd module imported


def _is_module(name: str) -> bool:
    path = SERVER.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def webhookd_imports(module: Module) -> Iterator[Import]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from webhookd.delivery import http` imports the module webhookd.delivery.http.
                submodule = f"{base}.{alias.name}"
                yield Import(node.lineno, submodule if _is_module(submodule) else base)


@dataclass(frozen=True)
class Rule:
    room: str
    text: str
    applies_to: Callable[[str], bool]  # by the importing module's room
    allows: Callable[[str], bool]  # by the imported module's room

    def __str__(self) -> str:
        return self.text


CORE_ROOMS = {"domain", "ports", "services", "delivery", "observability"}
TRANSPORT_ROOMS = {"api", "gateway", "http"}
ADAPTER_ROOMS = {"store", "secrets"}

RULES = [
    Rule(
        "domain",
        "domain/ imports nothing of webhookd outside domain/",
        lambda r: r == "domain",
        lambda r: r == "domain",
    ),
    Rule("ports", "ports.py imports only domain/", lambda r: r == "ports", lambda r: r == "domain"),
    Rule(
        "core",
        "the core (services/, and delivery/ but its HTTP adapter http.py, ssrf.py, keepalive.py and answers.py) "
        "imports only domain/, ports, services/, delivery/ (not the HTTP adapter) and observability/",
        lambda r: r in {"services", "delivery"},
        lambda r: r in CORE_ROOMS,
    ),
    Rule(
        "transports",
        "transports (api/, gateway/, http/) never import store/ or secrets/",
        lambda r: r in TRANSPORT_ROOMS,
        lambda r: r not in ADAPTER_ROOMS,
    ),
    Rule(
        "adapters",
        "adapters (store/, secrets/) never import services/, api/, gateway/, http/, delivery/ or ports",
        lambda r: r in ADAPTER_ROOMS,
        lambda r: r not in {"services", "api", "gateway", "http", "delivery", "outbound adapter", "ports"},
    ),
]


def test_the_source_tree_is_where_the_rules_look() -> None:
    names = {module.name for module in modules()}
    assert names >= OUTBOUND_ADAPTER, f"the outbound adapter exempted from the core rule moved: {OUTBOUND_ADAPTER}"
    for rule in RULES:
        assert any(rule.applies_to(room(name)) for name in names), f"no module falls under: {rule}"


@pytest.mark.parametrize("rule", RULES, ids=[rule.room for rule in RULES])
def test_imports_go_one_way(rule: Rule) -> None:
    broken = [
        f"{module.path}:{found.line} imports {found.target}"
        for module in modules()
        if rule.applies_to(room(module.name))
        for found in webhookd_imports(module)
        if found.target.split(".")[0] == "webhookd" and not rule.allows(room(found.target))
    ]
    assert not broken, f"{rule}:\n  " + "\n  ".join(broken)


# -- what the code says in string literals -----------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    line: int
    text: str  # an f-string with `{}` where its values go


def string_literals(tree: ast.Module) -> Iterator[Literal]:
    """Every string or bytes literal but documentation (docstrings and other bare string statements)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):  # breadth first: a statement or f-string comes before its parts
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr):
            skipped.add(id(node.value))
        elif isinstance(node, ast.JoinedStr):
            skipped.update(id(part) for part in node.values)
            text = "".join(str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values)
            yield Literal(node.lineno, text)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            value = node.value
            yield Literal(node.lineno, value.decode("latin-1") if isinstance(value, bytes) else value)


# SQL spells NOTIFY in capitals before a channel (or pg_notify as a function); "could not NOTIFY" is a message.
NOTIFY_SQL = re.compile(r"\bNOTIFY\s+[\w\"{]|(?i:\bpg_notify\s*\()")


def test_only_store_notifications_sends_notify() -> None:
    senders = {
        f"{module.path}:{literal.line} {literal.text!r}"
        for module in modules()
        for literal in module.literals
        if NOTIFY_SQL.search(literal.text)
    }
    paths = {sender.partition(":")[0] for sender in senders}
    assert paths == {"webhookd/store/notifications.py"}, (
        "NOTIFY is sent from store/notifications.py alone (writers call notify(topic) after commit):\n  "
        + "\n  ".join(sorted(senders))
    )


def status_words() -> dict[str, str]:
    """Each word of every status family in domain/statuses.py, and the members that spell it."""
    families = [
        value
        for value in vars(statuses).values()
        if isinstance(value, type) and issubclass(value, StrEnum) and value.__module__ == statuses.__name__
    ]
    words: dict[str, list[str]] = {}
    for family in families:
        for member in family:
            words.setdefault(member.value, []).append(f"{family.__name__}.{member.name}")
    return {word: " or ".join(members) for word, members in words.items()}


WORDS = status_words()
# A status word on its own, or quoted inside a longer string (`status = 'pending'`, `{"status": "duplicate"}`).
QUOTED_WORD = re.compile(r"""['"](%s)['"]""" % "|".join(map(re.escape, sorted(WORDS))))  # noqa: UP031
MAY_SPELL_STATUS_WORDS = ("webhookd/domain/", "webhookd/store/migrations/")
# A word that is also a column's name (`attempts.attempt`, the attempt's number, beside LogKind.ATTEMPT)
# may stand alone as that name; quoted inside SQL it is still a status word.
COLUMN_NAMES = frozenset(column.name for table in tables.metadata.tables.values() for column in table.columns)


def test_status_words_are_named_from_domain_statuses() -> None:
    assert {"pending", "succeeded", "failed", "timed_out", "refused", "accepted", "rejected"} <= set(WORDS)
    spelled = [
        f"{module.path}:{literal.line} {literal.text!r} (use {WORDS[word]})"
        for module in modules()
        if not module.path.startswith(MAY_SPELL_STATUS_WORDS)
        for literal in module.literals
        for word in (
            [literal.text]
            if literal.text in WORDS and literal.text not in COLUMN_NAMES
            else QUOTED_WORD.findall(literal.text)
        )
    ]
    assert not spelled, "status words are spelled in domain/statuses.py (and the migrations) only:\n  " + "\n  ".join(
        spelled
    )


def test_the_literal_scan_sees_sql_and_skips_documentation() -> None:
    tree = ast.parse(
        '"""Module docs: NOTIFY x."""\n'
        "def f(topic):\n"
        '    """NOTIFY y."""\n'
        "    log('could not NOTIFY; retrying')\n"
        '    return f"NOTIFY {topic}", "WHERE status = \'pending\'"\n'
    )
    texts = [literal.text for literal in string_literals(tree)]

    assert sorted(texts) == sorted(["could not NOTIFY; retrying", "NOTIFY {}", "WHERE status = 'pending'"])
    assert [bool(NOTIFY_SQL.search(text)) for text in texts if "NOTIFY" in text].count(True) == 1
    assert QUOTED_WORD.findall("WHERE status = 'pending'") == ["pending"]
