"""Statements as SQL strings, compiled once at import from the SQLAlchemy Core tables.

One style for every store: each statement is written with SQLAlchemy Core against store/tables.py
(so a column that does not exist fails at import, and the schema lives in one place: the tables
and the Alembic migrations), compiled here once into a psycopg `%(name)s` string, and executed on
psycopg directly. Building a statement and its cache key on every call cost about 300 µs through
SQLAlchemy's runtime; a compiled string costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from psycopg import _queries
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.sql import visitors

from webhookd.domain.errors import Invalid
from webhookd.domain.history import LogPosition
from webhookd.domain.scope import Scope
from webhookd.store.database import Connection

_DIALECT = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]
# psycopg turns a statement's `%(name)s` into `$n` with a regex at every execution and keeps the result
# only for statements up to 4 KB (`MAX_CACHED_STATEMENT_LENGTH`: an ORM's statements seldom repeat).
# Ours are a fixed set compiled once, and the longest (the claim, a recorded batch's webhook update)
# were converted again at every run, 19 and 40 µs each. A bound over all of them keeps each one once;
# tests/unit/test_statement_texts.py fails when a statement outgrows it.
STATEMENT_CACHE_BYTES = 16 * 1024
_queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, STATEMENT_CACHE_BYTES)
_SURROGATE = re.compile("[\ud800-\udfff]")
TEXT_ARRAY = postgresql.ARRAY(sa.Text)


def compiled(statement: sa.ClauseElement) -> str:
    """The statement as psycopg SQL with `%(name)s` placeholders for its named parameters; the
    values written into the expression itself (`version + 1`) are inlined as SQL literals."""
    inlined: Any = visitors.replacement_traverse(cast(visitors.ExternallyTraversible, statement), {}, _literal)
    return str(inlined.compile(dialect=_DIALECT))


def _literal(element: Any, **_: Any) -> Any:
    # A parameter made by `param()` is required at execution; one that carries its value is not.
    if not isinstance(element, sa.BindParameter) or element.required or element.callable is not None:
        return None
    if element.value is None:
        return sa.null()
    type_ = element.type if not isinstance(element.type, sa.types.NullType) else sa.literal(element.value).type
    render = type_.literal_processor(_DIALECT)
    if render is None:
        raise TypeError(f"cannot write {element.value!r} into SQL as a literal; pass it as a param()")
    return sa.literal_column(render(element.value), type_)


def param(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


def scoped(table: sa.Table) -> sa.ColumnElement[bool]:
    """The caller's scope on a table with tenant_id and app_id: bind it with `scope_params`.

    `Scope.owns` in SQL: an app-scoped caller (integration key) sees only its app's rows; a person
    sees the tenant's.
    """
    return sa.and_(
        table.c.tenant_id == param("tenant_id", sa.Text),
        sa.or_(param("app_id", sa.Text).is_(None), table.c.app_id == param("app_id", sa.Text)),
    )


def scope_params(scope: Scope) -> dict[str, Any]:
    return {"tenant_id": scope.tenant_id, "app_id": scope.app_id}


# Rows written by transactions older than every one still running: reading a log (attempts,
# inbound receipts) only up to here in (txid, seq) order means no row can later appear behind a
# reader's position.
SETTLED_TXID = sa.text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
# The most entries past the settled end the held-back probe reads. A transaction left open holds the end
# back, and every entry written since is past it: with filters its index does not cover (another app, an
# outcome, a receipt not accepted), the probe read all of them on every read (30,000: 5-8 ms a read).
HELD_BACK_PROBE_ROWS = 100


# The most rows a read of the log goes through before the settled end, whatever the reader's filters rule
# out: it reads to the `limit`-th entry of its own or to this, and says how far it went (`SettledRead`), so
# its reader goes on from there. Without it, a follower whose filters matched nothing read every row of the
# tenant's log since its position on every read (30,000: all 30,000, at each new entry of the tenant).
LOG_SCAN_ROWS = 1000


def settled_and_held_back(
    entries: sa.Select[Any],
    log: sa.Table,
    keys: Sequence[sa.ColumnElement[bool]],
    *,
    after: tuple[sa.ColumnElement[int], sa.ColumnElement[int]] | None = None,
    start: Sequence[sa.ColumnElement[bool]] = (),
) -> str:
    """`entries` (a read of `log`, attempts or inbound receipts) up to the settled end in (txid, seq)
    order, `limit` of them, from at most `scan` rows of the log; the last of those rows (if it comes before
    the `limit`-th entry) marks how far the read went; and a row when an entry past that end was held back
    (`LogRead`). `settled_read` tells the rows apart. One statement, so both parts see one snapshot:
    judged in another, the end may have moved, and an entry settled in between would be neither read nor
    reported held back.

    The rows scanned are those `keys` select (conditions of `entries` an index of `log` leads with, before
    txid and seq) past `after` (the reader's position, txid and seq, which `entries` is after too), and
    `start` (a bound on where the log starts for the reader that prunes partitions: the week of `since`);
    `entries`' other conditions are judged on them. `start` rules out no row of a week's partition it
    leaves (the default partition's, of any week, aside): a row it filtered there would be stepped over
    uncounted by the bound. A row scanned and not returned is settled: no entry can later appear before
    it, so the reader may go on after it.

    The probe reads at most HELD_BACK_PROBE_ROWS entries past the end and `after`, those `keys` select,
    from the later of the two: the first
    `entries` selects among them is held back, and so is the last of them when none is, as one the reader
    may read. Held back too often costs the reader a read a second (services/tailing.py RECHECK_SECONDS)
    while the end is held back; an entry held back and not reported would wait for its reader's idle re-read."""
    order = (log.c.txid, log.c.seq)
    assert entries.whereclause is not None, "a read of the log is scoped"
    columns = list(entries.selected_columns)
    past_the_reader = [] if after is None else [sa.tuple_(*order) > sa.tuple_(*after)]
    scanned = (
        sa.select(
            *(column.label(f"entry_{index}") for index, column in enumerate(columns)),
            entries.whereclause.label("wanted"),
            log.c.txid.label("scan_txid"),
            log.c.seq.label("scan_seq"),
        )
        .where(*keys, *past_the_reader, *start, log.c.txid < SETTLED_TXID)
        .order_by(*order)
        .limit(param("scan"))
        .subquery("scanned")
    )
    scan_order = (scanned.c.scan_txid, scanned.c.scan_seq)
    ranked = sa.select(
        scanned,
        sa.func.row_number().over(order_by=scan_order).label("scanned"),
        sa.func.lead(sa.true()).over(order_by=scan_order).is_(None).label("last"),
    ).subquery("ranked")
    wanted = sa.func.coalesce(ranked.c.wanted, sa.false())
    # An entry's own columns for the reader's entries only: the last row scanned may be another's (its body).
    settled = (
        sa.select(
            *(sa.case((wanted, ranked.c[f"entry_{index}"])) for index in range(len(columns))),
            wanted,
            sa.case((ranked.c.last, ranked.c.scan_txid)),
            sa.case((ranked.c.last, ranked.c.scan_seq)),
            ranked.c.last & (ranked.c.scanned == param("scan")),
            sa.false(),
        )
        .where(sa.or_(wanted, ranked.c.last))
        .order_by(ranked.c.scan_txid, ranked.c.scan_seq)
        .limit(param("limit"))
    )
    past = (
        sa.select(entries.whereclause.label("wanted"), sa.func.row_number().over(order_by=order).label("probed"))
        .where(*keys, _past_the_end(order, after))
        .order_by(*order)
        .limit(HELD_BACK_PROBE_ROWS)
        .subquery("past")
    )
    # Only its last column is read: the entry's own are NULL (a receipt's body is not sent for nothing).
    held_back = (
        sa.select(*(sa.null() for _ in range(len(columns) + 4)), sa.true())
        .where(sa.or_(past.c.wanted, past.c.probed == HELD_BACK_PROBE_ROWS))
        .limit(1)
    )
    return compiled(sa.union_all(settled, held_back))


def _past_the_end(
    order: tuple[sa.ColumnElement[int], sa.ColumnElement[int]],
    after: tuple[sa.ColumnElement[int], sa.ColumnElement[int]] | None,
) -> sa.ColumnElement[bool]:
    """Past the settled end and the reader's position, as one comparison of (txid, seq), from which the
    index is walked. Given as two, the index is walked from one and the other judged on each entry: from
    a position far behind the end, through every entry up to it (30,000: 182 pages, a millisecond a read)."""
    if after is None:
        return order[0] >= SETTLED_TXID
    # txid >= the end is (txid, seq) > (the end - 1, the largest seq); past the position, if it is past the end.
    reader_past_the_end = after[0] >= SETTLED_TXID
    bound = (
        sa.case((reader_past_the_end, after[0]), else_=sa.literal_column(f"({SETTLED_TXID.text}) - 1", sa.BigInteger)),
        sa.case((reader_past_the_end, after[1]), else_=sa.literal(_LARGEST_SEQ, sa.BigInteger)),
    )
    return sa.tuple_(*order) > sa.tuple_(*bound)


_LARGEST_SEQ = 2**63 - 1


class SettledRead(NamedTuple):
    """The rows of a `settled_and_held_back` statement: the reader's entries (in order), whether one was
    held back, and, when the read ended before its `limit`-th entry, the position of the last row it
    scanned (`scanned_to`) and whether it stopped there at its bound of rows (`cut_short`: more may
    follow now) rather than at the settled end."""

    entries: list[Sequence[Any]]
    held_back: bool
    scanned_to: LogPosition | None
    cut_short: bool


def settled_read(rows: Sequence[Sequence[Any]]) -> SettledRead:
    """The rows told apart by their last five columns (wanted, the last scanned row's txid and seq, cut
    short, held back), not by where they come."""
    entries: list[Sequence[Any]] = []
    held_back = cut_short = False
    scanned_to: LogPosition | None = None
    for row in rows:
        if row[-1]:
            held_back = True
            continue
        if row[-5]:
            entries.append(row[:-5])
        if row[-4] is not None:
            scanned_to, cut_short = LogPosition(row[-4], row[-3]), bool(row[-2])
    return SettledRead(entries, held_back, scanned_to, cut_short)


def acknowledgeable(log: sa.Table, *entry_conditions: sa.ColumnElement[bool]) -> str:
    """Whether a consumer of `log` (attempts, inbound receipts) may be moved to the position
    `txid`/`seq` of an unbound cursor, for `refuse_unacknowledgeable`: (settled, known). Settled: a
    reader can have been handed it. Known: it is an entry the caller's scope reads
    (`entry_conditions` say which rows a reader is handed)."""
    entry = sa.exists().where(
        scoped(log),
        log.c.txid == param("txid", sa.BigInteger),
        log.c.seq == param("seq", sa.BigInteger),
        *entry_conditions,
    )
    settled = param("txid", sa.BigInteger) < SETTLED_TXID
    return compiled(sa.select(settled, entry))


async def refuse_unacknowledgeable(connection: Connection, statement: str, scope: Scope, position: LogPosition) -> None:
    """Invalid unless a consumer in `scope` may be moved to `position`, read from a cursor that is not
    bound to its scope (domain/log_cursors.py; `statement`: `acknowledgeable`). One past the log's
    settled end would make the consumer skip every entry still to come; one of another app's,
    tenant's or stream's entries would carry it past entries of its own that it never read. A
    position whose entry retention removed is refused too: before every entry of the tenant, it
    would skip nothing, but so would another tenant's there, and nothing tells the two apart."""
    values = scope_params(scope) | {"txid": position.txid, "seq": position.seq}
    row = await (await connection.execute(statement, values)).fetchone()
    settled, known = row if row is not None else (False, False)
    if not settled:
        raise Invalid.field("cursor", "is past the end of the log: not a cursor it handed out")
    if not known:
        raise Invalid.field("cursor", "is not an entry of this log that you read: a cursor of another stream or scope")


def storable_text(value: str) -> str:
    """What a receiver sent, storable: PostgreSQL text holds no NUL, and neither text nor JSON a lone
    surrogate, which is how aiohttp hands over header bytes that are not UTF-8 (surrogateescape); each
    becomes U+FFFD. A value that cannot be stored fails its attempt's write on every retry."""
    if is_storable(value):
        return value
    value = value.replace("\x00", "\ufffd")
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def is_storable(value: str) -> bool:
    """Whether `value` is storable as it is, by the quick test that nearly every value passes: ASCII
    without NUL (storable_text)."""
    return value.isascii() and "\x00" not in value


def array_literal(values: Iterable[str | bool | int | datetime | None]) -> str:
    """`values` as a PostgreSQL array literal, for a parameter the statement reads as an array
    (`CAST(:ids AS text[])`, or beside one: `event_types && :filters`). psycopg dumps a list element
    by element in Python: three lists of ten cost 75 µs more per statement than three such strings
    (client CPU, measured), and a publish passes five. Every element is quoted, so any text (commas,
    braces, quotes, backslashes) stays one element; None is NULL."""
    return "{" + ",".join(_array_element(value) for value in values) + "}"


def _array_element(value: str | bool | int | datetime | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
