"""The banned addresses and networks: which a client's address falls under. Pure.

``/ban NICK`` bans the nick's source (``gchat.addresses.sources``): its
address, or for IPv6 its /64, since an IPv6 host may take any address of its
/64 and would come back from the next one. A ban is kept, stored and sent
between nodes as text: an address (``192.0.2.7``) or a network
(``2001:db8::/64``), so bans given before networks existed, and by nodes
with another ``--ipv6-prefix``, mean the same everywhere.
"""

import ipaddress
from collections.abc import Iterable
from typing import Union

from gchat.addresses import canonical

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def ban_key(text: str) -> str:
    """One spelling per ban: an address as ``canonical`` has it, a network by its first address.

    A network of one address is that address; text that is neither comes back as typed.
    """
    if "/" not in text:
        return canonical(text)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if network.prefixlen == network.max_prefixlen:
        return canonical(str(network.network_address))
    return str(network)


def covers(ban: str, address: str) -> bool:
    """Whether the one ban ``ban`` falls on a client at ``address``."""
    return Bans((ban,)).covers(address)


class Bans:
    """Banned addresses (a set: one look-up a connection) and networks (few: each tested)."""

    __slots__ = ("_addresses", "_networks")

    def __init__(self, bans: Iterable[str] = ()) -> None:
        self._addresses: set[str] = set()
        self._networks: dict[str, Network] = {}
        for ban in bans:
            self.add(ban)

    def add(self, ban: str) -> str:
        """Ban ``ban`` (an address or a network); its key, as it is kept."""
        key = ban_key(ban)
        if "/" in key:
            self._networks[key] = ipaddress.ip_network(key)
        else:
            self._addresses.add(key)
        return key

    def discard(self, key: str) -> None:
        self._addresses.discard(key)
        self._networks.pop(key, None)

    def covers(self, address: str) -> bool:
        """Whether a client at ``address`` is banned."""
        key = canonical(address)
        return key in self._addresses or bool(self._over(key))

    def covering(self, text: str) -> "list[str]":
        """The bans that ``/unban text`` lifts: the one it names, or every one its address is under."""
        key = ban_key(text)
        if key in self._addresses or key in self._networks:
            return [key]
        return self._over(key)

    def _over(self, key: str) -> "list[str]":
        """The banned networks the address ``key`` (canonical) is in; none if it is no address."""
        if not self._networks:
            return []
        try:
            ip = ipaddress.ip_address(key)
        except ValueError:
            return []
        return [
            ban for ban, network in self._networks.items() if ip.version == network.version and ip in network
        ]
