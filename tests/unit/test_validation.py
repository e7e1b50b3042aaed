"""What callers may send: webhook specs, update masks and page sizes (domain/validation.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from webhookd.domain.credentials import Credential
from webhookd.domain.errors import FieldViolation, Invalid
from webhookd.domain.event_types import validate_filter
from webhookd.domain.validation import (
    check_credential,
    check_headers_beside_credential,
    validate_page_size,
    validate_spec,
    validate_update_mask,
)
from webhookd.domain.webhooks import MUTABLE_FIELDS, Direction, RetryPolicy, WebhookSpec


def spec(**changes: Any) -> WebhookSpec:
    base = WebhookSpec(name="Orders", url="https://example.com/hooks", event_types=("rfp.created",))
    return dataclasses.replace(base, **changes)


def check(value: WebhookSpec, *, allow_insecure_urls: bool = False) -> WebhookSpec:
    return validate_spec(value, allow_insecure_urls=allow_insecure_urls)


def violations(value: WebhookSpec, *, allow_insecure_urls: bool = False) -> list[FieldViolation]:
    with pytest.raises(Invalid) as caught:
        validate_spec(value, allow_insecure_urls=allow_insecure_urls)
    return caught.value.violations


def fields(value: WebhookSpec, **kwargs: bool) -> list[str]:
    return [v.field for v in violations(value, **kwargs)]


def only(value: WebhookSpec, **kwargs: bool) -> FieldViolation:
    found = violations(value, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_a_good_spec_comes_back_equal() -> None:
    good = spec(headers={"X-Tenant": "acme"}, tags=("prod",), connector_id="salesforce:1")
    assert check(good) == good


# --- name ---------------------------------------------------------------------------------------


def test_name_is_stripped() -> None:
    assert check(spec(name="  Orders \n")).name == "Orders"


def test_name_of_200_characters_is_accepted_and_201_is_not() -> None:
    assert check(spec(name="n" * 200)).name == "n" * 200
    violation = only(spec(name="n" * 201))
    assert violation.field == "webhook.name"
    assert "at most 200" in violation.description


def test_surrounding_whitespace_does_not_count_towards_the_name_length() -> None:
    assert check(spec(name=" " + "n" * 200 + " ")).name == "n" * 200


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_name_is_required(name: str) -> None:
    assert only(spec(name=name)) == FieldViolation("webhook.name", "is required")


@pytest.mark.parametrize("name", ["Or\nders", "Or\x00ders", "Or\x7fders", "Or\tders"])
def test_name_rejects_control_characters(name: str) -> None:
    violation = only(spec(name=name))
    assert violation.field == "webhook.name"
    assert "control characters" in violation.description


# --- url ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "https://example.com/hooks?tenant=acme&x=1",
        "HTTPS://Example.COM/hooks",
        "https://example.com:1/",
        "https://example.com:65535/",
        "https://[2001:db8::1]:8443/hooks",
        "https://10.0.0.1/hooks",
        "https://example.com/a@b",
        "https://exämple.com/",  # international names, and their xn-- form
        "https://xn--exmple-cua.com/",
        f"https://{'a' * 63}.example.com/",  # the longest label
        "https://example.com./",  # fully qualified
    ],
)
def test_url_accepts_absolute_https_urls(url: str) -> None:
    assert check(spec(url=url)).url == url


def test_url_must_use_https_unless_insecure_urls_are_allowed() -> None:
    violation = only(spec(url="http://example.com/hooks"))
    assert violation == FieldViolation(
        "webhook.url", "must use https (set WEBHOOKD_ALLOW_INSECURE_URLS=1 to allow http)"
    )
    assert check(spec(url="http://localhost:8000/hooks"), allow_insecure_urls=True).url == (
        "http://localhost:8000/hooks"
    )


def test_url_of_2048_characters_is_accepted_and_2049_is_not() -> None:
    base = "https://example.com/"
    assert check(spec(url=base + "a" * (2048 - len(base)))).url.endswith("a")
    violation = only(spec(url=base + "a" * (2049 - len(base))))
    assert violation.field == "webhook.url"
    assert "at most 2048" in violation.description


def url_violation(url: str) -> str:
    """What the one violation of a spec with `url` says; it must be on webhook.url."""
    violation = only(spec(url=url))
    assert violation.field == "webhook.url"
    return violation.description


def test_url_is_required_for_outbound() -> None:
    assert only(spec(url="")).field == "webhook.url"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hooks", "/hooks", "mailto:ops@example.com", "javascript:x"]
)
def test_url_must_be_absolute_http_or_https(url: str) -> None:
    assert "absolute http or https URL" in url_violation(url)


@pytest.mark.parametrize("url", ["https:///hooks", "https://", "https://:443/hooks"])
def test_url_needs_a_host(url: str) -> None:
    assert "host" in url_violation(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://.example.com/",
        "https://ex..ample.com/",
        f"https://{'a' * 64}.example.com/",
        "https://xn--zz.example/",
        "https://exa%6dple.com/",
        "https://ex%40ample.com/",
        "https://a!b.example.com/",
        "https://a*b.example.com/",
        "https://a,b.example.com/",
        "https://a{b}.example.com/",
        'https://a"b.example.com/',
        "https://" + "a." * 126 + "com/",  # 255 characters: DNS names hold at most 253
    ],
    ids=[
        "empty-first-label",
        "empty-label",
        "64-character-label",
        "bad-punycode",
        "percent-encoded",
        "percent-encoded-at",
        "bang",
        "star",
        "comma",
        "braces",
        "quote",
        "name-over-253",
    ],
)
def test_url_host_must_be_a_name_dns_can_look_up(url: str) -> None:
    assert "not a name DNS can look up" in url_violation(url)


def test_url_host_name_of_253_characters_is_accepted() -> None:
    url = "https://" + "a." * 125 + "com./"  # the final dot is not counted
    assert check(spec(url=url)).url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com./hooks",
        "https://my_host.internal/",
        "https://münchen.example/",
        "https://xn--mnchen-3ya.example/",
        "https://192.0.2.10:8443/",
        "https://[2001:db8::1]/",
    ],
)
def test_url_hosts_that_resolve_or_need_no_lookup_are_accepted(url: str) -> None:
    assert check(spec(url=url)).url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1%25]/",  # RFC 6874's %25 with nothing after it
        "https://[fe80::1%25eth0]/",
        "https://[fe80::1%25eth0]:8443/hooks",
        "https://[fe80::1%251]/",  # the sender looks up the zone as written: interface 251, not 1
        "https://[fe80::1%eth0]/",  # RFC 4007's bare %, which URLs do not allow
        "https://[2001:db8::1%25eth0]/",  # a global address has no zone to pick
    ],
    ids=["empty", "named", "named-with-port", "numbered", "bare-percent", "global-address"],
)
def test_url_host_must_not_carry_an_ipv6_zone_id(url: str) -> None:
    """A zone id names a network interface of the machine that sends: the sender looks the host up as
    written (`%25eth0` is the zone `25eth0`), so no such webhook was ever delivered where it said."""
    assert "zone id" in url_violation(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://e\u200bvil.example/",
        "https://a\u200db.example/",
        "https://ex\u00adample.com/",
        "https://ex\u2060ample.com/",
        "https://ex\ufe0fample.com/",
        "https://ex\u202eample.com/",
        "https://ex\u034fample.com/",
    ],
    ids=["zero-width-space", "zero-width-joiner", "soft-hyphen", "word-joiner", "variation-selector", "bidi", "cgj"],
)
def test_url_host_must_not_hide_invisible_characters(url: str) -> None:
    """IDNA drops them, so the name looked up is not the one shown, and the sender's URL library
    refuses such a host: every attempt failed as an invalid URL."""
    assert "invisible" in url_violation(url)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://2130706433/", "127.0.0.1"),
        ("https://127.1/hooks", "127.0.0.1"),
        ("https://0x7f.0.0.1/", "127.0.0.1"),
        ("https://017700000001/", "127.0.0.1"),
        ("https://0xC0.0xA8.0.1:8443/", "192.168.0.1"),
        ("https://10.1.1/", "10.1.0.1"),
        ("https://\uff11\uff12\uff17.\uff11/", "127.0.0.1"),  # fullwidth digits: yarl sends 127.1
    ],
)
def test_url_host_must_not_be_a_legacy_ipv4_spelling(url: str, address: str) -> None:
    """getaddrinfo reads these as addresses, and the sender refuses them on every attempt
    (`ssrf.NON_CANONICAL_IP`): the caller is told the dotted spelling instead."""
    assert f"write it as {address}" in url_violation(url)


@pytest.mark.parametrize("url", ["https://1e100.net/", "https://0x.example/", "https://123.example/"])
def test_url_host_names_that_start_with_digits_are_not_addresses(url: str) -> None:
    assert check(spec(url=url)).url == url


@pytest.mark.parametrize(
    "url", ["https://user:secret@example.com/", "https://user@example.com/", "https://@example.com/"]
)
def test_url_must_not_carry_credentials(url: str) -> None:
    description = url_violation(url)
    assert "credentials" in description
    assert "in clear" in description


@pytest.mark.parametrize("url", ["https://example.com/hooks#section", "https://example.com/#"])
def test_url_must_not_have_a_fragment(url: str) -> None:
    assert "fragment" in url_violation(url)


@pytest.mark.parametrize(
    "url",
    [
        " https://example.com/",
        "https://example.com/ ",
        "https://example.com/a b",
        "https://exa\tmple.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://example.com/\x00",
        "https://example.com/\x7f",
    ],
)
def test_url_must_not_contain_whitespace_or_control_characters(url: str) -> None:
    assert "whitespace or control characters" in url_violation(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com:0/",
        "https://example.com:65536/",
        "https://example.com:abc/",
        "https://example.com:/",
        "https://example.com:+80/",
        "https://[::1]:0/",
        "https://example.com:80:80/",
        "https://[::1]:80:80/",
    ],
)
def test_url_port_must_be_1_to_65535(url: str) -> None:
    assert "port must be a number from 1 to 65535" in url_violation(url)


@pytest.mark.parametrize("url", ["https://[::1]x/", "https://[::1]x:8443/", "https://[v1.x]/"])
def test_url_host_in_brackets_must_be_an_ipv6_address_and_only_a_port_may_follow(url: str) -> None:
    """The sender refused `[::1]x` as an invalid URL on every attempt, and sent `[v1.x]` to the name `v1.x`."""
    assert "IPv6 address" in url_violation(url)


@pytest.mark.parametrize("url", ["https://example.com/%zz", "https://example.com/a%", "https://example.com/?q=%g1"])
def test_url_percent_sign_must_start_an_escape(url: str) -> None:
    """The sender's yarl sends a stray `%` as `%25`: the receiver would get another URL than the stored one."""
    assert "%25" in url_violation(url)


