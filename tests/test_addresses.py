"""One spelling per client address (issue 10, item 4): pure, text in and out."""

from hypothesis import given
from hypothesis import strategies as st

from gchat.addresses import canonical


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
