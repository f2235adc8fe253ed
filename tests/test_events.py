"""The bus's wire form: every event a hub can publish comes back unchanged."""

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.events import (
    SEP,
    Asked,
    Away,
    Banned,
    DecodeError,
    Event,
    Joined,
    Kicked,
    Left,
    NodeLost,
    Opered,
    Parted,
    Private,
    Renamed,
    Resynced,
    Said,
    TopicSet,
    Unbanned,
    decode,
    encode,
)
from gchat.news import Kind, Message

# What sanitizing and the name rules leave: text without NUL.
text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))
name = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,23}", fullmatch=True)
room = name.map(lambda n: "#" + n.lower())
node = st.binary(min_size=6, max_size=6).map(bytes.hex)
cid = st.integers(min_value=1, max_value=2**40)
address = st.one_of(st.ip_addresses().map(str), st.just(""))
kind = st.sampled_from(Kind)
at = st.floats(min_value=0, max_value=2**33, allow_nan=False)

events = st.one_of(
    st.builds(Said, node, cid, st.builds(Message, room, name, address, text, kind, at)),
    st.builds(Joined, node, cid, name, st.one_of(room, st.just("")), address, address, st.booleans()),
    st.builds(Parted, node, cid, name, room, text),
    st.builds(Renamed, name, name),
    st.builds(Left, name, text),
    st.builds(Private, name, name, address, kind, at, node, cid, text),
    st.builds(Asked, node, cid, st.sampled_from(["who", "rooms", "topic"]), st.one_of(room, st.just(""))),
    st.builds(Kicked, name, name, text, node, cid, address),
    st.builds(Banned, address, name, node, cid, address),
    st.builds(Unbanned, address, node, cid),
    st.builds(TopicSet, room, text, name, address),
    st.builds(Opered, name),
    st.builds(Away, name, text),
    st.builds(NodeLost, node),
    st.builds(Resynced, node),
)


def test_every_event_has_a_tag_of_its_own():
    tags = [event.TAG for event in Event.__args__]
    assert len(set(tags)) == len(tags)


def test_an_event_that_is_not_one_cannot_be_encoded():
    """No fall-through: a forgotten event must not go out as some other one."""

    @dataclass(frozen=True)
    class Forgotten:
        TAG: ClassVar[bytes] = b"L"
        node: str

    with pytest.raises(KeyError):
        encode(Forgotten("n"))  # type: ignore[arg-type]


@given(events)
def test_every_event_survives_the_wire(event):
    assert decode(encode(event)) == event


def test_a_join_carries_no_history_and_accepts_none_appended():
    """A join is a few names: a room's history is never on the bus (issue 10, item 10)."""
    data = encode(Joined("0123456789ab", 12345, "a" * 24, "#" + "b" * 24, "::ffff:127.0.0.1", "127.0.0.1"))
    assert len(data) < 120
    with pytest.raises(DecodeError):
        decode(data + SEP + b"<a> history")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"X\0a",
        b"S\0node\0notanumber\0#a\0bob\0h\0say\0" + b"1.0\0x",
        b"S\0node\0" + b"1\0#a\0bob\0h\0shout\0" + b"1.0\0x",
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
