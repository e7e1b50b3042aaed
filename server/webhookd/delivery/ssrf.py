"""The SSRF guard: outbound deliveries reach only addresses the target policy allows.

Three checks, all driven by one `TargetPolicy`:

1. `GuardedResolver` wraps aiohttp's resolver (getaddrinfo in a thread): forbidden addresses are dropped
   from every lookup and `TargetRefused` is raised when none remain. aiohttp then connects to an address
   the resolver returned, so DNS rebinding between check and connect cannot switch the target.
2. aiohttp never calls the resolver for IP-literal hosts (`http://127.0.0.1/`, `http://[::1]/`;
   `TCPConnector._resolve_host` returns them as they are). So `guarded_connector` also installs a
   socket factory that checks the exact address of every socket just before it connects: literals,
   redirects and resolved names alike.
3. `check_url_host(url, policy)` lets the delivery code refuse a literal (or a legacy numeric form such as
   `http://2130706433/`, or an IPv6 literal with a zone id) before building a request, to record a clean
   `refused` outcome.

Recognising a refusal: `TargetRefused` subclasses OSError, so aiohttp wraps it as the `os_error` of a
`ClientConnectorError` (`ClientConnectorDNSError` when it came from the resolver). `find_refusal(exc)`
digs it out: `None` means an ordinary connection error.

Proxies bypass checks 1 and 2 (the proxy connects, not us): sessions for deliveries must not pick up a
proxy from the environment (`trust_env=True`). The one proxy an operator configures for deliveries
(WEBHOOKD_DELIVERY_PROXY) gets check 3 and `ProxiedNames`: webhookd looks a name up itself and refuses
it when any address it gets is forbidden. The proxy looks the name up again, so a name that changes its
answer in between still reaches the proxy's choice: the proxy must refuse internal addresses too.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Final

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from webhookd.delivery.keepalive import KeepAliveConnector
from webhookd.domain.validation import has_zone_id, legacy_ipv4

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: Final = "loopback"
PRIVATE: Final = "private"
LINK_LOCAL: Final = "link-local"
CARRIER_GRADE_NAT: Final = "carrier-grade-nat"
CLOUD_METADATA: Final = "cloud-metadata"
MULTICAST: Final = "multicast"
BROADCAST: Final = "broadcast"
UNSPECIFIED: Final = "unspecified"
DOCUMENTATION: Final = "documentation"
BENCHMARKING: Final = "benchmarking"
RESERVED: Final = "reserved"
NON_CANONICAL_IP: Final = "non-canonical-ip"
ZONED_IP: Final = "zoned-ip"
MISSING_HOST: Final = "missing-host"

# What `allow_private` lifts: the addresses of a developer's machine and of an internal network. The rest
# (metadata services, multicast, reserved space...) is never a sensible target; name a CIDR to reach it.
PRIVATE_REASONS: Final = frozenset({LOOPBACK, PRIVATE, LINK_LOCAL, CARRIER_GRADE_NAT})

# Instance metadata and host-agent endpoints of the big clouds. Most lie in ranges refused anyway; they get
# their own reason because reaching one leaks credentials, and Azure's WireServer is a public address.
_CLOUD_METADATA: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS
        "169.254.170.2",  # AWS ECS task metadata / credentials
        "169.254.170.23",  # AWS EKS pod identity agent
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
        "192.0.0.192",  # Oracle Cloud Classic
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity agent over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
    )
)


def _rules(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in pairs)


# First match wins.
_V4_RULES: Final = _rules(
    ("255.255.255.255/32", BROADCAST),
    ("0.0.0.0/8", UNSPECIFIED),  # "this network"; Linux connects 0.0.0.0 to localhost
    ("10.0.0.0/8", PRIVATE),
    ("100.64.0.0/10", CARRIER_GRADE_NAT),
    ("127.0.0.0/8", LOOPBACK),
    ("169.254.0.0/16", LINK_LOCAL),
    ("172.16.0.0/12", PRIVATE),
    ("192.0.0.0/24", RESERVED),  # IETF protocol assignments
    ("192.0.2.0/24", DOCUMENTATION),
    ("192.88.99.0/24", RESERVED),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", PRIVATE),
    ("198.18.0.0/15", BENCHMARKING),
    ("198.51.100.0/24", DOCUMENTATION),
    ("203.0.113.0/24", DOCUMENTATION),
    ("224.0.0.0/4", MULTICAST),
    ("240.0.0.0/4", RESERVED),
)

_V6_RULES: Final = _rules(
    ("::/128", UNSPECIFIED),
    ("::1/128", LOOPBACK),
    ("::ffff:0:0:0/96", RESERVED),  # SIIT IPv4-translated
    ("100::/64", RESERVED),  # discard-only
    ("2001:2::/48", BENCHMARKING),
    ("2001::/23", RESERVED),  # IETF protocol assignments (Teredo is unwrapped before this)
    ("2001:db8::/32", DOCUMENTATION),
    ("3fff::/20", DOCUMENTATION),
    ("5f00::/16", RESERVED),  # SRv6 SIDs
    ("fc00::/7", PRIVATE),  # unique local
    ("fe80::/10", LINK_LOCAL),
    ("fec0::/10", PRIVATE),  # deprecated site-local
    ("ff00::/8", MULTICAST),
)
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def classify(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (one of the reason constants above), or None if it is.

    IPv6 addresses that embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
    `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`, Teredo's server and client) are judged by what they embed.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))  # drop the %scope: equality would compare it too
    if ip in _CLOUD_METADATA:
        return CLOUD_METADATA
    if isinstance(ip, ipaddress.IPv4Address):
        return _first_rule(ip, _V4_RULES)
    if ip.ipv4_mapped is not None:
        return classify(ip.ipv4_mapped)
    reason = _first_rule(ip, _V6_RULES[:2])
    if reason is not None:
        return reason
    if ip in _IPV4_COMPATIBLE:
        # Deprecated and unroutable even when what it embeds is public.
        return classify(_low_v4(ip)) or RESERVED
    if any(ip in prefix for prefix in _NAT64):
        return classify(_low_v4(ip))
    if ip.sixtofour is not None:
        return classify(ip.sixtofour)
    if ip.teredo is not None:
        server, client = ip.teredo
        return classify(server) or classify(client)
    reason = _first_rule(ip, _V6_RULES)
    if reason is None and ip not in _GLOBAL_UNICAST_V6:
        return RESERVED
    return reason


def _first_rule(ip: IPAddress, rules: Iterable[tuple[IPNetwork, str]]) -> str | None:
    for network, reason in rules:
        if ip in network:
            return reason
    return None


def _low_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def parse_ip(text: str) -> IPAddress | None:
    """The address `text` spells in canonical notation (IPv6 may carry a `%scope`), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TargetPolicy:
    """Which addresses deliveries may connect to.

    `allowed_cidrs` win over everything, cloud metadata included: an operator who names a range means it.
    `allow_private` lifts only `PRIVATE_REASONS` (loopback, private, link-local, carrier-grade NAT).
    An IPv4-mapped IPv6 address counts as the IPv4 address it maps for the CIDR check.
    """

    def __init__(self, allow_private: bool = False, allowed_cidrs: Sequence[str] = ()) -> None:
        self.allow_private = allow_private
        networks: list[IPNetwork] = []
        for cidr in allowed_cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"allowed target CIDR {cidr!r} is not a network: {exc}") from None
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(networks)

    def check_address(self, text: str) -> str | None:
        """`check` for an address as a lookup or a socket gives it: one not in canonical notation is
        refused as such."""
        ip = parse_ip(text)
        return NON_CANONICAL_IP if ip is None else self.check(ip)

    def check(self, ip: IPAddress) -> str | None:
        """Why a delivery must not connect to `ip`, or None when it may."""
        same_host = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            same_host.append(ip.ipv4_mapped)
        if any(
            address.version == network.version and address in network
            for address in same_host
            for network in self.allowed_networks
        ):
            return None
        reason = classify(ip)
        if reason is not None and self.allow_private and reason in PRIVATE_REASONS:
            return None
        return reason

    def __repr__(self) -> str:
        cidrs = [str(n) for n in self.allowed_networks]
        return f"TargetPolicy(allow_private={self.allow_private}, allowed_cidrs={cidrs})"


