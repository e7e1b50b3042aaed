"""The seed's Schema table (../shared/seed/webhook-playground.txt): the Webhook fields the Playground
shows and the REST JSON carries, in order.

The seed is a text capture of the page, so a row's cells run together: `source_typeenumfrontend |
backend | server | system | apiWhere the write originated. Defaults to 'api'.` The parser splits
a row at the first type word that can follow a field name. When the seed is not beside the repo
(a checkout on its own), the same table is embedded below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEED_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "seed" / "webhook-playground.txt"
TYPE_WORDS = ("uuid", "string", "date-time", "enum", "json", "boolean", "number")
_NAME = re.compile(r"(?P<name>[a-z_]+)(?P<star>\*?)")
_ENUM_VALUES = re.compile(r"(?P<values>(?:[a-z_]+ \| )+[a-z_]+)(?P<notes>.*)")


@dataclass(frozen=True)
class SeedField:
    name: str
    starred: bool
    type: str
    values: tuple[str, ...]
    notes: str


def parse_schema(text: str) -> list[SeedField]:
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("FieldTypeNotes") + 1
    fields = []
    for line in lines[start:]:
        if line == "API":
            break
        if not line:
            continue
        fields.append(_parse_row(line))
    return fields


def _parse_row(line: str) -> SeedField:
    # The shortest field name that is followed by a type word (and, for enum, by its values).
    for cut in range(1, len(line)):
        name = _NAME.fullmatch(line[:cut])
        kind = next((t for t in TYPE_WORDS if line.startswith(t, cut)), None)
        if name is None or kind is None:
            continue
        rest = line[cut + len(kind) :]
        values: tuple[str, ...] = ()
        if kind == "enum":
            found = _ENUM_VALUES.fullmatch(rest)
            if found is None:
                continue
            values = tuple(found["values"].split(" | "))
            rest = found["notes"]
        return SeedField(name["name"], bool(name["star"]), kind, values, rest.strip())
    raise ValueError(f"cannot parse seed row {line!r}")


# Webhook fields that come after the seed's 32, unchanged before them (routing: channels, the rate
# limit, ordered delivery; the delivery credential's header). The JSON and the Playground show the
# seed's, then these, in this order.
ADDED_FIELDS = ("channels", "rate_limit_per_second", "ordering", "credential_header")


def seed_schema() -> list[SeedField]:
    text = SEED_PATH.read_text(encoding="utf-8") if SEED_PATH.is_file() else EMBEDDED_SEED
    return parse_schema(text)


EMBEDDED_SEED = """\
FieldTypeNotes
id*uuidServer-assigned ULID with type prefix (e.g. per_…).
tenant_id*stringTenant scope — auto-stamped from the caller's JWT.
app_idstringApp scope. Stamped ONLY when the caller's JWT was minted for a specific Application \
(integration API keys). Absent for human-user sessions. Filters reads when present.
created_at*date-timeServer stamp.
updated_at*date-timeServer stamp; updated on every patch.
created_byuuidPerson id from the caller's JWT (sub).
updated_byuuidPerson id from the last writer's JWT (sub).
sourcestringProvenance tag — defaults to 'edm'.
source_typeenumfrontend | backend | server | system | apiWhere the write originated. Defaults to 'api'.
is_deletedbooleanSoft-delete flag. Excluded from default list queries.
deleted_atdate-timeStamped when soft-deleted; null otherwise.
deleted_byuuidPerson id who soft-deleted; null otherwise.
schema_versionnumberDocument schema version. Bumped on incompatible writes.
namestringHuman-readable webhook name.
directionstringoutbound = cPod pushes to url; inbound = external system calls cPod.
urlstringTarget URL (outbound) or callback URL (inbound).
event_typesjsonEvent type filters, e.g. rfp.created, rfp.status_changed.
signature_schemestringPayload signing scheme.
vault_pathstringVault KV v2 path where the HMAC secret lives; never stored inline.
headersjsonStatic custom headers (non-secret) sent with every delivery.
enabledbooleanWhether this webhook is active.
retry_policyjson{ maxAttempts, backoff: 'exponential', timeoutMs }
last_delivery_atdate-timeTimestamp of the last delivery attempt.
last_delivery_statusstringOutcome of the last delivery attempt.
consecutive_failuresnumberCount of consecutive delivery failures.
paused_atdate-timeTimestamp when the webhook was auto-paused after N consecutive failures.
connector_idstringID of the owning Connector, if this webhook is connector-owned.
tagsjsonFree-form tags.
versionnumberOptimistic concurrency version counter.
application_iduuidOwning application id.
secret_fingerprintstringHash of the signing secret; raw secret is never stored.
is_activebooleanWhether this webhook is active.

API
"""
