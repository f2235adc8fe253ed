"""Bans of addresses and networks (gchat.bans): pure, text in and out."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from gchat.bans import Bans, ban_key, covers


def test_an_address_is_banned_in_its_canonical_form():
    assert ban_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_a_network_is_banned_by_its_first_address():
    assert ban_key("2001:DB8::5/64") == "2001:db8::/64"


def test_a_network_of_one_address_is_that_address():
    assert ban_key("2001:db8::5/128") == "2001:db8::5"


def test_text_that_is_no_address_is_kept_as_typed():
    assert ban_key("no/such") == "no/such"


def test_an_address_ban_covers_that_address_in_either_form():
    assert covers("192.0.2.7", "::ffff:192.0.2.7")
    assert not covers("192.0.2.7", "192.0.2.8")


def test_a_network_ban_covers_every_address_in_it_and_no_other():
    assert covers("2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff")
    assert not covers("2001:db8:0:1::/64", "2001:db8:0:2::1")


def test_an_ipv6_network_never_covers_an_ipv4_address():
    assert not covers("::/64", "0.0.0.1")


def test_unban_of_an_address_lifts_the_network_it_is_under():
    bans = Bans(["2001:db8::/64", "2001:db8::/48", "192.0.2.7"])
    assert sorted(bans.covering("2001:db8::9")) == ["2001:db8::/48", "2001:db8::/64"]
    assert bans.covering("2001:db8::/64") == ["2001:db8::/64"]
    assert bans.covering("::ffff:192.0.2.7") == ["192.0.2.7"]
    assert bans.covering("192.0.2.8") == []


def test_a_lifted_ban_covers_nothing_more():
    bans = Bans(["2001:db8::/64"])
    bans.discard("2001:db8::/64")
    assert not bans.covers("2001:db8::1")


@given(st.ip_addresses(v=6), st.ip_addresses(v=6))
def test_a_64_ban_covers_an_address_exactly_when_it_is_in_that_64(banned, other):
    network = ipaddress.ip_network((banned, 64), strict=False)
    if banned.ipv4_mapped is None and other.ipv4_mapped is None:
        assert covers(str(network), str(other)) == (other in network)
