"""Which address a request really came from, without trusting headers anyone can forge."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """'10.0.0.1, 192.168.0.0/16' -> networks (ValueError on a malformed entry)."""
    return tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())


def address_in(address: str, networks: tuple[Network, ...]) -> bool:
    """Is address (a literal IP) inside one of networks? False for anything unparsable."""
    return _is_trusted(address, networks)


def resolve_client_ip(
    peer: str, forwarded_for: str | None, real_ip: str | None, trusted: tuple[Network, ...]
) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted hop it reports."""
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
