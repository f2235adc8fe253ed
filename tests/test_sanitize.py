"""Sanitizing: telnet IAC sequences, then UTF-8 with U+FFFD, then escapes and controls."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gchat.sanitize import sanitize, strip_controls, strip_telnet

IAC = b"\xff"
SB, SE = b"\xfa", b"\xf0"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
ESC = "\x1b"
REPLACEMENT = "\ufffd"

FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


# Telnet


def test_plain_bytes_pass_telnet_stripping_unchanged():
    assert strip_telnet(b"hello world") == b"hello world"


@pytest.mark.parametrize(
    "command",
    [b"\xf1", b"\xf2", b"\xf3", b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8", b"\xf9"],
    ids=["NOP", "DM", "BRK", "IP", "AO", "AYT", "EC", "EL", "GA"],
)
def test_telnet_two_byte_command_is_removed(command):
    assert strip_telnet(b"ab" + IAC + command + b"cd") == b"abcd"


@pytest.mark.parametrize("verb", [WILL, WONT, DO, DONT], ids=["WILL", "WONT", "DO", "DONT"])
def test_telnet_option_negotiation_is_removed_with_its_option(verb):
    assert strip_telnet(b"ab" + IAC + verb + b"\x01cd") == b"abcd"


def test_telnet_negotiation_of_a_printable_option_byte_removes_that_byte():
    # Option 'A' (0x41) is part of the negotiation, not text.
    assert strip_telnet(IAC + DO + b"Ahi") == b"hi"


def test_telnet_negotiation_burst_of_a_telnet_client_is_removed():
    burst = IAC + DO + b"\x03" + IAC + WILL + b"\x18" + IAC + WILL + b"\x1f" + IAC + WONT + b"\x01"
    assert strip_telnet(burst + b"hello") == b"hello"


def test_telnet_subnegotiation_is_removed_with_its_payload():
    assert strip_telnet(b"ab" + IAC + SB + b"\x18\x00xterm" + IAC + SE + b"cd") == b"abcd"


def test_unterminated_telnet_subnegotiation_is_removed_to_the_end():
    assert strip_telnet(b"ab" + IAC + SB + b"\x18\x00xterm-256color") == b"ab"


def test_subnegotiation_payload_with_escaped_iac_is_removed_whole():
    # RFC 855: a 0xFF data byte in the payload is doubled; IAC IAC SE is not the end.
    payload = b"\x18\x00" + IAC + IAC + SE + b"xterm"
    assert strip_telnet(b"ab" + IAC + SB + payload + IAC + SE + b"cd") == b"abcd"


def test_iac_iac_is_kept_as_one_ff_byte():
    assert strip_telnet(b"a" + IAC + IAC + b"b") == b"a\xffb"


def test_iac_iac_becomes_a_replacement_character_after_sanitizing():
    assert sanitize(b"a" + IAC + IAC + b"b") == f"a{REPLACEMENT}b"


def test_lone_iac_at_the_end_is_removed():
    assert strip_telnet(b"abc" + IAC) == b"abc"


def test_cut_short_option_negotiation_at_the_end_is_removed():
    assert strip_telnet(b"abc" + IAC + WILL) == b"abc"


def test_telnet_negotiation_is_never_shown():
    assert sanitize(IAC + DO + b"\x01" + b"hi" + IAC + WILL + b"\x03") == "hi"


# UTF-8 decoding


def test_valid_utf8_is_decoded():
    assert sanitize("héllo wörld ✓ 日本".encode()) == "héllo wörld ✓ 日本"


def test_invalid_utf8_byte_becomes_replacement_character():
    assert sanitize(b"a\x80b") == f"a{REPLACEMENT}b"


def test_truncated_utf8_sequence_becomes_replacement_character():
    assert sanitize(b"caf\xc3") == f"caf{REPLACEMENT}"


def test_encoded_c1_control_is_removed_after_decoding():
    assert sanitize("a\u009bb".encode()) == "ab"


# Escape sequences


def test_csi_sequence_is_removed_whole():
    assert strip_controls(f"a{ESC}[1;31mred{ESC}[0m b") == "ared b"


def test_csi_with_private_parameters_is_removed_whole():
    assert strip_controls(f"a{ESC}[?25lb") == "ab"


def test_csi_clear_screen_is_removed_whole():
    assert strip_controls(f"{ESC}[2J{ESC}[Hhi") == "hi"


def test_unterminated_csi_is_removed_to_the_end():
    assert strip_controls(f"hi{ESC}[1;31") == "hi"


def test_osc_terminated_by_bel_is_removed_whole():
    assert strip_controls(f"a{ESC}]0;evil title\x07b") == "ab"


def test_osc_terminated_by_string_terminator_is_removed_whole():
    assert strip_controls(f"a{ESC}]8;;http://x.example/{ESC}\\link{ESC}]8;;{ESC}\\b") == "alinkb"


def test_unterminated_osc_is_removed_to_the_end():
    assert strip_controls(f"a{ESC}]0;evil title") == "a"


def test_other_escape_pair_is_removed_whole():
    assert strip_controls(f"a{ESC}cb") == "ab"


def test_escape_pair_with_a_printable_second_byte_removes_both():
    assert strip_controls(f"a{ESC}7b{ESC}8c") == "abc"


def test_lone_escape_at_the_end_is_removed():
    assert strip_controls(f"abc{ESC}") == "abc"


def test_escape_before_a_csi_does_not_protect_it():
    assert strip_controls(f"a{ESC}{ESC}[31mb") == "ab"


def test_reset_sequence_before_a_command_leaves_the_command():
    assert sanitize(b"\x1b[0m/quit") == "/quit"


# Control characters


@pytest.mark.parametrize("code", [c for c in range(0x20) if c not in (0x08, 0x09, 0x1B)])
def test_c0_control_other_than_tab_escape_and_backspace_is_removed(code):
    assert strip_controls(f"a{chr(code)}b") == "ab"


def test_tab_is_kept():
    assert sanitize(b"a\tb") == "a\tb"


@pytest.mark.parametrize("eraser", [b"\x08", b"\x7f"], ids=["BS", "DEL"])
def test_backspace_and_del_erase_the_character_before_them(eraser):
    assert sanitize(b"helo" + eraser + b"lo") == "hello"


def test_each_eraser_erases_one_more_character():
    assert sanitize(b"abcd\x7f\x7f\x08x") == "ax"


def test_eraser_erases_a_whole_utf8_character_not_a_byte():
    assert sanitize("naï".encode() + b"\x7five") == "naive"
    assert sanitize("go 🚀".encode() + b"\x08\x08!") == "go!"


def test_eraser_at_the_start_of_a_line_erases_nothing_and_goes():
    assert sanitize(b"\x7f\x08hi") == "hi"


def test_more_erasers_than_characters_leave_an_empty_line():
    assert sanitize(b"hi\x7f\x7f\x7f\x7f") == ""


def test_eraser_skips_invisible_controls_and_erases_what_was_typed():
    # The bell and the escape sequence were never seen: the key erases the "b".
    assert sanitize(b"ab\x07\x1b[31m\x7fc") == "ac"


def test_eraser_inside_an_escape_sequence_cannot_revive_it():
    assert sanitize(b"x\x1b[3\x081m") == "1m"


def test_eraser_erases_a_replacement_character_like_any_other():
    assert sanitize(b"ok\xff\xff\xe9\x7f") == "ok\ufffd"


@pytest.mark.parametrize("code", range(0x80, 0xA0))
def test_c1_control_is_removed(code):
    assert strip_controls(f"a{chr(code)}b") == "ab"


def test_no_break_space_after_c1_range_is_kept():
    assert strip_controls("a\u00a0b") == "a\u00a0b"


def test_trailing_cr_is_removed():
    assert sanitize(b"hello\r") == "hello"


def test_bell_is_removed_and_backspace_erases():
    assert sanitize(b"ding\x07\x08\x08") == "di"


# Plain text


@pytest.mark.parametrize(
    "text",
    ["hello", "  spaced  out  ", "/nick bob", "<b>not html</b>", "emoji 🎉 and ümlauts", "[0m not an escape"],
)
def test_plain_text_is_unchanged(text):
    assert sanitize(text.encode()) == text


def test_empty_line_stays_empty():
    assert sanitize(b"") == ""


# Properties


@given(st.binary())
def test_sanitize_never_raises_and_leaves_no_control_character(raw):
    text = sanitize(raw)
    assert FORBIDDEN.search(text) is None
    assert ESC not in text


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=512))
def test_sanitize_of_random_bytes_leaves_no_control_character(raw):
    assert FORBIDDEN.search(sanitize(raw)) is None


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [b"\x1b", b"[", b"]", b"\x07", b"\\", b"\xff", b"\xfa", b"\xf0", b"\xc2\x9b", b"a", b"1;"]
        )
    )
)
def test_sanitize_of_escape_heavy_input_leaves_no_control_character(parts):
    text = sanitize(b"".join(parts))
    assert FORBIDDEN.search(text) is None


@given(st.text())
def test_strip_controls_leaves_no_control_character_in_any_text(text):
    assert FORBIDDEN.search(strip_controls(text)) is None


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_text_typed_and_erased_leaves_what_was_kept(text):
    # Type every character, then a wrong one and its backspace: what remains is the text.
    typed = "".join(char + "x\x7f" for char in text)
    assert sanitize(typed.encode()) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))), st.integers(0, 50))
def test_n_erasers_take_back_the_last_n_characters(text, count):
    assert sanitize(text.encode() + b"\x08" * count) == text[: max(len(text) - count, 0)]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_text_without_controls_is_unchanged(text):
    assert sanitize(text.encode()) == text


@given(st.binary())
def test_telnet_stripping_never_grows_the_data(raw):
    assert len(strip_telnet(raw)) <= len(raw)
