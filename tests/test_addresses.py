"""One spelling per client address (issue 10, item 4): pure, text in and out."""

from hypothesis import given
from hypothesis import strategies as st

from gchat.addresses import canonical, sources


def test_an_ipv4_mapped_address_is_its_ipv4_form():
    assert canonical("::ffff:127.0.0.7") == "127.0.0.7"


def test_an_ipv4_address_is_itself():
    assert canonical("127.0.0.7") == "127.0.0.7"


def test_an_ipv6_address_is_compressed_and_lowercase():
    assert canonical("2001:DB8:0:0:0:0:0:1") == "2001:db8::1"


def test_text_that_is_no_address_is_kept_as_typed():
    assert canonical("not-an-address") == "not-an-address"


@given(st.ip_addresses(v=4))
def test_both_forms_of_an_ipv4_client_are_one(ip):
    assert canonical(f"::ffff:{ip}") == canonical(str(ip)) == str(ip)


@given(st.ip_addresses() | st.text(max_size=40))
def test_canonical_is_idempotent(value):
    once = canonical(str(value))
    assert canonical(once) == once


def test_an_ipv6_client_counts_as_its_64_by_default():
    assert sources()("2001:db8:0:7:a:b:c:d") == "2001:db8:0:7::/64"


def test_an_ipv4_client_counts_as_its_own_address_by_default():
    assert sources()("::ffff:192.0.2.7") == sources()("192.0.2.7") == "192.0.2.7"


def test_a_full_length_prefix_counts_each_address_apart():
    assert sources(ipv6_prefix=128)("2001:DB8::1") == "2001:db8::1"


def test_a_shorter_ipv4_prefix_counts_a_network_as_one():
    assert sources(ipv4_prefix=24)("::ffff:192.0.2.7") == "192.0.2.0/24"


def test_a_source_of_text_that_is_no_address_is_the_text():
    assert sources()("unknown") == "unknown"


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(1, 128))
def test_two_ipv6_addresses_share_a_source_exactly_when_their_prefixes_agree(a, b, prefix):
    """An attacker with a /64 may take any address in it: all must count as one, and no other."""
    source = sources(ipv6_prefix=prefix)
    if a.ipv4_mapped is None and b.ipv4_mapped is None:
        same = int(a) >> (128 - prefix) == int(b) >> (128 - prefix)
        assert (source(str(a)) == source(str(b))) == same
