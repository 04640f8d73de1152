"""Which address a request really came from, without trusting headers anyone can forge."""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REMEMBERED_ANSWERS = 4096  # resolve_client_ip's answers kept per process (least recent out)
REMEMBERED_HEADERS_LENGTH = 200  # forwarding headers longer than this are resolved every time


def parse_networks(spec: str) -> tuple[Network, ...]:
    """'10.0.0.1, 192.168.0.0/16' -> networks (ValueError on a malformed entry)."""
    return tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())


def address_in(address: str, networks: tuple[Network, ...]) -> bool:
    """Is address (a literal IP) inside one of networks? False for anything unparsable."""
    return _is_trusted(address, networks)


def resolve_client_ip(
    peer: str, forwarded_for: str | None, real_ip: str | None, trusted: tuple[Network, ...]
) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted hop it reports.

    Asked on every signed-in request (its session notes where it is used), so an answer is
    remembered per process (parsing addresses costs 10–15 µs): a pure function of its
    arguments, for headers of ordinary length only, so the memory it holds stays bounded.
    """
    if not trusted:
        return peer  # no proxy is believed: nothing forwarded counts
    if len(forwarded_for or "") + len(real_ip or "") > REMEMBERED_HEADERS_LENGTH:
        return _resolve(peer, forwarded_for, real_ip, trusted)
    return _remembered(peer, forwarded_for, real_ip, trusted)


def _resolve(
    peer: str, forwarded_for: str | None, real_ip: str | None, trusted: tuple[Network, ...]
) -> str:
    if not _is_trusted(peer, trusted):
        return peer
    # X-Forwarded-For is "client, proxy1, proxy2": walk from the right (our side) and stop at
    # the first address no trusted proxy vouches for; anything left of it could be forged.
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _valid(hop):
            break
        if not _is_trusted(hop, trusted):
            return hop
    if real_ip and _valid(real_ip.strip()):
        return real_ip.strip()
    return peer


_remembered = functools.lru_cache(maxsize=REMEMBERED_ANSWERS)(_resolve)


def client_network(address: str, *, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The name under which per-client limits count an address: its network.

    One IPv6 subscriber gets a whole /64 (often more) and picks addresses in it at will, so
    counting IPv6 addresses one by one would let one client rotate past every limit. IPv4
    addresses are scarce: counted one by one by default. A full-length prefix gives the
    address itself; an IPv4-mapped IPv6 address counts as its IPv4 address; anything that is
    not an address is returned unchanged. The result never holds braces (Redis hash tags).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    if prefix >= ip.max_prefixlen:
        return str(ip)
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
