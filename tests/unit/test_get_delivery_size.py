"""GetDelivery's answer stays under gRPC's 4 MiB message limit however often a delivery was sent,
with every attempt at the bounds of what an attempt keeps."""

from __future__ import annotations

import itertools
import string
from datetime import UTC, datetime
from pathlib import Path

from cpod.integration.v1 import webhook_service_pb2 as pb

from webhookd.api import convert
from webhookd.delivery.answers import RESPONSE_EXCERPT_BYTES, RESPONSE_HEADER_VALUE_CHARS, kept_headers
from webhookd.domain.history import DELIVERY_ATTEMPTS_SHOWN, LogEntry, LogPosition
from webhookd.domain.log_cursors import DELIVERY_LOG, LogCursors
from webhookd.domain.scope import Scope
from webhookd.domain.statuses import Outcome
from webhookd.domain.validation import CREDENTIAL_VALUE_MAX, HEADER_VALUE_MAX, HEADERS_MAX, HEADERS_TOTAL_MAX_BYTES

GRPC_MESSAGE_LIMIT = 4 * 1024 * 1024
# What "well under" leaves: the delivery itself, and room for a bound or a field that grows a little.
MARGIN = 1024 * 1024
_TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


def _short_names() -> itertools.chain[str]:
    return itertools.chain.from_iterable(map("".join, itertools.product(_TOKEN, repeat=n)) for n in (1, 2, 3))


def _worst_attempts() -> list[tuple[tuple[str, str], ...]]:
    """Response headers the recorder keeps at their largest as protobuf: many tiny headers (a map
    entry's framing on each), or long values of 4-byte characters."""
    names = _short_names()
    tiny = kept_headers([(next(names), "") for _ in range(20_000)])
    wide = kept_headers([(f"h{i}", "\U0001f600" * RESPONSE_HEADER_VALUE_CHARS) for i in range(100)])
    return [tiny, wide]


def _attempt(response_headers: tuple[tuple[str, str], ...]) -> LogEntry:
    sent = [(f"x-{i}", "v" * min(HEADER_VALUE_MAX, HEADERS_TOTAL_MAX_BYTES // HEADERS_MAX)) for i in range(HEADERS_MAX)]
    sent += [("authorization", "c" * CREDENTIAL_VALUE_MAX), ("webhook-signature", "v1," + "s" * 1000)]
    return LogEntry(
        LogPosition(2**62, 2**62),
        "dlv_" + "0" * 26,
        "evt_" + "0" * 26,
        "e" * 128,
        "whk_" + "0" * 26,
        2**31 - 1,
        Outcome.CONNECTION_ERROR,
        599,
        2**31 - 1,
        "e" * 1000,
        # Every byte of the excerpt not UTF-8: each becomes U+FFFD, three bytes.
        "\ufffd" * RESPONSE_EXCERPT_BYTES + "…[body cut short: the connection broke]",
        datetime.max.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
        request_headers=tuple(sent),
        response_headers=response_headers,
    )


def test_the_newest_attempts_shown_at_their_largest_stay_well_under_the_grpc_limit() -> None:
    for response_headers in _worst_attempts():
        attempt = convert.entry_to_proto(_attempt(response_headers), LogCursors(b"key", DELIVERY_LOG, Scope("tnt_a")))
        response = pb.GetDeliveryResponse(attempts=[attempt] * DELIVERY_ATTEMPTS_SHOWN)

        assert response.ByteSize() < GRPC_MESSAGE_LIMIT - MARGIN


def test_the_proto_documents_the_bound_the_server_keeps() -> None:
    proto = Path(__file__).resolve().parents[2] / "protos" / "cpod" / "integration" / "v1" / "webhook_service.proto"
    assert f"// Its {DELIVERY_ATTEMPTS_SHOWN} most recent attempts, oldest first" in proto.read_text()
