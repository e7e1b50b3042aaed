from __future__ import annotations

import errno
import ipaddress
import pickle
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ConnectionKey

from webhookd.delivery.ssrf import (
    GuardedResolver,
    ProxiedNames,
    TargetPolicy,
    TargetRefused,
    check_url_host,
    classify,
    find_refusal,
    guarded_socket_factory,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # IPv4
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("172.32.0.1", None),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade-nat"),
        ("100.127.255.254", "carrier-grade-nat"),
        ("100.128.0.1", None),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud-metadata"),
        ("169.254.170.2", "cloud-metadata"),
        ("100.100.100.200", "cloud-metadata"),
        ("168.63.129.16", "cloud-metadata"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("192.88.99.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.254", "reserved"),
        ("255.255.255.255", "broadcast"),
        # IPv6
        ("2606:4700:4700::1111", None),
        ("2001:4860:4860::8888", None),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),
        ("fd00:ec2::254", "cloud-metadata"),
        ("fd20:ce::254", "cloud-metadata"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("100::1", "reserved"),
        ("2001:2::1", "benchmarking"),
        ("2001:10::1", "reserved"),
        ("5f00::1", "reserved"),
        ("4000::1", "reserved"),
        ("::ffff:0:a00:1", "reserved"),  # SIIT IPv4-translated
        # IPv4 embedded in IPv6
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "cloud-metadata"),
        ("::ffff:8.8.8.8", None),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::10.0.0.1", "private"),
        ("::8.8.8.8", "reserved"),  # deprecated even when public
        ("64:ff9b::127.0.0.1", "loopback"),  # NAT64
        ("64:ff9b::169.254.169.254", "cloud-metadata"),
        ("64:ff9b::8.8.8.8", None),
        ("64:ff9b:1::10.0.0.1", "private"),  # local-use NAT64
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
        ("2002:a9fe:a9fe::1", "cloud-metadata"),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", None),
        ("2001:0:a00:1::", "private"),  # Teredo, server 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client ~0x80fffffe = 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),  # Teredo, client 8.8.8.8
    ],
)
def test_classify(address: str, reason: str | None) -> None:
    assert classify(ip(address)) == reason


def test_default_policy_refuses_what_classify_refuses() -> None:
    policy = TargetPolicy()
    assert policy.check(ip("127.0.0.1")) == "loopback"
    assert policy.check(ip("8.8.8.8")) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "fd00::1", "169.254.1.1", "100.64.0.1"])
def test_allow_private_lifts_private_ranges(address: str) -> None:
    assert TargetPolicy(allow_private=True).check(ip(address)) is None


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "224.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.1"]
)
def test_allow_private_keeps_refusing_metadata_and_non_unicast(address: str) -> None:
    assert TargetPolicy(allow_private=True).check(ip(address)) is not None


def test_allowed_cidrs_override_classification() -> None:
    policy = TargetPolicy(allowed_cidrs=["10.1.0.0/16", "fd00:abcd::/32", "169.254.169.254/32"])
    assert policy.check(ip("10.1.2.3")) is None
    assert policy.check(ip("10.2.0.1")) == "private"
    assert policy.check(ip("fd00:abcd::5")) is None
    assert policy.check(ip("169.254.169.254")) is None  # named explicitly, so allowed
    assert policy.check(ip("127.0.0.1")) == "loopback"


def test_allowed_ipv4_cidr_covers_its_mapped_ipv6_form() -> None:
    policy = TargetPolicy(allowed_cidrs=["127.0.0.0/8"])
    assert policy.check(ip("::ffff:127.0.0.1")) is None
    assert policy.check(ip("::1")) == "loopback"


def test_allowed_cidrs_are_lenient_about_host_bits_but_refuse_garbage() -> None:
    assert TargetPolicy(allowed_cidrs=[" 10.0.0.1/8 "]).check(ip("10.9.9.9")) is None
    with pytest.raises(ValueError, match="not-a-cidr"):
        TargetPolicy(allowed_cidrs=["not-a-cidr"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/hook", None),  # names are the resolver's business
        ("https://8.8.8.8/hook", None),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]:9000/", "loopback"),
        ("http://[::FFFF:7f00:1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud-metadata"),
        ("http://[fe80::1%25eth0]/", "zoned-ip"),
        ("http://[::1%25]/", "zoned-ip"),
        ("http://[2001:4860:4860::8888%25eth0]/", "zoned-ip"),
        ("http://2130706433/", "non-canonical-ip"),
        ("http://127.1/", "non-canonical-ip"),
        ("http://0x7f.0.0.1/", "non-canonical-ip"),
        ("http://017700000001/", "non-canonical-ip"),
        ("http:///path-only", "missing-host"),
    ],
)
def test_check_url_host(url: str, reason: str | None) -> None:
    assert check_url_host(url, TargetPolicy()) == reason


def test_check_url_host_follows_the_policy() -> None:
    assert check_url_host("http://127.0.0.1/", TargetPolicy(allow_private=True)) is None
    assert check_url_host("http://127.0.0.1/", TargetPolicy(allowed_cidrs=["127.0.0.0/8"])) is None


