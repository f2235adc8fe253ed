"""The bus's wire form: every event a hub can publish comes back unchanged."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.events import (
    Asked,
    Banned,
    DecodeError,
    Joined,
    Kicked,
    NodeLost,
    Private,
    Quit,
    Renamed,
    Resynced,
    Said,
    TopicSet,
    Unbanned,
    decode,
    encode,
)

# What sanitizing and the name rules leave: text without NUL.
text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))
name = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,23}", fullmatch=True)
room = name.map(lambda n: "#" + n.lower())
node = st.binary(min_size=6, max_size=6).map(bytes.hex)
lines = text.map(lambda t: (t + "\n").encode())
cid = st.integers(min_value=1, max_value=2**40)
address = st.one_of(st.ip_addresses().map(str), st.just(""))

events = st.one_of(
    st.builds(Said, node, cid, room, lines),
    st.builds(Joined, node, cid, name, room, address),
    st.builds(Renamed, name, name),
    st.builds(Quit, name, text),
    st.builds(Private, name, lines, node, cid),
    st.builds(Asked, node, cid, st.sampled_from(["who", "rooms"])),
    st.builds(Kicked, name, name, text, node, cid),
    st.builds(Banned, address, name, node, cid),
    st.builds(Unbanned, address, node, cid),
    st.builds(TopicSet, room, text),
    st.builds(NodeLost, node),
    st.builds(Resynced, node),
)


@given(events)
def test_every_event_survives_the_wire(event):
    assert decode(encode(event)) == event


def test_a_join_carries_no_history_and_accepts_none_appended():
    """A join is a few names: a room's history is never on the bus (issue 10, item 10)."""
    data = encode(Joined("0123456789ab", 12345, "a" * 24, "#" + "b" * 24, "::ffff:127.0.0.1"))
    assert len(data) < 120
    with pytest.raises(DecodeError):
        decode(data + b"\0<a> history\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"X\0a",
        b"S\0node\0notanumber\0#a\0x\n",
        b"R\0only-one",
        b"Q\0a\0b\0c",
        b"L\0a\0b",
        b"Y\0a\0b",
        b"J\0n\0\xff",
    ],
)
def test_malformed_bytes_are_a_decode_error(data):
    with pytest.raises(DecodeError):
        decode(data)


@given(st.binary())
def test_decode_never_fails_other_than_with_decode_error(data):
    with contextlib.suppress(DecodeError):
        decode(data)