def test_url_with_valid_escapes_is_accepted_unchanged() -> None:
    url = "https://example.com/a%2Fb/%E2%9C%93?q=%20%25"
    assert check(spec(url=url)).url == url


def test_url_with_unbalanced_ipv6_brackets_is_not_a_url() -> None:
    violation = only(spec(url="https://[::1/hooks"))
    assert violation.field == "webhook.url"
    assert "not a valid URL" in violation.description


def test_url_reports_every_problem_at_once() -> None:
    found = violations(spec(url="http://user:pw@example.com:70000/x#frag"))
    assert [v.field for v in found] == ["webhook.url"] * 4
    text = " | ".join(v.description for v in found)
    for expected in ("https", "credentials", "port", "fragment"):
        assert expected in text


@pytest.mark.parametrize("url", ["", "not a url", "http://user:pw@x#y", "https://inbound.example/whk_1"])
def test_inbound_url_is_not_checked_and_comes_back_unchanged(url: str) -> None:
    result = check(spec(direction=Direction.INBOUND, url=url))
    assert result.url == url
    assert result.direction is Direction.INBOUND


def test_inbound_still_checks_the_other_fields() -> None:
    found = fields(spec(direction=Direction.INBOUND, url="x", name="", tags=("",)))
    assert found == ["webhook.name", "webhook.tags[0]"]


