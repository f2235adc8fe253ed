"""Bans in the hub (issue 10, items 4 and 13): address forms, and the operator who bans.

No sockets: ``HeldBus`` (test_hub_bus) plays the events other nodes publish,
including ones an older node could publish that this one never would.
"""

import pytest
from test_hub import User
from test_hub_bus import OTHER, HeldBus

from gchat.chat import Chat as Hub
from gchat.events import Banned, Joined


@pytest.fixture
def bans() -> "list[str]":
    return []


@pytest.fixture
def hub(bus: HeldBus, bans: "list[str]") -> Hub:
    return Hub(bus=bus, operators=lambda name, password, address: True, on_ban=bans.append)


@pytest.fixture
def bus() -> HeldBus:
    return HeldBus()


def who(user: User, bus: HeldBus) -> str:
    user.take()
    user.send("/who")
    bus.release()
    return user.take()[-1]


def operator(hub: Hub, bus: HeldBus, address: str) -> User:
    boss = User(hub, address)
    bus.release()
    boss.send("/oper boss secret")
    assert boss.take()[-1] == "*** You are now an operator"
    return boss


def ban(boss: User, target: User, bus: HeldBus) -> "list[str]":
    """What the operator reads after ``/ban`` of ``target``, everything published applied."""
    bus.release()
    boss.take()
    boss.send(f"/ban {target.nick}")
    bus.release()
    return boss.take()


def test_a_ban_by_the_ipv4_form_kicks_a_client_seen_in_the_mapped_form(hub, bus):
    boss = operator(hub, bus, "10.0.0.1")
    mapped = User(hub, "::ffff:10.0.0.2")
    bus.release()
    bus.play(Banned("10.0.0.2", "boss", OTHER, 1))
    assert mapped.mailbox.closed
    assert hub.banned("::ffff:10.0.0.2")
    assert hub.banned("10.0.0.2")
    assert who(boss, bus) == "*** users in #lobby (1): guest1"


def test_a_ban_by_the_mapped_form_kicks_a_client_seen_in_the_ipv4_form(hub, bus):
    plain = User(hub, "10.0.0.2")
    bus.release()
    bus.play(Banned("::ffff:10.0.0.2", "boss", OTHER, 1))
    assert plain.mailbox.closed
    assert hub.banned("10.0.0.2")


def test_a_ban_is_shown_and_unbanned_in_the_ipv4_form(hub, bus):
    boss = operator(hub, bus, "::ffff:10.0.0.1")
    target = User(hub, "::ffff:10.0.0.2")
    assert ban(boss, target, bus)[-1] == "*** banned 10.0.0.2"
    boss.send("/unban ::ffff:10.0.0.2")
    bus.release()
    assert boss.take() == ["*** unbanned 10.0.0.2"]
    assert not hub.banned("::ffff:10.0.0.2")


def test_connections_the_hub_does_not_know_yet_are_told_of_every_ban(hub, bus, bans):
    bus.play(Banned("::ffff:10.0.0.9", "boss", OTHER, 1))
    assert bans == ["10.0.0.9"]


def test_an_operator_is_refused_a_ban_of_its_own_address(hub, bus):
    boss = operator(hub, bus, "10.0.0.1")
    neighbour = User(hub, "::ffff:10.0.0.1")
    assert ban(boss, neighbour, bus) == ["!!! cannot ban your own address: 10.0.0.1"]
    assert not hub.banned("10.0.0.1")
    assert not neighbour.mailbox.closed


def test_a_ban_of_its_own_address_never_kicks_the_operator_who_gave_it(hub, bus):
    """As an older node would publish it: the operator stays, told of the ban, to /unban it."""
    boss = operator(hub, bus, "10.0.0.1")
    neighbour = User(hub, "10.0.0.1")
    bus.release()
    boss.take()
    bus.play(Banned("10.0.0.1", boss.nick, bus.node, boss.client.cid))
    assert neighbour.mailbox.closed
    assert not boss.mailbox.closed
    assert boss.take() == [f"*** {neighbour.nick} was kicked by {boss.nick} (banned)", "*** banned 10.0.0.1"]
    assert who(boss, bus) == f"*** users in #lobby (1): {boss.nick}"


def test_a_ban_from_another_node_keeps_its_operator_on_every_node(hub, bus):
    watcher = User(hub, "10.0.0.5")
    bus.release()
    bus.play(Joined(OTHER, 1, "boss", "#lobby", "10.0.0.1"))
    bus.play(Joined(OTHER, 2, "sibling", "#lobby", "10.0.0.1"))
    bus.play(Banned("10.0.0.1", "boss", OTHER, 1))
    assert who(watcher, bus) == f"*** users in #lobby (2): boss, {watcher.nick}"


def test_other_operators_at_the_banned_address_are_kicked_like_anyone(hub, bus):
    other_boss = operator(hub, bus, "10.0.0.3")
    bus.play(Banned("10.0.0.3", "boss", OTHER, 1))
    assert other_boss.mailbox.closed


def test_a_ban_of_an_ipv6_client_bans_its_64(hub, bus):
    """The next address of the /64 is the same host; another /64 is someone else."""
    boss = operator(hub, bus, "2001:db8:0:9::1")
    target = User(hub, "2001:db8:0:1::5")
    assert ban(boss, target, bus)[-1] == "*** banned 2001:db8:0:1::/64"
    assert target.mailbox.closed
    assert hub.banned("2001:db8:0:1:ffff::7")
    assert not hub.banned("2001:db8:0:2::5")


def test_a_ban_of_a_64_kicks_every_address_in_it(hub, bus):
    inside, outside = User(hub, "2001:db8:0:1::5"), User(hub, "2001:db8:0:2::5")
    bus.release()
    bus.play(Banned("2001:db8:0:1::/64", "boss", OTHER, 1))
    assert inside.mailbox.closed
    assert not outside.mailbox.closed


def test_unban_of_an_address_in_a_banned_64_lifts_the_ban(hub, bus):
    boss = operator(hub, bus, "2001:db8:0:9::1")
    ban(boss, User(hub, "2001:db8:0:1::5"), bus)
    boss.send("/unban 2001:db8:0:1::77")
    bus.release()
    assert boss.take() == ["*** unbanned 2001:db8:0:1::/64"]
    assert not hub.banned("2001:db8:0:1::5")


def test_an_operator_is_refused_a_ban_of_its_own_64(hub, bus):
    boss = operator(hub, bus, "2001:db8:0:1::1")
    neighbour = User(hub, "2001:db8:0:1::2")
    assert ban(boss, neighbour, bus) == ["!!! cannot ban your own address: 2001:db8:0:1::/64"]
    assert not neighbour.mailbox.closed


def test_a_ban_kept_from_before_networks_still_holds(hub):
    hub.restore(["2001:db8::5"], ("", ()))
    assert hub.banned("2001:db8::5")
    assert not hub.banned("2001:db8::6")
