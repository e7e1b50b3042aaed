"""Inbound receipts: the webhook a request is for, the receipt row, and the consumers' positions.

A receipt also writes a line to the attempt log (outcome `received` or `rejected`), so it shows up
in the webhook's DeliveryLog like an outbound attempt does.

A sender's retry of an accepted message is stored once. inbound_events is partitioned by week, and
a unique index there can only be unique within a week, so the check is the insert's own: under a
transaction-scoped advisory lock on (webhook, message id), the row goes in only when no accepted
receipt of that message exists in any partition. Retries of one message queue on the lock; the
insert that follows the first one's commit sees its row. So a duplicate is found for as long as
retention keeps the original, as it was with the unique index, for one index probe per week kept.

A receipt is stored with a token from a bucket shared by every process (`inbound_buckets`): an
accepted one from its webhook's, a rejected one from the webhook's refusals' bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from webhookd.domain import ids
from webhookd.domain.history import LogPosition, LogRead
from webhookd.domain.inbound import InboundEvent, InboundTarget, Receipt, Stored
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import Outcome, ReceiptStatus
from webhookd.domain.webhooks import Direction, SignatureScheme
from webhookd.store import token_buckets
from webhookd.store.database import BEGIN, COMMIT, Connection, Database, rollback
from webhookd.store.sql import (
    LOG_SCAN_ROWS,
    acknowledgeable,
    compiled,
    param,
    refuse_unacknowledgeable,
    scope_params,
    scoped,
    settled_and_held_back,
    settled_read,
    storable_text,
)
from webhookd.store.tables import inbound_consumers, inbound_events

_ACCEPTED = ReceiptStatus.ACCEPTED.value
_RECEIPT_COLUMNS = (
    "id",
    "tenant_id",
    "app_id",
    "webhook_id",
    "message_id",
    "status",
    "reason",
    "event_type",
    "content_type",
    "body",
    "received_at",
)
_ATTEMPT_COLUMNS = (
    "id",
    "tenant_id",
    "app_id",
    "delivery_id",
    "event_id",
    "event_type",
    "webhook_id",
    "attempt",
    "outcome",
    "http_status",
    "latency_ms",
    "error",
    "response_excerpt",
    "next_attempt_at",
    "occurred_at",
)
_TARGET = compiled(
    sa.text(
        f"""
SELECT id, tenant_id, app_id, signature_scheme, vault_path, secret_fingerprint, url, version FROM webhooks
WHERE id = :id AND direction = '{Direction.INBOUND.value}' AND enabled AND deleted_at IS NULL
"""
    )
)
# A webhook's refusals have a bucket of their own in inbound_buckets, under a key no webhook id can
# be (ids are a prefix and a ULID, never a colon; store/token_buckets.py): what anyone with the
# callback URL can send unsigned must not spend the tokens of the sender's signed requests.
_REFUSALS_BUCKET = "{}:refusals"
# Any fixed pair's first half: the (class, hash) advisory locks are a key space apart from the
# single-number locks of the claim, migrations, retention and partitions.
MESSAGE_LOCK_CLASS = 72_026_113
_LOCK_MESSAGE = compiled(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            MESSAGE_LOCK_CLASS,
            sa.func.hashtext(param("webhook_id", sa.Text) + " " + param("message_id", sa.Text)),
        )
    )
)
# A token from the receipt's bucket, the receipt and its log line in one statement, so recording is
# one round trip (BEGIN, the lock, this, COMMIT, pipelined). The bucket's row lock orders every
# process's requests, so the limit holds for the fleet (store/token_buckets.py). Without a token
# nothing else is written, and `held` says what the bucket holds, to tell when one will be. With
# `once`, the receipt goes in only when no accepted receipt of its message exists (see the module's
# note); when it does not go in, neither does the line. The row says whether a token was taken, what
# the bucket held, and the receipt's id if it went in.
_RECORD = compiled(
    sa.text(
        f"""