# --- event_types --------------------------------------------------------------------------------


def test_empty_event_types_means_all_events() -> None:
    assert check(spec(event_types=())).event_types == ("*",)


def test_event_types_are_deduplicated_keeping_order() -> None:
    result = check(spec(event_types=("rfp.created", "rfp.*", "rfp.created", "*", "rfp.*")))
    assert result.event_types == ("rfp.created", "rfp.*", "*")


def test_event_types_given_as_a_list_come_back_as_a_tuple() -> None:
    result = check(spec(event_types=["rfp.created", "rfp.created"]))
    assert result.event_types == ("rfp.created",)


def test_100_event_types_are_accepted_and_101_are_not() -> None:
    hundred = tuple(f"rfp.type{i}" for i in range(100))
    assert check(spec(event_types=hundred)).event_types == hundred
    violation = only(spec(event_types=(*hundred, "rfp.more")))
    assert violation.field == "webhook.event_types"
    assert "at most 100" in violation.description


def test_the_count_limit_applies_before_deduplication() -> None:
    assert only(spec(event_types=("rfp.created",) * 101)).field == "webhook.event_types"


def test_each_bad_event_type_is_reported_at_its_index_with_the_filter_rule() -> None:
    bad = ["", "rfp created", "rfp.*.x"]
    assert all(validate_filter(value) is not None for value in bad), "pick filters event_types rejects"
    found = violations(spec(event_types=("rfp.created", bad[0], "rfp.*", bad[1], bad[2])))
    assert found == [
        FieldViolation("webhook.event_types[1]", str(validate_filter(bad[0]))),
        FieldViolation("webhook.event_types[3]", str(validate_filter(bad[1]))),
        FieldViolation("webhook.event_types[4]", str(validate_filter(bad[2]))),
    ]


