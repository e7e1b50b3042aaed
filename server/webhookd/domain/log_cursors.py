"""Log cursors, bound to the log and scope that handed them out (DeliveryLog, StreamInboundEvents).

A cursor is an entry's `txid.seq` behind a keyed digest of the log, tenant and app it was read in,
under a key derived from the one the database holds for page tokens, so every process accepts every
other's. Another tenant's, app's or log's cursor is then refused as one this caller was never given,
even where its position would skip nothing (before every entry of the caller's): scopes never see
each other's logs. Cursors handed out before they were bound (`txid.seq` alone) still read back, as
unbound; acknowledging one is checked against the log instead (store/sql.acknowledgeable).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import NamedTuple

from webhookd.domain.errors import Invalid
from webhookd.domain.history import LogPosition
from webhookd.domain.scope import Scope

DELIVERY_LOG = "delivery_log"
INBOUND_EVENTS = "inbound_events"

_BOUND = b"\x01"  # an unbound cursor's first byte is a digit
_MAC_BYTES = 12
_BIGINT = 2**63
# base64's url-safe alphabet from the standard one; what binascii gives, without base64's wrappers
# (one cursor per entry of a log stream).
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


class Cursor(NamedTuple):
    position: LogPosition
    # False: a cursor from before they were bound, whose scope nothing says.
    bound: bool


class LogCursors:
    """The cursors of one log as one scope reads it (tenant, and app or '' for a person's whole tenant,
    as consumers are keyed)."""

    def __init__(self, key: bytes, log: str, scope: Scope) -> None:
        # A key of its own: a page token and a cursor never vouch for each other.
        own_key = hashlib.blake2b(key, digest_size=32, person=b"webhookd.cursor").digest()
        # The scope's part digested once; each cursor copies it (a stream makes one per entry).
        self._mac = hashlib.blake2b(key=own_key, digest_size=_MAC_BYTES)
        self._mac.update(json.dumps([log, scope.tenant_id, scope.app_id or ""]).encode())

    def encode(self, position: LogPosition) -> str:
        payload = b"%d.%d" % position
        mac = self._mac.copy()
        mac.update(payload)
        raw = _BOUND + mac.digest() + payload
        return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE, b"=").decode()

    def decode(self, cursor: str, *, field: str) -> Cursor:
        """Invalid when `cursor` is corrupt, or bound to another log or scope (or altered)."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except ValueError:
            raise Invalid.field(field, "is not a cursor from this log") from None
        if not raw.startswith(_BOUND):
            return Cursor(_position(raw, field), bound=False)
        mac, payload = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
        expected = self._mac.copy()
        expected.update(payload)
        if not hmac.compare_digest(mac, expected.digest()):
            raise Invalid.field(field, "is not a cursor this log handed to you: another log's, tenant's or app's")
        return Cursor(_position(payload, field), bound=True)


def _position(payload: bytes, field: str) -> LogPosition:
    try:
        txid, seq = (int(part) for part in payload.decode().split("."))
    except ValueError:
        raise Invalid.field(field, "is not a cursor from this log") from None
    # A forged cursor may hold any integer; PostgreSQL's bigint would refuse it with an error.
    if not (0 <= txid < _BIGINT and 0 <= seq < _BIGINT):
        raise Invalid.field(field, "is not a cursor from this log")
    return LogPosition(txid, seq)
