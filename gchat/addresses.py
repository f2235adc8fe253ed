"""One spelling per client address, so that a ban, an unban and a check always agree.

A server listening on ``::`` sees an IPv4 client as ``::ffff:127.0.0.7``; one
listening on ``127.0.0.1`` (or another node of the cluster) sees the same
client as ``127.0.0.7``, and an operator may type either form, or an IPv6
address spelt out in full. Pure: text in, text out.
"""

import ipaddress


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


def format_peer(address: tuple[str, int]) -> str:
    """``host:port``, with an IPv6 host in brackets, for log lines."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