# --- headers ------------------------------------------------------------------------------------


def test_header_names_keep_the_callers_spelling() -> None:
    headers = {"X-Tenant-ID": "acme", "x-lower": "1"}
    assert dict(check(spec(headers=headers)).headers) == headers


def test_20_headers_are_accepted_and_21_are_not() -> None:
    twenty = {f"X-H{i}": "v" for i in range(20)}
    assert len(check(spec(headers=twenty)).headers) == 20
    violation = only(spec(headers={**twenty, "X-H20": "v"}))
    assert violation.field == "webhook.headers"
    assert "at most 20" in violation.description


def test_header_name_of_64_characters_is_accepted_and_65_is_not() -> None:
    name = "X-" + "a" * 62
    assert check(spec(headers={name: "v"})).headers == {name: "v"}
    violation = only(spec(headers={name + "a": "v"}))
    assert violation.field == f'webhook.headers["{name}a"]'
    assert "at most 64" in violation.description


@pytest.mark.parametrize("name", ["X Foo", "X-Foo:", "X-Föö", "X(Foo)", "X/Foo", 'X"Foo', "X-Foo\r\n"])
def test_header_name_must_be_an_http_token(name: str) -> None:
    violation = only(spec(headers={name: "v"}))
    assert violation.field.startswith("webhook.headers[")
    assert "HTTP token" in violation.description


def test_header_name_token_accepts_every_tchar() -> None:
    name = "!#$%&'*+-.^_`|~0aZ"
    assert check(spec(headers={name: "v"})).headers == {name: "v"}


def test_header_name_must_not_be_empty() -> None:
    assert only(spec(headers={"": "v"})) == FieldViolation('webhook.headers[""]', "name must not be empty")


def test_header_field_path_quotes_the_name_like_json() -> None:
    violation = only(spec(headers={'X"Q': "v"}))
    assert violation.field == 'webhook.headers["X\\"Q"]'


def test_header_value_of_1024_characters_is_accepted_and_1025_is_not() -> None:
    assert check(spec(headers={"X-Foo": "v" * 1024})).headers == {"X-Foo": "v" * 1024}
    violation = only(spec(headers={"X-Foo": "v" * 1025}))
    assert violation.field == 'webhook.headers["X-Foo"]'
    assert "at most 1024" in violation.description


@pytest.mark.parametrize(
    "value",
    ["a\rb", "a\nb", "a\r\nX-Injected: 1", "a\x00b", "a\x01b", "a\x0bb", "a\x1b[31m", "a\x7fb", "a\x85b", "a\x9b31m"],
    ids=["cr", "lf", "crlf", "nul", "soh", "vt", "esc", "del", "c1-next-line", "c1-csi"],
)
def test_header_value_must_not_hold_a_control_character(value: str) -> None:
    """No HTTP field value holds one (RFC 9110 5.5), and aiohttp refuses to send any but a tab: a
    value stored with one failed every attempt of the webhook as an internal error."""
    assert only(spec(headers={"X-Foo": value})) == FieldViolation(
        'webhook.headers["X-Foo"]', "value must not contain control characters (a tab is fine)"
    )