WITH taken AS ({token_buckets.take("inbound_buckets", webhook_id=":bucket", rate="rate")}
    RETURNING webhook_id
), receipt AS (
    INSERT INTO inbound_events ({", ".join(_RECEIPT_COLUMNS)})
    SELECT :id, :tenant_id, CAST(:app_id AS text), :webhook_id, CAST(:message_id AS text), :status, :reason,
        :event_type, :content_type, CAST(:body AS bytea), CAST(:received_at AS timestamptz)
    WHERE EXISTS (SELECT 1 FROM taken) AND (NOT :once OR NOT EXISTS (
        SELECT 1 FROM inbound_events earlier
        WHERE earlier.webhook_id = :webhook_id AND earlier.message_id = :message_id AND earlier.status = '{_ACCEPTED}'))
    RETURNING id
), line AS (
    INSERT INTO attempts ({", ".join(_ATTEMPT_COLUMNS)})
    SELECT :log_id, :tenant_id, CAST(:app_id AS text), receipt.id, :event_id, :event_type, :webhook_id, 1, :outcome,
        CAST(:http_status AS integer), CAST(:latency_ms AS integer), :reason, '', NULL,
        CAST(:received_at AS timestamptz)
    FROM receipt
)
SELECT EXISTS (SELECT 1 FROM taken), ({token_buckets.held("inbound_buckets", webhook_id=":bucket", rate="rate")}),
    (SELECT id FROM receipt)
"""
    )
)
_EVENT_COLUMNS = (
    inbound_events.c.txid,
    inbound_events.c.seq,
    inbound_events.c.id,
    inbound_events.c.webhook_id,
    inbound_events.c.message_id,
    inbound_events.c.event_type,
    inbound_events.c.content_type,
    inbound_events.c.body,
    inbound_events.c.received_at,
)
_READ_CONDITIONS = (scoped(inbound_events), inbound_events.c.status == _ACCEPTED)
_AFTER = (param("after_txid", sa.BigInteger), param("after_seq", sa.BigInteger))
_WEBHOOK = inbound_events.c.webhook_id == param("webhook_id")


def _read(*, webhook: bool, after: bool) -> str:
    # The conditions the log's indexes lead with: the tenant, or the webhook, then (txid, seq) after the reader.
    keys = [inbound_events.c.tenant_id == param("tenant_id", sa.Text), *([_WEBHOOK] if webhook else [])]
    past = [sa.tuple_(inbound_events.c.txid, inbound_events.c.seq) > sa.tuple_(*_AFTER)] if after else []
    entries = sa.select(*_EVENT_COLUMNS).where(*_READ_CONDITIONS, *keys, *past)
    return settled_and_held_back(entries, inbound_events, keys, after=_AFTER if after else None)


_READS = {(webhook, after): _read(webhook=webhook, after=after) for webhook in (False, True) for after in (False, True)}
# A consumer belongs to the caller's whole scope, like every read: another app of the tenant that uses
# the same name has a position of its own.
_THE_CONSUMER = sa.and_(
    inbound_consumers.c.tenant_id == param("tenant_id"),
    inbound_consumers.c.app_id == param("app_key"),
    inbound_consumers.c.name == param("name"),
)
_CONSUMER_POSITION = compiled(sa.select(inbound_consumers.c.txid, inbound_consumers.c.seq).where(_THE_CONSUMER))
# Positions only move forward: a stale acknowledgement leaves the newer position as it is.
_ACKNOWLEDGE = compiled(
    sa.text(
        """