class TargetRefused(OSError):
    """A delivery target resolved only to addresses the policy forbids.

    An OSError so aiohttp passes it through its connector as `ClientConnectorError.os_error`; use
    `find_refusal` to recognise it there.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"refused to connect to {host}: {reason} address")
        self.host = host
        self.reason = reason

    def __reduce__(self) -> tuple[type[TargetRefused], tuple[str, str]]:
        return (type(self), (self.host, self.reason))


def find_refusal(exc: BaseException) -> TargetRefused | None:
    """The TargetRefused behind `exc` (itself, an aiohttp `os_error`, or a cause/context), or None."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TargetRefused):
            return current
        if isinstance(current, aiohttp.ClientConnectorError):
            pending.append(current.os_error)
        pending.extend((current.__cause__, current.__context__))
    return None


def check_url_host(url: str | URL, policy: TargetPolicy) -> str | None:
    """Why the policy refuses `url`'s host when it is an IP literal, or None.

    Host names are left to `GuardedResolver` (this does no DNS). Legacy numeric IPv4 spellings that
    getaddrinfo would accept (`2130706433`, `127.1`, `0x7f.0.0.1`) are refused as `non-canonical-ip`, and
    an IPv6 literal with a zone id (`[fe80::1%25eth0]`, `[::1%25]`) as `zoned-ip`, whatever the policy.
    """
    parsed = URL(url) if isinstance(url, str) else url
    host = parsed.host
    if not host:
        return MISSING_HOST
    if has_zone_id(host):
        return ZONED_IP
    ip = parse_ip(host)
    if ip is not None:
        return policy.check(ip)
    return None if legacy_ipv4(host) is None else NON_CANONICAL_IP


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that hides forbidden addresses and refuses a host left with none.

    Wraps `inner` (aiohttp's `ThreadedResolver` by default, i.e. getaddrinfo in a thread). Construct it
    inside the running event loop.
    """

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self._inner.resolve(host, port, family)
        except UnicodeError as error:
            # getaddrinfo encodes the name (IDNA) and raises this for an empty or over-long label;
            # as an OSError aiohttp reports it like any failed lookup instead of letting it escape.
            raise OSError(socket.EAI_NONAME, f"{host} is not a name DNS can look up") from error
        allowed: list[ResolveResult] = []
        refusal: str | None = None
        for result in results:
            reason = self.policy.check_address(result["host"])
            if reason is None:
                allowed.append(result)
            elif refusal is None:
                refusal = reason
        if not allowed and refusal is not None:
            raise TargetRefused(host, refusal)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class ProxiedNames:
    """Checks a name before the delivery proxy connects to it for us. Stricter than GuardedResolver:
    the proxy picks the address, so one forbidden address refuses the name. A name webhookd cannot
    look up is left to the proxy (it may see DNS that webhookd does not). Answers are kept for `ttl`
    seconds, as the connector's DNS cache keeps them."""

    KEPT = 4096

    def __init__(self, policy: TargetPolicy, *, ttl: float = 10.0, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._ttl = ttl
        self._resolver = resolver if resolver is not None else aiohttp.ThreadedResolver()
        self._kept: dict[str, tuple[float, str | None]] = {}

    async def refusal(self, host: str, port: int) -> str | None:
        """Why `host` may not be reached through the proxy, or None."""
        now = time.monotonic()
        kept = self._kept.get(host)
        if kept is not None and kept[0] > now:
            return kept[1]
        try:
            results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except (OSError, UnicodeError):
            return None
        reasons = (self.policy.check_address(result["host"]) for result in results)
        reason = next((found for found in reasons if found is not None), None)
        if len(self._kept) >= self.KEPT:
            self._kept.clear()
        self._kept[host] = (now + self._ttl, reason)
        return reason

    async def close(self) -> None:
        await self._resolver.close()


def guarded_socket_factory(policy: TargetPolicy) -> SocketFactoryType:
    """A socket factory for aiohttp that refuses to open a socket to a forbidden address."""

    def open_socket(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        host = str(sockaddr[0])
        reason = policy.check_address(host)
        if reason is not None:
            raise TargetRefused(host, reason)
        return socket.socket(family=family, type=kind, proto=proto)

    return open_socket


def guarded_connector(
    policy: TargetPolicy,
    *,
    limit: int = 100,
    limit_per_host: int = 0,
    ttl_dns_cache: int | None = 10,
    resolver: AbstractResolver | None = None,
) -> KeepAliveConnector:
    """A TCPConnector that connects only where `policy` allows, names and IP literals alike (and never
    reuses a connection the receiver wrote on while it idled: `keepalive.py`).

    Call it inside the running event loop; `resolver` replaces the getaddrinfo-based default lookup.
    """
    return KeepAliveConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=ttl_dns_cache,
        resolver=GuardedResolver(policy, resolver),
        socket_factory=guarded_socket_factory(policy),
    )