@pytest.mark.parametrize("value", [" a", "a ", "\ta", "a\t", " ", "\t"])
def test_header_value_must_not_start_or_end_with_a_space_or_tab(value: str) -> None:
    """HTTP drops them on the way (RFC 9110 5.5): the receiver would get another value than the stored one."""
    assert only(spec(headers={"X-Foo": value})) == FieldViolation(
        'webhook.headers["X-Foo"]',
        "value must not have leading or trailing spaces or tabs: HTTP drops them on the way",
    )


def test_header_value_may_be_empty_or_contain_tabs_and_unicode() -> None:
    headers = {"X-Empty": "", "X-Tab": "a\tb", "X-Unicode": "café"}
    assert check(spec(headers=headers)).headers == headers


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "keep-alive",
        "Proxy-Authenticate",
        "proxy-authorization",
        "Proxy-Connection",
        "TE",
        "trailer",
        "Transfer-Encoding",
        "UPGRADE",
    ],
)
def test_hop_by_hop_headers_are_forbidden(name: str) -> None:
    violation = only(spec(headers={name: "v"}))
    assert violation.field == f'webhook.headers["{name}"]'
    assert "hop-by-hop" in violation.description


@pytest.mark.parametrize("name", ["Host", "content-length", "Content-Type", "CONTENT-ENCODING", "Expect"])
def test_framing_and_routing_headers_are_forbidden(name: str) -> None:
    violation = only(spec(headers={name: "v"}))
    assert violation.field == f'webhook.headers["{name}"]'
    assert "cannot be overridden" in violation.description


@pytest.mark.parametrize("name", ["Authorization", "cookie", "Set-Cookie"])
def test_credential_headers_are_forbidden_and_set_webhook_credential_is_suggested(name: str) -> None:
    violation = only(spec(headers={name: "Bearer abc"}))
    assert violation.field == f'webhook.headers["{name}"]'
    assert "plain text" in violation.description
    assert "SetWebhookCredential" in violation.description


@pytest.mark.parametrize(
    "name",
    [
        "webhook-signature",
        "Webhook-Id",
        "WEBHOOK-TIMESTAMP",
        "Webhook-Anything",
        "X-Hub-Signature",
        "x-hub-signature-256",
        "X-Webhookd-Delivery",
        # Svix's names for the Standard Webhooks headers: its libraries read them before webhook-*.
        "svix-id",
        "Svix-Timestamp",
        "SVIX-SIGNATURE",
    ],
)
def test_signature_headers_are_reserved(name: str) -> None:
    violation = only(spec(headers={name: "v"}))
    assert violation.field == f'webhook.headers["{name}"]'
    assert "reserved" in violation.description


@pytest.mark.parametrize("name", ["Webhook", "X-Hub", "X-Webhookd", "X-Content-Type", "Authorization-Hint"])
def test_names_that_only_resemble_forbidden_ones_are_allowed(name: str) -> None:
    assert check(spec(headers={name: "v"})).headers == {name: "v"}


def test_header_names_that_differ_only_in_case_are_duplicates() -> None:
    violation = only(spec(headers={"X-Foo": "1", "x-foo": "2"}))
    assert violation.field == 'webhook.headers["x-foo"]'
    assert "'X-Foo'" in violation.description
    assert "case-insensitive" in violation.description


def test_headers_may_total_8_kib_on_the_wire_and_not_a_byte_more() -> None:
    # Each header is sent as "X-Hn: value\r\n": 4 + 1016 + 4 bytes, and 8 of them make 8192.
    exact = {f"X-H{i}": "v" * 1016 for i in range(8)}
    assert check(spec(headers=exact)).headers == exact
    violation = only(spec(headers={**exact, "X-H7": "v" * 1017}))
    assert violation.field == "webhook.headers"
    assert "8192 bytes" in violation.description
    assert "8193" in violation.description


def test_header_size_counts_utf8_bytes() -> None:
    exact = {f"X-H{i}": "v" * 1016 for i in range(8)}
    exact["X-H7"] = "é" + "v" * 1014  # one character fewer, same bytes
    assert check(spec(headers=exact)).headers == exact
    exact["X-H7"] = "é" + "v" * 1015
    assert only(spec(headers=exact)).field == "webhook.headers"


def test_each_header_reports_all_its_problems() -> None:
    found = violations(spec(headers={"Host": "a\nb" + "v" * 1024}))
    assert [v.field for v in found] == ['webhook.headers["Host"]'] * 3


