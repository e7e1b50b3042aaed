"""Checks on what callers send: a webhook spec, an update mask, a page size.

Pure functions, no I/O. Each collects every violation it finds and raises one `Invalid`, so a caller
fixes a request in one round trip. Field paths are the API's (`webhook.retry_policy.max_attempts`,
`webhook.headers["X-Foo"]`, `webhook.event_types[2]`), and each description says what to do.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from webhookd.domain.credentials import Credential
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.event_types import validate_filter
from webhookd.domain.routing import WEBHOOK_CHANNELS_MAX, check_channels, check_rate_limit
from webhookd.domain.webhooks import (
    IMMUTABLE_FIELDS,
    MUTABLE_FIELDS,
    OUTPUT_ONLY_FIELDS,
    REPLACE_ALL,
    WHOLE_MUTABLE_FIELDS,
    Direction,
    Ordering,
    RetryPolicy,
    SignatureScheme,
    WebhookSpec,
)

NAME_MAX = 200
URL_MAX = 2048
HOST_NAME_MAX = 253
EVENT_TYPES_MAX = 100
# An empty filter list means "all events"; it is stored as the explicit wildcard.
ALL_EVENTS = ("*",)
HEADERS_MAX = 20
HEADER_NAME_MAX = 64
HEADER_VALUE_MAX = 1024
HEADERS_TOTAL_MAX_BYTES = 8 * 1024
MAX_ATTEMPTS_RANGE = (1, 20)
TIMEOUT_MS_RANGE = (100, 30_000)
TAGS_MAX = 50
TAG_MAX = 64
REFERENCE_ID_MAX = 128
SOURCE_MAX = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2 token
_REFERENCE = re.compile(r"[A-Za-z0-9._:-]*")
# What no HTTP field value holds (RFC 9110 section 5.5), and what aiohttp refuses to send; and the C1
# controls (NEL is a line break to Unicode, CSI a terminal escape), which names and tags refuse too.
_HEADER_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Unicode's Cc characters (a set Unicode never changes), and with them what str.isspace() calls space (`\s`
# is the same test in a str pattern): one scan of the string in C, not a Python call per character.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# A host name as resolvers look it up, once IDNA-encoded: labels of letters, digits, `-` and `_` (which
# some internal names use), a final dot allowed. Label lengths are IDNA's check.
_HOST_NAME = re.compile(rb"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Unicode's default-ignorable code points (and U+1806, which nameprep also drops): IDNA deletes them, so
# `e<ZWSP>vil.example` is looked up as `evil.example`, and yarl refuses such a host outright.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u1806\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_FRAMING = frozenset({"host", "content-length", "content-type", "content-encoding", "expect"})
_CREDENTIALS = frozenset({"authorization", "cookie", "set-cookie"})
# svix-*: Svix's names for the Standard Webhooks headers, which its libraries (and many hand-written
# verifiers) read before webhook-*: a static one would be checked in place of the signature sent.
_SIGNATURE_PREFIXES = ("webhook-", "svix-", "x-hub-signature", "x-webhookd-")
CREDENTIAL_VALUE_MAX = 4096
# Visible ASCII and spaces, neither first nor last (a header's value loses them in transit).
_CREDENTIAL_VALUE = re.compile(r"[!-~](?:[ !-~]*[!-~])?")


def validate_spec(spec: WebhookSpec, *, allow_insecure_urls: bool, prefix: str = "webhook") -> WebhookSpec:
    """Return `spec` normalised, or raise `Invalid` listing every violation.

    Normalising: `name` loses surrounding whitespace; `event_types`, `tags` and `channels` lose duplicates
    (first one kept); an empty `event_types` becomes `("*",)`, i.e. all events. Header names keep
    the caller's spelling but are compared case-insensitively. An inbound webhook's `url` is
    assigned by the server, so it is neither checked nor changed here; its headers, retry_policy,
    channels, rate_limit_per_second and ordering are refused unless at their defaults (nothing is
    delivered to it).
    """
    violations: list[FieldViolation] = []
    # An inbound webhook's delivery settings are refused as such, in place of their own checks.
    refused = _delivery_settings_of_inbound(spec, prefix) if spec.direction is Direction.INBOUND else {}
    name = spec.name.strip()
    violations += _check_name(name, f"{prefix}.name")
    if spec.direction is Direction.OUTBOUND:
        violations += _check_url(spec.url, f"{prefix}.url", allow_insecure=allow_insecure_urls)
    event_types, found = _check_event_types(spec.event_types, f"{prefix}.event_types")
    violations += found
    violations += refused.get("headers") or _check_headers(spec.headers, f"{prefix}.headers")
    violations += refused.get("retry_policy") or _check_retry_policy(spec.retry_policy, f"{prefix}.retry_policy")
    tags, found = _check_tags(spec.tags, f"{prefix}.tags")
    violations += found
    violations += _check_reference(spec.connector_id, f"{prefix}.connector_id")
    violations += _check_reference(spec.application_id, f"{prefix}.application_id")
    violations += _check_source(spec.source, f"{prefix}.source")
    channels, found = check_channels(spec.channels, f"{prefix}.channels", most=WEBHOOK_CHANNELS_MAX)
    violations += refused.get("channels") or found
    violations += refused.get("rate_limit_per_second") or check_rate_limit(
        spec.rate_limit_per_second, f"{prefix}.rate_limit_per_second"
    )
    violations += refused.get("ordering", [])
    if spec.direction is Direction.INBOUND and spec.signature_scheme is SignatureScheme.ED25519:
        violations.append(
            FieldViolation(
                f"{prefix}.signature_scheme",
                "ed25519 signs outbound deliveries only: an inbound webhook verifies a shared secret"
                f" ({', '.join(scheme.value for scheme in SignatureScheme if not scheme.asymmetric)})",
            )
        )
    if spec.direction is Direction.OUTBOUND and spec.signature_scheme.secret_from_sender:
        violations.append(
            FieldViolation(
                f"{prefix}.signature_scheme",
                f"{spec.signature_scheme.value} verifies what {spec.signature_scheme.value.title()} sends: inbound"
                " webhooks only (outbound ones sign with standard-webhooks, hmac-sha256 or ed25519)",
            )
        )
    if violations:
        raise Invalid(violations)
    return dataclasses.replace(
        spec, name=name, event_types=event_types, tags=tags, headers=dict(spec.headers), channels=channels
    )


def _delivery_settings_of_inbound(spec: WebhookSpec, prefix: str) -> dict[str, list[FieldViolation]]:
    """By field, a violation for each setting of an inbound webhook that only deliveries use, unless it
    is at its default: nothing is delivered to an inbound webhook, so it would be stored and shown, and
    do nothing. At its default it is what every inbound webhook has, so an update may name it (migration
    0020 reset the ones stored before this check)."""
    unused = [
        ("headers", bool(spec.headers), "are sent with deliveries: leave them empty"),
        ("retry_policy", spec.retry_policy != RetryPolicy(), "retries deliveries: leave it unset"),
        ("channels", bool(spec.channels), "choose the events delivered: leave them empty"),
        (
            "rate_limit_per_second",
            spec.rate_limit_per_second != 0,
            "paces deliveries: leave it 0 (WEBHOOKD_INBOUND_RATE_PER_SECOND limits what senders send)",
        ),
        ("ordering", spec.ordering is not Ordering.UNORDERED, "orders deliveries: leave it unset (unordered)"),
    ]
    return {
        field: [FieldViolation(f"{prefix}.{field}", f"{problem}; nothing is delivered to an inbound webhook")]
        for field, is_set, problem in unused
        if is_set
    }


def validate_update_mask(paths: Sequence[str], *, prefix: str = "update_mask") -> list[str]:
    """Return the mask's paths without duplicates, or raise `Invalid` naming each bad one.

    Paths may be given in snake_case or in their JSON camelCase (`retryPolicy.maxAttempts`); the
    result is snake_case. `*` alone is every updatable field (REPLACE_ALL). An empty mask is returned
    as is: what it means is the caller's decision.
    """
    violations: list[FieldViolation] = []
    result: list[str] = []
    for index, raw in enumerate(paths):
        if raw.strip() == REPLACE_ALL:
            if len(paths) > 1:
                violations.append(
                    FieldViolation(f"{prefix}.paths[{index}]", "'*' replaces the whole webhook: give it alone")
                )
            else:
                return sorted(WHOLE_MUTABLE_FIELDS)
            continue
        path = _snake_case(raw.strip())
        problem = _update_path_problem(path)
        if problem is not None:
            violations.append(FieldViolation(f"{prefix}.paths[{index}]", f"{raw!r} {problem}"))
        elif path not in result:
            result.append(path)
    if violations:
        raise Invalid(violations)
    return result


def validate_page_size(value: int, *, field: str = "page_size") -> int:
    """0 means the default (50); above the maximum is coerced down to 1000 (AIP-158)."""
    if value < 0:
        raise Invalid.field(field, "must not be negative (0 means the default page size)")
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def check_time_range(start: datetime | None, end: datetime | None) -> list[FieldViolation]:
    """A list's `start_time` (inclusive) and `end_time` (exclusive): a range ending before it starts
    matches nothing, and an empty page would hide the mistake."""
    if start is not None and end is not None and end <= start:
        return [FieldViolation("end_time", "must be after start_time")]
    return []


def _check_name(name: str, path: str) -> list[FieldViolation]:
    if not name:
        return [FieldViolation(path, "is required")]
    found = []
    if len(name) > NAME_MAX:
        found.append(FieldViolation(path, f"must be at most {NAME_MAX} characters (got {len(name)})"))
    if _has_control(name):
        found.append(FieldViolation(path, "must not contain control characters (such as tab or newline)"))
    return found


def _check_url(url: str, path: str, *, allow_insecure: bool) -> list[FieldViolation]:
    if not url:
        return [FieldViolation(path, "is required for an outbound webhook")]
    found = []
    if len(url) > URL_MAX:
        found.append(FieldViolation(path, f"must be at most {URL_MAX} characters (got {len(url)})"))
    if _has_space_or_control(url):
        # urlsplit silently drops some of these, so what it parses is not what we would store.
        found.append(FieldViolation(path, "must not contain whitespace or control characters (percent-encode them)"))
        return found
    try:
        parts = urlsplit(url)
    except ValueError:
        found.append(FieldViolation(path, "is not a valid URL (check the brackets around an IPv6 host)"))
        return found
    if parts.scheme not in ("http", "https"):
        found.append(FieldViolation(path, "must be an absolute http or https URL, e.g. https://example.com/hooks"))
        return found
    if parts.scheme == "http" and not allow_insecure:
        found.append(FieldViolation(path, "must use https (set WEBHOOKD_ALLOW_INSECURE_URLS=1 to allow http)"))
    hostport = parts.netloc.rpartition("@")[2]
    host = parts.hostname  # a property that parses the netloc again each time it is read
    if "@" in parts.netloc:
        found.append(
            FieldViolation(
                path,
                "must not contain credentials (user:password@): they would be stored and logged in"
                " clear; have the receiver verify the webhook signature instead",
            )
        )
    if not host:
        found.append(FieldViolation(path, "must include a host, e.g. https://example.com/hooks"))
    elif _INVISIBLE.search(host):
        found.append(
            FieldViolation(
                path,
                "host must not contain invisible characters (such as a zero-width space or a soft hyphen):"
                " a name lookup drops them, so it is not the host it looks like",
            )
        )
    elif not _resolvable_name(host):
        found.append(
            FieldViolation(
                path,
                "host is not a name DNS can look up: each dot-separated label must be 1-63 characters,"
                f" an xn-- label valid punycode, and the whole name at most {HOST_NAME_MAX} characters",
            )
        )
    if hostport.startswith("[") and not _bracketed_ipv6(hostport):
        # urlsplit reads past both; yarl refuses the first and sends `[v1.x]` to the name v1.x.
        found.append(FieldViolation(path, "host in brackets must be an IPv6 address, followed by nothing but :port"))
    elif has_zone_id(host or ""):
        found.append(
            FieldViolation(
                path,
                "host must not carry an IPv6 zone id (the %25... after the address): it names a network"
                " interface of the machine that sends, which webhookd never delivers through;"
                " write the address alone, e.g. https://[2001:db8::1]/",
            )
        )
    address = legacy_ipv4(host or "")
    if address is not None:
        found.append(
            FieldViolation(
                path,
                "host is an IPv4 address in a legacy spelling, which webhookd never delivers to:"
                f" write it as {address}",
            )
        )
    port = _port_of(hostport)
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        found.append(FieldViolation(path, f"port must be a number from 1 to 65535 (got {port!r})"))
    if _STRAY_PERCENT.search(parts.path) or _STRAY_PERCENT.search(parts.query):
        # yarl would send it as %25: the receiver would get another URL than the one stored.
        found.append(FieldViolation(path, "a % must start an escape such as %2F: write a literal % as %25"))
    if "#" in url:
        found.append(FieldViolation(path, "must not have a fragment (#...): it is never sent to the server"))
    return found


def _resolvable_name(host: str) -> bool:
    """Whether the host is an IP address, or a name that survives IDNA both ways (as the resolver
    encodes it and the sender's URL library decodes it) whose labels are letters, digits, `-` and
    `_`; any other could never be delivered to (`%` is not decoded in a host: it is looked up as is)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        ascii_name = host.encode("idna")
        ascii_name.decode("idna")
    except UnicodeError:
        return False
    # The resolver refuses a longer name (RFC 1035's 255 octets on the wire, a final dot aside).
    return _HOST_NAME.fullmatch(ascii_name) is not None and len(ascii_name.rstrip(b".")) <= HOST_NAME_MAX


def _bracketed_ipv6(hostport: str) -> bool:
    """Whether `[...]` holds an IPv6 address (with or without a zone id, which `has_zone_id` judges)
    and is followed by nothing or `:`."""
    inside, _, after = hostport[1:].partition("]")
    if after and not after.startswith(":"):
        return False
    try:
        return ipaddress.ip_address(inside).version == 6
    except ValueError:
        return False


def has_zone_id(host: str) -> bool:
    """Whether an IPv6 literal host carries a zone id, empty or not, as written (`fe80::1%25eth0`,
    RFC 6874; `fe80::1%eth0`, RFC 4007) or as yarl decodes it (`fe80::1%eth0`, `::1%`). Refused when a
    webhook is written, and by the sender for webhooks stored before that (`ssrf.check_url_host`): a
    zone names an interface of the sending machine, and aiohttp looks the host up as written, so
    `%25eth0` is the zone `25eth0`, which no interface has, and `%251` interface 251, not 1."""
    # Only an IPv6 literal has a `:` in its host, and nothing else in one may hold a `%`.
    return ":" in host and "%" in host


def legacy_ipv4(host: str) -> str | None:
    """The dotted address of a host that getaddrinfo reads as IPv4 but is not written as one (`127.1`,
    `2130706433`, `0x7f.0.0.1`), or None. Refused when a webhook is written, and by the sender for
    webhooks stored before that (`ssrf.check_url_host`), since a policy written for dotted addresses
    could miss them."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    try:
        # As the sender's URL library spells it: `１２７.１` is `127.1`.
        packed = socket.inet_aton(host.encode("idna").decode("ascii"))
    except (OSError, UnicodeError, ValueError):
        return None
    return str(ipaddress.IPv4Address(packed))


def _port_of(hostport: str) -> str | None:
    """Everything after the host's `:`, or None when no port is given (an IPv6 host is in brackets).
    Everything, so `example.com:80:80` has the port `80:80`, which is no number."""
    after_host = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    if ":" not in after_host:
        return None
    return after_host.partition(":")[2]


def _check_event_types(event_types: Sequence[str], path: str) -> tuple[tuple[str, ...], list[FieldViolation]]:
    found = []
    if len(event_types) > EVENT_TYPES_MAX:
        found.append(FieldViolation(path, f"must have at most {EVENT_TYPES_MAX} entries (got {len(event_types)})"))
    for index, event_type in enumerate(event_types):
        problem = validate_filter(event_type)
        if problem is not None:
            found.append(FieldViolation(f"{path}[{index}]", problem))
    return (_dedupe(event_types) or ALL_EVENTS), found


def _check_headers(headers: Mapping[str, str], path: str) -> list[FieldViolation]:
    found = []
    if len(headers) > HEADERS_MAX:
        found.append(FieldViolation(path, f"must have at most {HEADERS_MAX} entries (got {len(headers)})"))
    seen: dict[str, str] = {}
    total = 0
    for name, value in headers.items():
        here = _header_path(path, name)
        folded = name.lower()
        if folded in seen:
            found.append(FieldViolation(here, f"repeats header {seen[folded]!r} (header names are case-insensitive)"))
        else:
            seen[folded] = name
        found += [FieldViolation(here, problem) for problem in _header_name_problems(name)]
        if len(value) > HEADER_VALUE_MAX:
            found.append(
                FieldViolation(here, f"value must be at most {HEADER_VALUE_MAX} characters (got {len(value)})")
            )
        if _HEADER_VALUE_CONTROL.search(value):
            found.append(FieldViolation(here, "value must not contain control characters (a tab is fine)"))
        if value != value.strip(" \t"):
            # A receiver reads the value without them (RFC 9110 5.5): it would not be the one stored.
            found.append(
                FieldViolation(
                    here, "value must not have leading or trailing spaces or tabs: HTTP drops them on the way"
                )
            )
        # As sent on the wire: "Name: value\r\n".
        total += len(name.encode()) + len(value.encode()) + 4
    if total > HEADERS_TOTAL_MAX_BYTES:
        found.append(FieldViolation(path, f"must total at most {HEADERS_TOTAL_MAX_BYTES} bytes as sent (got {total})"))
    return found


def check_headers_beside_credential(headers: Mapping[str, str], credential_header: str) -> None:
    """Invalid when a static header has the name (in any case) of the delivery credential's header: the
    credential is sent in its place, so it would be stored and shown but never sent."""
    found = [
        FieldViolation(
            _header_path("webhook.headers", name),
            f"is the header the delivery credential is sent in ({credential_header}): remove the credential"
            " with SetWebhookCredential first, or name this header otherwise",
        )
        for name in headers
        if credential_header and name.lower() == credential_header.lower()
    ]
    if found:
        raise Invalid(found)


def _header_path(path: str, name: str) -> str:
    return f"{path}[{json.dumps(name)}]"


def check_credential(header_name: str, header_value: str, static: Mapping[str, str]) -> Credential | None:
    """The delivery credential SetWebhookCredential asks for (None: remove it), or Invalid naming each
    problem. The header may be a credential's (`Authorization`) but not one webhookd sets or a hop-by-hop
    one, nor one of the webhook's static headers; the value is visible ASCII and spaces, trimmed."""
    if not header_value:
        return None
    found = [FieldViolation("header_name", problem) for problem in _header_name_problems(header_name, credential=True)]
    if header_name.lower() in {name.lower() for name in static}:
        found.append(FieldViolation("header_name", "is one of the webhook's static headers: remove it there first"))
    if len(header_value) > CREDENTIAL_VALUE_MAX:
        found.append(
            FieldViolation(
                "header_value", f"must be at most {CREDENTIAL_VALUE_MAX} characters (got {len(header_value)})"
            )
        )
    if not _CREDENTIAL_VALUE.fullmatch(header_value):
        found.append(
            FieldViolation(
                "header_value", "must be visible ASCII characters and spaces, without leading or trailing spaces"
            )
        )
    if found:
        raise Invalid(found)
    return Credential(header_name, header_value)


def _header_name_problems(name: str, *, credential: bool = False) -> list[str]:
    if not name:
        return ["name must not be empty"]
    problems = []
    if len(name) > HEADER_NAME_MAX:
        problems.append(f"name must be at most {HEADER_NAME_MAX} characters (got {len(name)})")
    if not _TOKEN.fullmatch(name):
        problems.append("name must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons)")
    folded = name.lower()
    if folded in _HOP_BY_HOP:
        problems.append("is a hop-by-hop header and cannot be set on a webhook")
    elif folded in _FRAMING:
        problems.append("is set by webhookd for each delivery and cannot be overridden")
    elif folded in _CREDENTIALS and not credential:
        problems.append(
            "must not carry credentials: static headers are stored in plain text; set a credential the"
            " receiver asks for with SetWebhookCredential, which keeps it in Vault"
        )
    elif folded.startswith(_SIGNATURE_PREFIXES):
        problems.append("is reserved for webhookd's signature and delivery headers")
    return problems


def _check_retry_policy(policy: RetryPolicy, path: str) -> list[FieldViolation]:
    found = []
    low, high = MAX_ATTEMPTS_RANGE
    if not low <= policy.max_attempts <= high:
        found.append(
            FieldViolation(f"{path}.max_attempts", f"must be from {low} to {high} (got {policy.max_attempts})")
        )
    low, high = TIMEOUT_MS_RANGE
    if not low <= policy.timeout_ms <= high:
        found.append(
            FieldViolation(f"{path}.timeout_ms", f"must be from {low} to {high} milliseconds (got {policy.timeout_ms})")
        )
    return found


def _check_tags(tags: Sequence[str], path: str) -> tuple[tuple[str, ...], list[FieldViolation]]:
    found = []
    if len(tags) > TAGS_MAX:
        found.append(FieldViolation(path, f"must have at most {TAGS_MAX} entries (got {len(tags)})"))
    for index, tag in enumerate(tags):
        here = f"{path}[{index}]"
        if not tag:
            found.append(FieldViolation(here, "must not be empty"))
            continue
        if len(tag) > TAG_MAX:
            found.append(FieldViolation(here, f"must be at most {TAG_MAX} characters (got {len(tag)})"))
        if _has_control(tag):
            found.append(FieldViolation(here, "must not contain control characters"))
        if tag != tag.strip():
            found.append(FieldViolation(here, "must not start or end with whitespace"))
    return _dedupe(tags), found


def _check_reference(value: str, path: str) -> list[FieldViolation]:
    found = []
    if len(value) > REFERENCE_ID_MAX:
        found.append(FieldViolation(path, f"must be at most {REFERENCE_ID_MAX} characters (got {len(value)})"))
    if not _REFERENCE.fullmatch(value):
        found.append(FieldViolation(path, "may contain only letters, digits and . _ : - (or be empty)"))
    return found


def _check_source(source: str, path: str) -> list[FieldViolation]:
    if not source:
        return [FieldViolation(path, "must not be empty (omit it to get the default 'edm')")]
    found = []
    if len(source) > SOURCE_MAX:
        found.append(FieldViolation(path, f"must be at most {SOURCE_MAX} characters (got {len(source)})"))
    if not _REFERENCE.fullmatch(source):
        found.append(FieldViolation(path, "may contain only letters, digits and . _ : -"))
    return found


def _update_path_problem(path: str) -> str | None:
    if path in MUTABLE_FIELDS:
        return None
    if path == "id":
        return "is not updatable: it identifies the webhook (send it as webhook.id)"
    if path == "version":
        return "is not updatable: it is the precondition (send the version you read as webhook.version)"
    if path in IMMUTABLE_FIELDS:
        return "is immutable: it is fixed when the webhook is created"
    if path in OUTPUT_ONLY_FIELDS:
        return "is output only: the server sets it"
    return "names no such field; updatable fields: " + ", ".join(sorted(MUTABLE_FIELDS))


def _snake_case(path: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), path)


def _dedupe(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _has_space_or_control(text: str) -> bool:
    return _SPACE_OR_CONTROL.search(text) is not None
