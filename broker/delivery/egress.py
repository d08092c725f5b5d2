"""Where the broker may push: no request forgery into the node's own network through an agency's endpoint.

An agency chooses its push endpoint, and the worker then POSTs there, signed by the contact point. Left
open, that lets an agency make the node call its own loopback services, the cloud metadata service or
the private network behind it (server-side request forgery). So a push target must be a publicly
routable address, unless an administrator has allow-listed its network in
``SPOC_PUSH_ALLOWED_NETWORKS`` (CIDRs, comma-separated; e.g. ``127.0.0.1/32`` for an agency's receiver
on the same machine in the embedded demo, or the private network of the agencies in a real node).

Refused (each with its name in the reason): unspecified, loopback, link-local (with the cloud metadata
addresses 169.254.169.254 and fd00:ec2::254), multicast, shared address space (CGNAT, 100.64.0.0/10),
private (RFC 1918, IPv6 ULA), reserved, and whatever else is not globally routable; an IPv6 address
that embeds an IPv4 one (IPv4-mapped, 6to4, NAT64) is judged by the IPv4 address it carries.

Checked twice:

* when the endpoint is set (``check_url``): the scheme (``https``; plain ``http`` only to an
  allow-listed IP literal), the host as written (also the legacy IPv4 spellings ``2130706433`` or
  ``0x7f.1`` that resolvers accept), and every address its name resolves to now;
* at every push (``GuardedBackend``), because DNS can change: the host is resolved once, every address
  is checked, and the connection is opened to a checked address itself, so nothing resolves the name
  a second time between the check and the connection. TLS still verifies the certificate against the
  name, and the request keeps its ``Host``.

A refused push sends nothing and is dead-lettered at once with the reason (``broker.delivery.push``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from broker.errors import InvalidInput

__all__ = ["EgressPolicy", "GuardedTransport", "PushTargetRefused", "forbidden_kind"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "SPOC_PUSH_ALLOWED_NETWORKS"
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
ULA = ipaddress.ip_network("fc00::/7")
TEMPORARY_DNS_ERRORS = frozenset({socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", socket.EAI_AGAIN)})


class PushTargetRefused(InvalidInput):
    """The push endpoint is, or resolves to, an address the broker does not call."""

    slug = "push-target-refused"
    title = "Push endpoint refused"


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_kind(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is ("a loopback address"…), or None for a public one."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        kind = forbidden_kind(inner)
        return f"{kind} (inside the IPv6 address {ip})" if kind else None
    if ip in METADATA:
        return "the cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in SHARED:
        return "a shared (carrier-grade NAT) address"
    if any(ip in net for net in RFC1918) or ip in ULA:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "an address that is not publicly routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one, including the legacy IPv4 forms resolvers accept."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))  # 2130706433, 0x7f.1, 127.1 …
    except OSError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses pushes may reach: public ones, and those in the admin's ``allowed`` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    def allow_listed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def check_address(self, ip: IPAddress, *, host: str) -> None:
        if self.allow_listed(ip):
            return
        kind = forbidden_kind(ip)
        if kind is not None:
            what = f"{host} is {kind}" if literal_address(host) == ip else f"{host} resolves to {ip}, {kind}"
            raise PushTargetRefused(
                f"push endpoint refused: {what}; the broker pushes only to public addresses, or to "
                f"networks an administrator allow-lists in {SETTING}"
            )

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address of ``host``, each checked; raises if any is refused (a name is judged whole)."""
        literal = literal_address(host)
        if literal is not None:
            self.check_address(literal, host=host)
            return [literal]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in TEMPORARY_DNS_ERRORS:  # the resolver is down: retried like a refused connection
                raise httpcore.ConnectError(f"{host}: temporary failure in name resolution") from exc
            raise PushTargetRefused(f"push endpoint refused: {host} does not resolve") from exc
        except UnicodeError as exc:
            raise PushTargetRefused(f"push endpoint refused: {host} does not resolve") from exc
        found: list[IPAddress] = []
        for *_, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in found:
                self.check_address(ip, host=host)
                found.append(ip)
        if not found:
            raise PushTargetRefused(f"push endpoint refused: {host} does not resolve")
        return found

    def check_url(self, url: str, *, resolve: bool = True) -> None:
        """The checks made when an endpoint is set: form, scheme, host; with ``resolve``, its addresses
        now (a name that does not resolve yet is accepted: every push resolves and checks it again)."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("https", "http"):
            raise PushTargetRefused("the push endpoint must be an https:// URL")
        if not host or parts.username or parts.password or parts.fragment:
            raise PushTargetRefused("the push endpoint must name a host, without credentials or fragment")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise PushTargetRefused("the push endpoint has an invalid port") from exc
        literal = literal_address(host)
        if parts.scheme == "http" and (literal is None or not self.allow_listed(literal)):
            raise PushTargetRefused(
                "the push endpoint must be an https:// URL (plain http:// only to an IP address "
                f"allow-listed in {SETTING})"
            )
        if literal is not None:
            self.check_address(literal, host=host)
        elif resolve:
            try:
                self.resolve(host, port)
            except httpcore.ConnectError:
                pass  # the resolver is down now; every push checks again
            except PushTargetRefused as exc:
                if not isinstance(exc.__cause__, socket.gaierror | UnicodeError):
                    raise


class GuardedBackend(httpcore.SyncBackend):
    """Opens each connection to an address the policy accepted, resolving the name exactly once."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.resolve(host, port)
        error: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # noqa: S101 - resolve() returns at least one address
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport (request conversion, error mapping), its pool on a ``GuardedBackend``."""

    def __init__(self, policy: EgressPolicy, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)  # no proxy from the environment: it would resolve
        # httpx does not take a network backend; its pool is rebuilt the way HTTPTransport builds it.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )
        self.policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_url(
            str(request.url), resolve=False
        )  # scheme and literal host; addresses at connect
        return super().handle_request(request)


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())