# --- retry_policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 20])
def test_max_attempts_boundaries_are_accepted(attempts: int) -> None:
    assert check(spec(retry_policy=RetryPolicy(max_attempts=attempts))).retry_policy.max_attempts == attempts


@pytest.mark.parametrize("attempts", [0, 21, -1])
def test_max_attempts_outside_1_to_20_is_rejected(attempts: int) -> None:
    violation = only(spec(retry_policy=RetryPolicy(max_attempts=attempts)))
    assert violation == FieldViolation("webhook.retry_policy.max_attempts", f"must be from 1 to 20 (got {attempts})")


@pytest.mark.parametrize("timeout", [100, 30_000])
def test_timeout_boundaries_are_accepted(timeout: int) -> None:
    assert check(spec(retry_policy=RetryPolicy(timeout_ms=timeout))).retry_policy.timeout_ms == timeout


@pytest.mark.parametrize("timeout", [99, 30_001, 0])
def test_timeout_outside_100_to_30000_is_rejected(timeout: int) -> None:
    violation = only(spec(retry_policy=RetryPolicy(timeout_ms=timeout)))
    assert violation.field == "webhook.retry_policy.timeout_ms"
    assert f"got {timeout}" in violation.description


def test_both_retry_fields_are_reported_together() -> None:
    found = fields(spec(retry_policy=RetryPolicy(max_attempts=0, timeout_ms=0)))
    assert found == ["webhook.retry_policy.max_attempts", "webhook.retry_policy.timeout_ms"]


# --- tags ---------------------------------------------------------------------------------------


def test_tags_are_deduplicated_keeping_order() -> None:
    assert check(spec(tags=("b", "a", "b", "c", "a"))).tags == ("b", "a", "c")


def test_50_tags_are_accepted_and_51_are_not() -> None:
    fifty = tuple(f"t{i}" for i in range(50))
    assert check(spec(tags=fifty)).tags == fifty
    violation = only(spec(tags=(*fifty, "t50")))
    assert violation.field == "webhook.tags"
    assert "at most 50" in violation.description


def test_tag_of_64_characters_is_accepted_and_65_is_not() -> None:
    assert check(spec(tags=("t" * 64,))).tags == ("t" * 64,)
    violation = only(spec(tags=("ok", "t" * 65)))
    assert violation.field == "webhook.tags[1]"
    assert "at most 64" in violation.description


def test_tag_must_not_be_empty() -> None:
    assert only(spec(tags=("",))) == FieldViolation("webhook.tags[0]", "must not be empty")


@pytest.mark.parametrize("tag", [" prod", "prod ", "\tprod"])
def test_tag_must_not_have_surrounding_whitespace(tag: str) -> None:
    assert "whitespace" in " ".join(v.description for v in violations(spec(tags=(tag,))))


def test_tag_may_contain_inner_spaces_and_unicode() -> None:
    assert check(spec(tags=("team blue", "équipe"))).tags == ("team blue", "équipe")


@pytest.mark.parametrize("tag", ["a\nb", "a\x00b", "a\x1bb"])
def test_tag_must_not_contain_control_characters(tag: str) -> None:
    violation = only(spec(tags=(tag,)))
    assert violation.field == "webhook.tags[0]"
    assert "control characters" in violation.description


# --- connector_id, application_id, source ----------------------------------------------------------


@pytest.mark.parametrize("field", ["connector_id", "application_id"])
def test_reference_ids_may_be_empty_or_128_safe_characters(field: str) -> None:
    assert getattr(check(spec(**{field: ""})), field) == ""
    value = "Ab0._:-" + "x" * 121
    assert getattr(check(spec(**{field: value})), field) == value


@pytest.mark.parametrize("field", ["connector_id", "application_id"])
def test_reference_id_of_129_characters_is_rejected(field: str) -> None:
    violation = only(spec(**{field: "x" * 129}))
    assert violation.field == f"webhook.{field}"
    assert "at most 128" in violation.description


@pytest.mark.parametrize("field", ["connector_id", "application_id"])
@pytest.mark.parametrize("value", ["a b", "a/b", "a@b", "é", "a\n"])
def test_reference_id_rejects_unsafe_characters(field: str, value: str) -> None:
    violation = only(spec(**{field: value}))
    assert violation.field == f"webhook.{field}"
    assert "letters, digits and . _ : -" in violation.description


