"""One spelling per client address, so that a ban, an unban and a check always agree.

A server listening on ``::`` sees an IPv4 client as ``::ffff:127.0.0.7``; one
listening on ``127.0.0.1`` (or another node of the cluster) sees the same
client as ``127.0.0.7``, and an operator may type either form, or an IPv6
address spelt out in full. Pure: text in, text out.
"""

import functools
import ipaddress
from typing import Callable

# The distinct addresses each server keeps the source of: more only recompute (a few µs each).
SOURCES_CACHED = 4096


def canonical(address: str) -> str:
    """The IPv4 form of an IPv4-mapped IPv6 address, the compressed form of any other.

    Text that is no address at all (an operator's typo) comes back unchanged:
    it matches nothing, and the reply quotes it as typed.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def sources(ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> Callable[[str], str]:
    """What the per-address limits count an address as: its network of that many leading bits.

    ``--max-per-ip``, the join, message and notice budgets and the password
    pauses exist so that one attacker cannot multiply itself; an IPv6 host is
    given a whole /64 by its provider and may take any address in it, so an
    IPv6 address alone would be one attacker's many. A /64 counts as one, as
    a NAT's users share one IPv4 address. ``/ban`` bans the same (``gchat.bans``).
    """

    @functools.lru_cache(maxsize=SOURCES_CACHED)
    def source(address: str) -> str:
        text = canonical(address)
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return text
        prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
        if prefix == ip.max_prefixlen:
            return text
        return str(ipaddress.ip_network((ip, prefix), strict=False))

    return source


def format_peer(address: tuple[str, int]) -> str:
    """``host:port``, with an IPv6 host in brackets, for log lines."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
