"""parse(): what a sanitized line asks for; valid_nick, room_key, nick_key."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gchat import commands
from gchat.commands import (
    HISTORY_LINES,
    HISTORY_MAX,
    HISTORY_USAGE,
    Help,
    History,
    Join,
    Me,
    Msg,
    Nick,
    Quit,
    Rooms,
    Say,
    Unknown,
    Usage,
    Who,
    nick_key,
    parse,
    room_key,
    valid_nick,
)

# Chat text


def test_line_without_slash_is_a_chat_message():
    assert parse("hello there") == Say("hello there")


def test_chat_text_keeps_leading_and_trailing_spaces():
    assert parse("  hello there  ") == Say("  hello there  ")


def test_chat_text_keeps_tabs():
    assert parse("\tindented\t") == Say("\tindented\t")


def test_double_slash_sends_text_starting_with_one_slash():
    assert parse("//quit is a command") == Say("/quit is a command")


def test_double_slash_alone_sends_a_single_slash():
    assert parse("//") == Say("/")


def test_triple_slash_sends_text_starting_with_two_slashes():
    assert parse("///") == Say("//")


def test_slash_after_a_space_is_chat_text():
    assert parse(" /quit") == Say(" /quit")


@pytest.mark.parametrize("line", ["", " ", "   ", "\t", " \t \t "])
def test_blank_line_is_ignored(line):
    assert parse(line) is None


# /nick


def test_nick_command_asks_for_the_name():
    assert parse("/nick bob") == Nick("bob")


def test_nick_argument_is_trimmed():
    assert parse("/nick    bob   ") == Nick("bob")


def test_nick_with_two_words_asks_for_the_whole_invalid_name():
    assert parse("/nick a b") == Nick("a b")
    assert not valid_nick("a b")


def test_nick_without_argument_is_a_usage_error():
    assert parse("/nick") == Usage("/nick NAME")


def test_nick_with_only_spaces_is_a_usage_error():
    assert parse("/nick   ") == Usage("/nick NAME")


# /join


def test_join_command_asks_for_the_room():
    assert parse("/join #dev") == Join("#dev")


def test_join_argument_is_trimmed():
    assert parse("/join   dev  ") == Join("dev")


def test_join_without_argument_is_a_usage_error():
    assert parse("/join") == Usage("/join ROOM")


def test_join_with_only_spaces_is_a_usage_error():
    assert parse("/join  \t ") == Usage("/join ROOM")


# /rooms, /who, /help


def test_rooms_command():
    assert parse("/rooms") == Rooms()


def test_who_command():
    assert parse("/who") == Who()


def test_help_command():
    assert parse("/help") == Help()


def test_command_without_argument_ignores_trailing_text():
    assert parse("/who is here") == Who()


# /msg


def test_msg_sends_text_to_nick():
    assert parse("/msg bob hello there") == Msg("bob", "hello there")


def test_msg_nick_ends_at_the_first_space_and_text_is_trimmed():
    assert parse("/msg   bob    hello  there   ") == Msg("bob", "hello  there")


def test_msg_without_argument_is_a_usage_error():
    assert parse("/msg") == Usage("/msg NICK TEXT")


def test_msg_without_text_is_a_usage_error():
    assert parse("/msg bob") == Usage("/msg NICK TEXT")


def test_msg_with_only_spaces_after_nick_is_a_usage_error():
    assert parse("/msg bob   ") == Usage("/msg NICK TEXT")


def test_msg_to_invalid_nick_is_still_a_msg():
    # The hub answers "no such user"; the parser only splits.
    assert parse("/msg 9lives hi") == Msg("9lives", "hi")


# /me


def test_me_command_acts():
    assert parse("/me waves") == Me("waves")


def test_me_text_is_trimmed():
    assert parse("/me   waves  hello  ") == Me("waves  hello")


def test_me_without_text_is_a_usage_error():
    assert parse("/me") == Usage("/me TEXT")


def test_me_with_only_spaces_is_a_usage_error():
    assert parse("/me    ") == Usage("/me TEXT")


# /quit


def test_quit_reason_defaults_to_leaving():
    assert parse("/quit") == Quit("leaving")


def test_quit_with_only_spaces_defaults_to_leaving():
    assert parse("/quit   ") == Quit("leaving")


def test_quit_with_custom_reason():
    assert parse("/quit gone fishing") == Quit("gone fishing")


def test_quit_reason_is_trimmed():
    assert parse("/quit   gone fishing  ") == Quit("gone fishing")


# /history (an extension)


def test_history_without_a_count_asks_for_the_default():
    assert parse("/history") == History(HISTORY_LINES)


@pytest.mark.parametrize("count", [1, 7, HISTORY_MAX])
def test_history_with_a_count_asks_for_that_many(count):
    assert parse(f"/history {count}") == History(count)


@pytest.mark.parametrize("arg", ["0", str(HISTORY_MAX + 1), "-1", "5x", "x", "\uff15", "1 2"])
def test_history_with_a_bad_count_is_a_usage_error(arg):
    assert parse(f"/history {arg}") == Usage(HISTORY_USAGE)


# Case and unknown commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/NICK bob", Nick("bob")),
        ("/Join dev", Join("dev")),
        ("/ROOMS", Rooms()),
        ("/wHo", Who()),
        ("/MSG bob hi", Msg("bob", "hi")),
        ("/Me waves", Me("waves")),
        ("/QUIT", Quit("leaving")),
        ("/HeLp", Help()),
    ],
)
def test_command_names_are_case_insensitive(line, command):
    assert parse(line) == command


def test_usage_error_for_uppercase_command():
    assert parse("/NICK") == Usage("/nick NAME")


def test_unknown_command_keeps_the_word_as_typed():
    assert parse("/FooBar x") == Unknown("FooBar")


def test_unknown_command_without_argument():
    assert parse("/ping") == Unknown("ping")


def test_command_word_must_match_exactly():
    assert parse("/nickname bob") == Unknown("nickname")


def test_lone_slash_is_an_unknown_empty_command():
    assert parse("/") == Unknown("")


def test_slash_followed_by_space_is_an_unknown_empty_command():
    assert parse("/ nick bob") == Unknown("")


@settings(max_examples=500)
@given(st.text())
def test_parse_never_raises(line):
    parse(line)


@settings(max_examples=300)
@given(st.text())
def test_parse_never_raises_on_slash_lines(rest):
    parse("/" + rest)


@given(st.text(alphabet=" \t", min_size=1))
def test_any_blank_line_is_ignored(line):
    assert parse(line) is None


# valid_nick


@pytest.mark.parametrize("name", ["a", "bob", "Bob", "guest1", "a_b-c", "Z9", "x" * 24, "a" + "_" * 23])
def test_valid_nick_accepts(name):
    assert valid_nick(name)


def test_nick_of_25_characters_is_invalid():
    assert not valid_nick("x" * 25)


def test_empty_nick_is_invalid():
    assert not valid_nick("")


@pytest.mark.parametrize("name", ["1bob", "_bob", "-bob"])
def test_nick_must_start_with_a_letter(name):
    assert not valid_nick(name)


@pytest.mark.parametrize(
    "name", ["é", "bé", "bob.", "b b", "bob!", "b#b", "bob\t", "bob\n", "\uff42ob", "b\u0131"]
)
def test_nick_with_other_characters_is_invalid(name):
    assert not valid_nick(name)


@given(st.text())
def test_valid_nick_is_ascii_and_at_most_24_characters(name):
    if valid_nick(name):
        assert name.isascii()
        assert 1 <= len(name) <= 24


# room_key


def test_room_key_adds_hash():
    assert room_key("dev") == "#dev"


def test_room_key_keeps_a_single_hash():
    assert room_key("#dev") == "#dev"


def test_room_key_lowercases():
    assert room_key("DEV") == "#dev"
    assert room_key("#Dev") == "#dev"


def test_room_key_accepts_digits_underscore_and_dash():
    assert room_key("a_1-B") == "#a_1-b"


def test_room_key_accepts_32_characters():
    assert room_key("r" * 32) == "#" + "r" * 32


def test_room_key_accepts_32_characters_after_hash():
    assert room_key("#" + "r" * 32) == "#" + "r" * 32


@pytest.mark.parametrize(
    "name", ["r" * 33, "#" + "r" * 33, "#", "", "a b", "é", "##dev", "dev#", "de.v", "dev\n"]
)
def test_room_key_of_invalid_room_is_none(name):
    assert room_key(name) is None


@given(st.text())
def test_room_key_is_canonical(name):
    key = room_key(name)
    if key is not None:
        assert key.startswith("#")
        assert key == key.lower()
        assert room_key(key) == key


def test_a_room_key_asked_for_again_is_not_worked_out_again():
    """A guard on the cost: every web and IRC chat line names its room."""
    room_key("#Again")
    worked_out = commands._room_key.cache_info().misses
    assert room_key("#Again") == "#again"
    assert commands._room_key.cache_info().misses == worked_out


@pytest.mark.parametrize("name", ["#" + "r" * 33, "r" * 34, "x" * 4096])
def test_a_name_longer_than_any_rooms_is_invalid_and_not_kept(name):
    """What is kept is bounded by a room name's length, not by what a client sends."""
    kept = commands._room_key.cache_info().currsize
    assert room_key(name) is None
    assert commands._room_key.cache_info().currsize == kept


# nick_key


def test_nick_key_ignores_case():
    assert nick_key("Bob") == nick_key("bOB") == nick_key("bob")


def test_nick_key_distinguishes_different_nicks():
    assert nick_key("bob") != nick_key("bob_")


def test_command_names_fold_ascii_case_only():
    assert parse("/nic\u212a bob") == Unknown("nic\u212a")