INSERT INTO inbound_consumers (tenant_id, app_id, name, txid, seq, updated_at)
VALUES (:tenant_id, :app_key, :name, :txid, :seq, :now)
ON CONFLICT (tenant_id, app_id, name)
DO UPDATE SET txid = excluded.txid, seq = excluded.seq, updated_at = excluded.updated_at
WHERE (inbound_consumers.txid, inbound_consumers.seq) < (excluded.txid, excluded.seq)
"""
    )
)

# A reader is handed accepted receipts only.
_ACKNOWLEDGEABLE = acknowledgeable(inbound_events, inbound_events.c.status == _ACCEPTED)


def _event(row: Sequence[Any]) -> InboundEvent:
    return InboundEvent(
        position=LogPosition(row[0], row[1]),
        id=row[2],
        webhook_id=row[3],
        message_id=row[4],
        event_type=row[5],
        content_type=row[6],
        body=bytes(row[7] or b""),
        received_at=row[8],
    )


def _consumer_keys(scope: Scope, name: str) -> dict[str, str]:
    return {"tenant_id": scope.tenant_id, "app_key": scope.app_id or "", "name": name}


class InboundStore:
    """ports.InboundRepository in PostgreSQL."""

    def __init__(self, database: Database, *, scan_rows: int = LOG_SCAN_ROWS) -> None:
        self._db = database
        self._scan_rows = scan_rows

    async def target(self, webhook_id: str) -> InboundTarget | None:
        """The live, enabled inbound webhook with this id (its id is the only key the sender has)."""
        row = await self._db.fetch_one(_TARGET, {"id": webhook_id})
        if row is None:
            return None
        return InboundTarget(row[0], row[1], row[2], SignatureScheme(row[3]), row[4], row[5], row[6], row[7])

    async def record(self, target: InboundTarget, receipt: Receipt, *, rate_per_second: float, burst: int) -> Stored:
        """Takes a token from the webhook's bucket for an accepted receipt, from its refusals' bucket for
        a rejected one, and with it stores the receipt and its log line in one transaction, pipelined.
        Nothing is written without a token, or when an accepted message with the same id exists."""
        receipt_id = ids.new_id(ids.RECEIPT_PREFIX)
        once = receipt.accepted and receipt.message_id is not None
        # The sender's words (its body's `type`, its headers) as PostgreSQL can hold them.
        message_id = None if receipt.message_id is None else storable_text(receipt.message_id)
        values = {
            "bucket": target.webhook_id if receipt.accepted else _REFUSALS_BUCKET.format(target.webhook_id),
            "rate": rate_per_second,
            "burst": burst,
            "id": receipt_id,
            "tenant_id": target.tenant_id,
            "app_id": target.app_id,
            "webhook_id": target.webhook_id,
            "message_id": message_id,
            "status": (ReceiptStatus.ACCEPTED if receipt.accepted else ReceiptStatus.REJECTED).value,
            "reason": receipt.reason,
            "event_type": storable_text(receipt.event_type),
            "content_type": storable_text(receipt.content_type),
            "body": receipt.body if receipt.accepted else None,
            "received_at": receipt.received_at,
            "once": once,
            # The log line: an attempt of the receipt (its "delivery"), under the message's id as its event.
            "log_id": ids.new_id(ids.ATTEMPT_PREFIX),
            "event_id": message_id or receipt_id,
            "outcome": (Outcome.RECEIVED if receipt.accepted else Outcome.REJECTED).value,
            "http_status": receipt.http_status,
            "latency_ms": receipt.latency_ms,
        }

        async def write(connection: Connection) -> Any:
            try:
                async with connection.pipeline():
                    await connection.execute(BEGIN)
                    if once:
                        await connection.execute(_LOCK_MESSAGE, values)
                    recorded = await connection.execute(_RECORD, values)
                    await connection.execute(COMMIT)
                return await recorded.fetchone()
            except BaseException:
                await rollback(connection)
                raise

        taken, tokens, stored_id = await self._db.run(write)
        if not taken:
            wait = token_buckets.seconds_until_a_token(float(tokens or 0.0), rate_per_second)
            return Stored(None, retry_after_seconds=wait)
        return Stored(stored_id)

    async def read(
        self, scope: Scope, *, webhook_id: str | None, after: LogPosition | None, limit: int
    ) -> LogRead[InboundEvent]:
        values: dict[str, Any] = scope_params(scope) | {
            "limit": limit,
            "scan": self._scan_rows,
            "webhook_id": webhook_id,
        }
        if after is not None:
            values |= {"after_txid": after.txid, "after_seq": after.seq}
        statement = _READS[(webhook_id is not None, after is not None)]
        read = settled_read(await self._db.fetch_all(statement, values, generic_plan=True))
        return LogRead([_event(row) for row in read.entries], read.held_back, read.scanned_to, read.cut_short)

    async def consumer_position(self, scope: Scope, name: str) -> LogPosition | None:
        row = await self._db.fetch_one(_CONSUMER_POSITION, _consumer_keys(scope, name))
        return None if row is None else LogPosition(row[0], row[1])

    async def acknowledge(
        self, scope: Scope, name: str, position: LogPosition, *, now: datetime, handed_out: bool
    ) -> LogPosition:
        """Moves the consumer to `position` unless it is already past it; returns where it is."""
        keys = _consumer_keys(scope, name)

        async def write(connection: Connection) -> Any:
            current = await (await connection.execute(_CONSUMER_POSITION, keys)).fetchone()
            if current is not None and position <= (current[0], current[1]):
                return current  # stale: the consumer stays where it is
            if not handed_out:
                await refuse_unacknowledgeable(connection, _ACKNOWLEDGEABLE, scope, position)
            await connection.execute(_ACKNOWLEDGE, keys | {"txid": position.txid, "seq": position.seq, "now": now})
            return await (await connection.execute(_CONSUMER_POSITION, keys)).fetchone()

        row = await self._db.transaction(write)
        return LogPosition(row[0], row[1])