def test_source_defaults_to_edm_and_accepts_1_to_64_safe_characters() -> None:
    assert check(spec()).source == "edm"
    assert check(spec(source="s")).source == "s"
    assert check(spec(source="Ab0._:-" + "x" * 57)).source == "Ab0._:-" + "x" * 57


@pytest.mark.parametrize("source", ["", "x" * 65, "edm/x"])
def test_source_rejects_empty_long_and_unsafe_values(source: str) -> None:
    assert only(spec(source=source)).field == "webhook.source"


# --- everything together ------------------------------------------------------------------------


def test_every_violation_is_reported_in_one_error() -> None:
    bad = WebhookSpec(
        name="",
        url="http://example.com",
        event_types=("",),
        headers={"Authorization": "x", "X-Ok": "a\nb"},
        retry_policy=RetryPolicy(max_attempts=0, timeout_ms=50),
        tags=("",),
        connector_id="a b",
        application_id="x" * 129,
        source="",
    )
    assert fields(bad) == [
        "webhook.name",
        "webhook.url",
        "webhook.event_types[0]",
        'webhook.headers["Authorization"]',
        'webhook.headers["X-Ok"]',
        "webhook.retry_policy.max_attempts",
        "webhook.retry_policy.timeout_ms",
        "webhook.tags[0]",
        "webhook.connector_id",
        "webhook.application_id",
        "webhook.source",
    ]


def test_error_message_summarises_the_violations() -> None:
    with pytest.raises(Invalid) as caught:
        check(spec(name="", retry_policy=RetryPolicy(max_attempts=0)))
    assert "webhook.name: is required" in caught.value.message
    assert caught.value.reason == "INVALID_ARGUMENT"


def test_prefix_changes_every_field_path() -> None:
    with pytest.raises(Invalid) as caught:
        validate_spec(
            spec(name="", headers={"Host": "x"}, retry_policy=RetryPolicy(timeout_ms=1)),
            allow_insecure_urls=False,
            prefix="webhooks[3]",
        )
    assert [v.field for v in caught.value.violations] == [
        "webhooks[3].name",
        'webhooks[3].headers["Host"]',
        "webhooks[3].retry_policy.timeout_ms",
    ]


def test_the_input_spec_is_not_modified() -> None:
    headers = {"X-Foo": "1"}
    original = spec(name=" Orders ", tags=("a", "a"), headers=headers)
    result = check(original)
    assert original.name == " Orders " and original.tags == ("a", "a")
    assert result.headers is not headers


# --- update_mask --------------------------------------------------------------------------------


def test_update_mask_accepts_every_mutable_field() -> None:
    paths = [
        "name",
        "url",
        "event_types",
        "signature_scheme",
        "headers",
        "enabled",
        "retry_policy",
        "retry_policy.max_attempts",
        "retry_policy.backoff",
        "retry_policy.timeout_ms",
        "connector_id",
        "application_id",
        "tags",
        "source",
        "source_type",
    ]
    assert validate_update_mask(paths) == paths


def test_update_mask_removes_duplicates_keeping_order() -> None:
    assert validate_update_mask(["url", "name", "url", "name"]) == ["url", "name"]


def test_update_mask_accepts_json_camel_case_and_surrounding_spaces() -> None:
    assert validate_update_mask(["retryPolicy.maxAttempts", " eventTypes ", "event_types"]) == [
        "retry_policy.max_attempts",
        "event_types",
    ]


def test_update_mask_may_be_empty() -> None:
    assert validate_update_mask([]) == []


def test_direction_is_immutable() -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask(["name", "direction"])
    [violation] = caught.value.violations
    assert violation.field == "update_mask.paths[1]"
    assert "is immutable" in violation.description


