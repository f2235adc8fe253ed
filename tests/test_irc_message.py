"""IRC messages: parsing any bytes, serializing, tags, limits; cleaning and cutting text."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.framing import LineFramer
from gchat.irc.message import (
    EMPTY,
    INPUT_TOO_LONG,
    MAX_BODY,
    MAX_CLIENT_TAGS,
    MAX_LINE,
    Message,
    escape,
    parse,
    serialize,
    server_time,
    unescape,
)
from gchat.irc.text import cut, incoming, outgoing, shorten
from gchat.news import Kind

# Parsing


def test_command_is_upper_cased_and_params_split_on_spaces():
    assert parse(b"privmsg #room hi") == Message("PRIVMSG", ("#room", "hi"))


def test_trailing_parameter_keeps_its_spaces_and_colons():
    assert parse(b"PRIVMSG #room :hi there :) ") == Message("PRIVMSG", ("#room", "hi there :) "))


def test_empty_trailing_parameter_is_a_parameter():
    assert parse(b"TOPIC #room :") == Message("TOPIC", ("#room", ""))


def test_trailing_cr_is_dropped():
    assert parse(b"PING x\r") == Message("PING", ("x",))


@pytest.mark.parametrize("end", [b"\r", b"\x00"])
def test_a_cr_or_nul_inside_a_line_ends_the_message(end):
    assert parse(b"PRIVMSG #a :one" + end + b"QUIT") == Message("PRIVMSG", ("#a", "one"))


def test_source_is_read_and_kept_apart():
    assert parse(b":alice!a@h PRIVMSG bob :yo") == Message("PRIVMSG", ("bob", "yo"), "alice!a@h")


def test_repeated_spaces_between_words_are_one_separator():
    assert parse(b"  NICK    alice  ") == Message("NICK", ("alice",))


@pytest.mark.parametrize("line", [b"", b"   ", b"@a=b", b"@a=b   ", b":source", b"\r"])
def test_a_line_without_a_command_is_empty(line):
    assert parse(line) is EMPTY


def test_invalid_utf8_is_replaced_not_refused():
    assert parse(b"PRIVMSG #a :caf\xe9") == Message("PRIVMSG", ("#a", "caf\ufffd"))


def test_non_ascii_command_is_not_case_folded():
    # "\u0131" (dotless i) upper-cases to "I": "pr\u0131vmsg" must not become PRIVMSG.
    assert parse("pr\u0131vmsg #a :x".encode()).command == "pr\u0131vmsg"


# Tags


def test_tags_are_parsed_and_unescaped():
    parsed = parse(b"@time=2020-01-01T00:00:00.000Z;+x=a\\sb\\:c;flag PRIVMSG #a :hi")
    assert parsed == Message(
        "PRIVMSG", ("#a", "hi"), "", (("time", "2020-01-01T00:00:00.000Z"), ("+x", "a b;c"), ("flag", ""))
    )


def test_last_of_a_repeated_tag_wins():
    assert parse(b"@a=1;a=2 PING x").tags == (("a", "2"),)


def test_malformed_tag_keys_are_dropped():
    assert parse(b"@=x;a!b=;ok=1;+vendor.example/name=2 PING x").tags == (
        ("ok", "1"),
        ("+vendor.example/name", "2"),
    )


@pytest.mark.parametrize(
    ("escaped", "value"),
    [("\\:", ";"), ("\\s", " "), ("\\\\", "\\"), ("\\r", "\r"), ("\\n", "\n"), ("\\b", "b"), ("ab\\", "ab")],
)
def test_tag_value_unescaping(escaped, value):
    assert unescape(escaped) == value


def test_tags_at_the_client_limit_are_accepted():
    tags = b"@a=" + b"x" * (MAX_CLIENT_TAGS - 2)
    assert isinstance(parse(tags + b" PING x"), Message)


def test_tags_over_the_client_limit_are_too_long():
    tags = b"@a=" + b"x" * (MAX_CLIENT_TAGS - 1)
    assert parse(tags + b" PING x") is INPUT_TOO_LONG


# The 512-byte limit


def test_a_body_of_510_bytes_is_accepted():
    line = b"PRIVMSG #a :" + b"x" * (MAX_BODY - len(b"PRIVMSG #a :"))
    assert parse(line + b"\r") == Message("PRIVMSG", ("#a", "x" * (MAX_BODY - 12)))


def test_a_body_of_511_bytes_is_too_long():
    line = b"PRIVMSG #a :" + b"x" * (MAX_BODY + 1 - len(b"PRIVMSG #a :"))
    assert parse(line) is INPUT_TOO_LONG


def test_the_body_limit_does_not_count_the_tags():
    body = b"PRIVMSG #a :" + b"x" * (MAX_BODY - 12)
    assert isinstance(parse(b"@a=" + b"y" * 1000 + b" " + body), Message)


# Serializing


def test_serialize_writes_the_last_parameter_trailing_with_crlf():
    assert serialize(Message("PRIVMSG", ("#a", "hi there"), "n!n@h")) == b":n!n@h PRIVMSG #a :hi there\r\n"


def test_serialize_escapes_tag_values():
    message = Message("PING", ("x",), "", (("t", "a b;c\\d\r\n"), ("f", "")))
    assert serialize(message) == b"@t=a\\sb\\:c\\\\d\\r\\n;f PING :x\r\n"


@pytest.mark.parametrize("params", [("", "x"), ("a b", "x"), (":a", "x"), ("a", "x\r\ny"), ("a", "x\x00")])
def test_serialize_refuses_what_a_line_cannot_carry(params):
    with pytest.raises(ValueError, match=r"cannot carry|not a middle parameter"):
        serialize(Message("PRIVMSG", params))


def test_server_time_is_utc_with_milliseconds():
    assert server_time(1700000000.1234) == "2023-11-14T22:13:20.123Z"


def test_server_time_of_a_time_on_a_millisecond_shows_that_millisecond():
    # Half of them showed the millisecond before (0.001 is a hair under it as a float): a line
    # read back from the store, or a CHATHISTORY reference, would not match its live time.
    assert server_time(1796385600001 / 1000) == "2026-12-04T12:00:00.001Z"
    assert server_time(1796385600.999999) == "2026-12-04T12:00:00.999Z"


# Properties

_TAG_KEY = st.from_regex(r"\A\+?([a-z0-9.-]+/)?[A-Za-z0-9-]+\Z")
_WORD = st.text(st.characters(blacklist_characters="\x00\r\n :", blacklist_categories=("Cs",)), min_size=1)
_MIDDLE = st.builds(
    lambda first, rest: first + rest,
    _WORD,
    st.text(st.characters(blacklist_characters="\x00\r\n ", blacklist_categories=("Cs",))),
)
_TRAILING = st.text(st.characters(blacklist_characters="\x00\r\n", blacklist_categories=("Cs",)))
_COMMAND = st.from_regex(r"\A([A-Z]{1,12}|[0-9]{3})\Z")


@st.composite
def messages(draw):
    params = tuple(draw(st.lists(_MIDDLE, max_size=5))) + tuple(draw(st.lists(_TRAILING, max_size=1)))
    keys = draw(st.lists(_TAG_KEY, unique=True, max_size=4))
    tags = tuple((key, draw(_TRAILING)) for key in keys)
    source = draw(st.one_of(st.just(""), _MIDDLE))
    return Message(draw(_COMMAND), params, source, tags)


@given(messages())
def test_parse_reads_back_what_serialize_wrote(message):
    data = serialize(message)
    head, _, body = data.partition(b" ") if message.tags else (b"", b"", data)
    if len(head) - 1 <= MAX_CLIENT_TAGS and len(body) - 2 <= MAX_BODY:
        assert parse(data[:-1]) == message


@given(st.binary(max_size=1200))
def test_parse_never_raises_on_any_bytes(data):
    result = parse(data)
    assert result is EMPTY or result is INPUT_TOO_LONG or isinstance(result, Message)


@given(st.binary(max_size=600))
def test_whatever_parses_is_serializable_as_trailing(data):
    # A reply may quote any parameter a client sent as its trailing one. What a client can send
    # is a frame: the bytes between line ends, so never an LF (or a NUL after a CR).
    framer = LineFramer(MAX_LINE)
    framer.feed(data)
    framer.finish()
    while (frame := framer.next()) is not None:
        result = parse(frame) if isinstance(frame, bytes) else None
        if isinstance(result, Message):
            for param in result.params:
                assert parse(serialize(Message("NOTICE", ("x", param)))[:-2]).params == ("x", param)


@given(st.text())
def test_tag_escaping_round_trips(value):
    assert unescape(escape(value)) == value


# Text


def test_ctcp_action_is_an_action():
    assert incoming("\x01ACTION waves\x01", notice=False) == (Kind.ACTION, "waves")


def test_ctcp_action_without_closing_delimiter_is_an_action():
    assert incoming("\x01ACTION waves", notice=False) == (Kind.ACTION, "waves")


@pytest.mark.parametrize("text", ["\x01VERSION\x01", "\x01PING 123\x01", "\x01"])
def test_other_ctcp_is_not_relayed(text):
    assert incoming(text, notice=False) is None


def test_notice_is_a_notice_and_ctcp_replies_are_not_relayed():
    assert incoming("hi", notice=True) == (Kind.NOTICE, "hi")
    assert incoming("\x01VERSION x\x01", notice=True) is None


def test_formatting_and_escapes_are_removed_like_a_line_clients():
    assert incoming("\x02bold\x02 \x0304red\x03 \x1b[31mx", notice=False) == (Kind.SAY, "bold 04red x")


def test_blank_once_cleaned_is_not_relayed():
    assert incoming("\x02 \x02", notice=False) is None


def test_outgoing_action_is_ctcp():
    assert outgoing("waves", Kind.ACTION) == "\x01ACTION waves\x01"
    assert outgoing("hi", Kind.SAY) == "hi"


def test_cut_keeps_characters_whole():
    assert cut("ééé", 5) == ["éé", "é"]


@given(st.text(min_size=1), st.integers(min_value=4, max_value=600))
def test_cut_pieces_fit_and_join_back(text, limit):
    pieces = cut(text, limit)
    assert "".join(pieces) == text
    assert all(0 < len(piece.encode()) <= limit for piece in pieces)


def test_shorten_keeps_the_longest_start_that_fits():
    assert shorten("éééé", 5) == "éé"
    assert shorten("", 5) == ""