def test_check_url_host_refuses_a_zone_id_whatever_the_policy() -> None:
    """A webhook stored before zone ids were refused: the sender would look `::1%25` up as written."""
    assert check_url_host("http://[::1%25]/", TargetPolicy(allow_private=True)) == "zoned-ip"
    assert check_url_host("http://[fe80::1%25eth0]/", TargetPolicy(allowed_cidrs=["fe80::/10"])) == "zoned-ip"


class FixedResolver(AbstractResolver):
    """Answers every lookup with the same addresses, as a DNS server we control would."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_forbidden_addresses() -> None:
    resolver = GuardedResolver(TargetPolicy(), FixedResolver("127.0.0.1", "93.184.216.34", "::1"))
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_resolver_refuses_a_name_with_only_forbidden_addresses() -> None:
    resolver = GuardedResolver(TargetPolicy(), FixedResolver("169.254.169.254", "10.0.0.1"))
    with pytest.raises(TargetRefused) as caught:
        await resolver.resolve("rebind.example", 80)
    assert caught.value.host == "rebind.example"
    assert caught.value.reason == "cloud-metadata"
    assert caught.value.errno == errno.EACCES


async def test_resolver_reports_a_name_getaddrinfo_cannot_encode_as_a_failed_lookup() -> None:
    # The real resolver: getaddrinfo refuses an empty label while encoding it, before any query.
    resolver = GuardedResolver(TargetPolicy())
    with pytest.raises(OSError) as caught:
        await resolver.resolve("ex..ample", 80)
    assert caught.value.errno == socket.EAI_NONAME and not isinstance(caught.value, TargetRefused)
    await resolver.close()


async def test_resolver_follows_the_policy_and_closes_its_inner_resolver() -> None:
    inner = FixedResolver("127.0.0.1")
    resolver = GuardedResolver(TargetPolicy(allow_private=True), inner)
    assert [r["host"] for r in await resolver.resolve("localhost", 80)] == ["127.0.0.1"]
    await resolver.close()
    assert inner.closed


class CountingResolver(FixedResolver):
    """FixedResolver that counts its lookups, or fails each one as an unknown name would."""

    def __init__(self, *addresses: str, fails: bool = False) -> None:
        super().__init__(*addresses)
        self.lookups = 0
        self.fails = fails

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        if self.fails:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return await super().resolve(host, port, family)


async def test_through_the_proxy_one_forbidden_address_refuses_the_name() -> None:
    """The proxy, not webhookd, picks among a name's addresses: an allowed one beside a forbidden one
    does not make the name safe, as it does for the direct connector (which connects to the allowed)."""
    names = ProxiedNames(TargetPolicy(), resolver=CountingResolver("93.184.216.34", "169.254.169.254"))
    assert await names.refusal("mixed.example", 443) == "cloud-metadata"
    assert (
        await ProxiedNames(TargetPolicy(), resolver=CountingResolver("93.184.216.34")).refusal("ok.example", 443)
        is None
    )
    allowed = ProxiedNames(TargetPolicy(allowed_cidrs=["10.0.0.0/8"]), resolver=CountingResolver("10.1.2.3"))
    assert await allowed.refusal("internal.example", 443) is None


async def test_a_name_webhookd_cannot_look_up_is_left_to_the_proxy() -> None:
    names = ProxiedNames(TargetPolicy(), resolver=CountingResolver(fails=True))
    assert await names.refusal("only-the-proxy-knows.example", 443) is None


async def test_answers_are_kept_for_the_ttl_then_looked_up_again() -> None:
    resolver = CountingResolver("10.0.0.1")
    names = ProxiedNames(TargetPolicy(), ttl=60.0, resolver=resolver)
    assert [await names.refusal("rebind.example", 80) for _ in range(3)] == ["private"] * 3
    assert resolver.lookups == 1
    expired = ProxiedNames(TargetPolicy(), ttl=0.0, resolver=resolver)
    await expired.refusal("rebind.example", 80)
    await expired.refusal("rebind.example", 80)
    assert resolver.lookups == 3
    await names.close()
    assert resolver.closed


def test_socket_factory_refuses_forbidden_addresses_and_opens_allowed_ones() -> None:
    factory = guarded_socket_factory(TargetPolicy())
    with pytest.raises(TargetRefused) as caught:
        factory((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::ffff:7f00:1", 80, 0, 0)))
    assert caught.value.reason == "loopback"
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("93.184.216.34", 80)))
    try:
        assert sock.family == socket.AF_INET
    finally:
        sock.close()


def test_find_refusal_sees_through_aiohttp_wrapping() -> None:
    refused = TargetRefused("internal.example", "private")
    key = ConnectionKey("internal.example", 443, True, True, None, None, None)
    wrapped = aiohttp.ClientConnectorDNSError(key, refused)
    assert find_refusal(wrapped) is refused
    assert find_refusal(refused) is refused
    try:
        try:
            raise refused
        except TargetRefused as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError as outer:
        assert find_refusal(outer) is refused
    assert find_refusal(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))) is None


def test_target_refused_survives_pickling() -> None:
    copy = pickle.loads(pickle.dumps(TargetRefused("h", "loopback")))
    assert (copy.host, copy.reason) == ("h", "loopback")