@pytest.mark.parametrize("path", ["tenant_id", "created_at", "vault_path", "secret_fingerprint", "is_active"])
def test_output_only_fields_are_rejected(path: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask([path])
    assert caught.value.violations == [
        FieldViolation("update_mask.paths[0]", f"{path!r} is output only: the server sets it")
    ]


def test_id_and_version_are_not_updatable() -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask(["id", "version"])
    id_violation, version_violation = caught.value.violations
    assert id_violation.field == "update_mask.paths[0]"
    assert "is not updatable" in id_violation.description
    assert "identifies the webhook" in id_violation.description
    assert version_violation.field == "update_mask.paths[1]"
    assert "is not updatable" in version_violation.description
    assert "precondition" in version_violation.description


@pytest.mark.parametrize("path", ["nmae", "retry_policy.jitter", "headers.X-Foo", "", "Name", "*.name"])
def test_unknown_paths_are_rejected(path: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask([path])
    [violation] = caught.value.violations
    assert violation.field == "update_mask.paths[0]"
    assert violation.description.startswith(repr(path))


def test_a_star_alone_names_every_updatable_field_and_beside_others_is_refused() -> None:
    assert set(validate_update_mask(["*"])) == {path for path in MUTABLE_FIELDS if "." not in path}
    with pytest.raises(Invalid) as caught:
        validate_update_mask(["name", " * "])
    [violation] = caught.value.violations
    assert (violation.field, violation.description) == (
        "update_mask.paths[1]",
        "'*' replaces the whole webhook: give it alone",
    )


def test_unknown_path_lists_the_updatable_fields() -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask(["nmae"])
    description = caught.value.violations[0].description
    assert "no such field" in description
    assert "name" in description and "retry_policy.max_attempts" in description


def test_update_mask_reports_every_bad_path_with_its_index_and_prefix() -> None:
    with pytest.raises(Invalid) as caught:
        validate_update_mask(["name", "direction", "nope", "vault_path", "version"], prefix="mask")
    assert [v.field for v in caught.value.violations] == [
        "mask.paths[1]",
        "mask.paths[2]",
        "mask.paths[3]",
        "mask.paths[4]",
    ]


# --- page_size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "used"), [(0, 50), (1, 1), (50, 50), (1000, 1000), (1001, 1000), (10**9, 1000)])
def test_page_size_defaults_and_clamps(given: int, used: int) -> None:
    assert validate_page_size(given) == used


@pytest.mark.parametrize("value", [-1, -1000])
def test_negative_page_size_is_rejected(value: int) -> None:
    with pytest.raises(Invalid) as caught:
        validate_page_size(value)
    [violation] = caught.value.violations
    assert violation.field == "page_size"
    assert violation.description.startswith("must not be negative")


# -- the delivery credential -------------------------------------------------------------------------------


def test_a_credential_may_use_authorization_and_an_empty_value_removes_it() -> None:
    assert check_credential("Authorization", "Bearer abc.def", {}) == Credential("Authorization", "Bearer abc.def")
    assert check_credential("X-Api-Key", "k", {"X-Team": "orders"}) == Credential("X-Api-Key", "k")
    assert check_credential("Cookie", "session=abc", {}) == Credential("Cookie", "session=abc")
    assert check_credential("", "", {}) is None
    assert check_credential("Authorization", "", {}) is None


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("", "v", "header_name"),
        ("Bad Name", "v", "header_name"),
        ("Proxy-Authorization", "Basic x", "header_name"),
        ("Content-Type", "text/plain", "header_name"),
        ("webhook-signature", "v1,x", "header_name"),
        ("x-team", "v", "header_name"),  # the webhook's static header, in another case
        ("Authorization", "Bearer a\r\nX-Injected: 1", "header_value"),
        ("Authorization", "Bearer caf\u00e9", "header_value"),
        ("Authorization", " Bearer", "header_value"),
        ("Authorization", "Bearer ", "header_value"),
        ("Authorization", "x" * 4097, "header_value"),
    ],
)
def test_a_credential_that_cannot_be_sent_as_a_header_is_refused_by_field(name: str, value: str, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_credential(name, value, {"X-Team": "orders"})
    assert [violation.field for violation in refused.value.violations] == [field]
    if field == "header_value":
        assert value.strip() not in refused.value.message  # a credential is never echoed back


def test_a_static_header_may_not_take_the_credentials_name_in_any_case() -> None:
    with pytest.raises(Invalid) as caught:
        check_headers_beside_credential({"X-Team": "a", "x-API-key": "b"}, "X-Api-Key")
    assert [v.field for v in caught.value.violations] == ['webhook.headers["x-API-key"]']
    check_headers_beside_credential({"X-Team": "a"}, "X-Api-Key")
    check_headers_beside_credential({"X-Api-Key": "a"}, "")  # no credential
