"""LineFramer: raw chunks in, LF-terminated lines out, never more than one line buffered."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gchat.framing import TOO_LONG, LineFramer

MAX = 16


def frames(framer, *chunks):
    """Feed each chunk and take every frame it completes, as the session does."""
    out = []
    for chunk in chunks:
        framer.feed(chunk)
        frame = framer.next()
        while frame is not None:
            out.append(frame)
            frame = framer.next()
    return out


def rest(framer):
    """The frames the end of the stream gives."""
    framer.finish()
    return frames(framer, b"")


def byte_by_byte(data):
    return [data[i : i + 1] for i in range(len(data))]


# Line endings


def test_lf_ends_a_line():
    assert frames(LineFramer(MAX), b"hello\n") == [b"hello"]


def test_crlf_line_is_cut_at_the_lf():
    # The framer keeps the CR; sanitize() drops it with the other C0 controls.
    assert frames(LineFramer(MAX), b"hello\r\n") == [b"hello\r"]


def test_several_lines_in_one_chunk_come_out_in_order():
    assert frames(LineFramer(MAX), b"one\ntwo\r\nthree\n") == [b"one", b"two\r", b"three"]


def test_empty_lines_are_framed_as_empty():
    assert frames(LineFramer(MAX), b"\n\r\n") == [b"", b"\r"]


def test_chunk_without_lf_yields_nothing_yet():
    framer = LineFramer(MAX)
    assert frames(framer, b"partial") == []
    assert framer.buffered == len(b"partial")


def test_line_split_across_two_chunks_is_joined():
    framer = LineFramer(MAX)
    assert frames(framer, b"hel") == []
    assert frames(framer, b"lo\nwor") == [b"hello"]
    assert frames(framer, b"ld\n") == [b"world"]


def test_lines_fed_byte_by_byte_are_joined():
    framer = LineFramer(MAX)
    assert frames(framer, *byte_by_byte(b"abc\r\nxyz\n\n")) == [b"abc\r", b"xyz", b""]
    assert framer.buffered == 0


def test_crlf_split_between_cr_and_lf_is_one_line_ending():
    framer = LineFramer(MAX)
    assert frames(framer, b"hi\r") == []
    assert frames(framer, b"\n") == [b"hi\r"]


def test_cr_nul_ends_a_line_as_telnet_sends_enter_in_character_mode():
    assert frames(LineFramer(MAX), b"hello\r\x00") == [b"hello\r"]


def test_cr_nul_split_between_cr_and_nul_is_one_line_ending():
    framer = LineFramer(MAX)
    assert frames(framer, b"hi\r") == []
    assert frames(framer, b"\x00there\r", b"\x00") == [b"hi\r", b"there\r"]


def test_cr_nul_and_lf_line_ends_mix_in_one_chunk():
    assert frames(LineFramer(MAX), b"a\r\x00b\nc\r\nd\r\x00") == [b"a\r", b"b", b"c\r", b"d" + b"\r"]


def test_nul_without_cr_and_cr_without_nul_do_not_end_a_line():
    assert frames(LineFramer(MAX), b"a\x00b\rc\n") == [b"a\x00b\rc"]


def test_cr_nul_right_after_max_line_bytes_passes():
    assert frames(LineFramer(MAX), b"x" * MAX + b"\r\x00") == [b"x" * MAX + b"\r"]


def test_cr_nul_ends_an_over_long_line_being_discarded_even_split_across_chunks():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * (MAX + 1), b"xx\r") == [TOO_LONG]
    assert frames(framer, b"\x00ok\n") == [b"ok"]


def test_empty_chunk_changes_nothing():
    framer = LineFramer(MAX)
    frames(framer, b"abc")
    assert frames(framer, b"") == []
    assert frames(framer, b"\n") == [b"abc"]


# The max_line boundary


def test_line_of_exactly_max_line_bytes_passes():
    assert frames(LineFramer(MAX), b"x" * MAX + b"\n") == [b"x" * MAX]


def test_line_of_max_line_plus_one_bytes_is_too_long():
    assert frames(LineFramer(MAX), b"x" * (MAX + 1) + b"\n") == [TOO_LONG]


def test_cr_before_lf_is_not_counted_in_the_length():
    assert frames(LineFramer(MAX), b"x" * MAX + b"\r\n") == [b"x" * MAX + b"\r"]


def test_cr_before_lf_does_not_excuse_a_line_one_byte_too_long():
    assert frames(LineFramer(MAX), b"x" * (MAX + 1) + b"\r\n") == [TOO_LONG]


def test_only_one_cr_before_lf_is_not_counted():
    assert frames(LineFramer(MAX), b"x" * MAX + b"\r\r\n") == [TOO_LONG]


def test_cr_inside_the_line_is_counted():
    assert frames(LineFramer(MAX), b"x" * (MAX - 1) + b"\r" + b"y" + b"\n") == [TOO_LONG]


def test_max_line_bytes_then_cr_then_lf_in_separate_feeds_passes():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * MAX) == []
    assert frames(framer, b"\r") == []
    assert frames(framer, b"\n") == [b"x" * MAX + b"\r"]


def test_max_line_bytes_and_cr_buffered_then_lf_passes():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * MAX + b"\r") == []
    assert framer.buffered == MAX + 1
    assert frames(framer, b"\n") == [b"x" * MAX + b"\r"]


def test_max_line_bytes_and_cr_followed_by_more_data_is_too_long():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * MAX + b"\r") == []
    assert frames(framer, b"y") == [TOO_LONG]


def test_max_line_bytes_fed_byte_by_byte_with_crlf_passes():
    framer = LineFramer(MAX)
    assert frames(framer, *byte_by_byte(b"x" * MAX + b"\r\n")) == [b"x" * MAX + b"\r"]


def test_max_line_plus_one_bytes_fed_byte_by_byte_is_too_long():
    framer = LineFramer(MAX)
    assert frames(framer, *byte_by_byte(b"x" * (MAX + 1) + b"\n")) == [TOO_LONG]


# Over-long lines


def test_over_long_line_is_reported_before_its_lf_arrives():
    assert frames(LineFramer(MAX), b"x" * (MAX + 1)) == [TOO_LONG]


def test_over_long_line_is_reported_as_soon_as_the_buffer_exceeds_the_limit():
    framer = LineFramer(MAX)
    assert frames(framer, *byte_by_byte(b"x" * MAX)) == []
    assert frames(framer, b"x") == [TOO_LONG]


def test_over_long_line_is_reported_once():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * (MAX + 1), b"y" * 100, b"z" * 100, b"end\n") == [TOO_LONG]


def test_over_long_line_fed_byte_by_byte_is_reported_once():
    framer = LineFramer(MAX)
    assert frames(framer, *byte_by_byte(b"x" * (MAX * 5) + b"\n")) == [TOO_LONG]


def test_remainder_of_over_long_line_is_discarded_until_its_lf():
    framer = LineFramer(MAX)
    frames(framer, b"x" * (MAX + 1))
    assert frames(framer, b"rest of it") == []
    assert framer.buffered == 0


def test_line_after_an_over_long_line_is_intact():
    framer = LineFramer(MAX)
    frames(framer, b"x" * (MAX + 1))
    assert frames(framer, b"rest\nnext\n") == [b"next"]


def test_line_after_an_over_long_line_is_intact_in_the_same_chunk():
    assert frames(LineFramer(MAX), b"x" * (MAX + 5) + b"\nnext\n") == [TOO_LONG, b"next"]


def test_line_after_an_over_long_line_is_intact_when_fed_byte_by_byte():
    framer = LineFramer(MAX)
    data = b"x" * (MAX * 3) + b"\r\n" + b"ok\r\n"
    assert frames(framer, *byte_by_byte(data)) == [TOO_LONG, b"ok\r"]


def test_each_over_long_line_is_reported_separately():
    framer = LineFramer(MAX)
    data = b"x" * (MAX + 1) + b"\n" + b"y" * (MAX + 1) + b"\nok\n"
    assert frames(framer, data) == [TOO_LONG, TOO_LONG, b"ok"]


def test_over_long_line_right_after_a_discarded_one_is_reported_again():
    framer = LineFramer(MAX)
    assert frames(framer, b"x" * (MAX + 1)) == [TOO_LONG]
    assert frames(framer, b"x\n" + b"y" * (MAX + 1)) == [TOO_LONG]
    assert frames(framer, b"y\nok\n") == [b"ok"]


def test_buffer_never_exceeds_max_line_plus_one_while_feeding_10_mb():
    limit = 4096
    framer = LineFramer(limit)
    chunk = b"x" * 65536
    seen = []
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        seen.extend(frames(framer, chunk))
        assert framer.buffered <= limit + 1
    seen.extend(frames(framer, b"\nafter\n"))
    assert seen == [TOO_LONG, b"after"]


def test_buffer_never_exceeds_max_line_plus_one_while_feeding_10_mb_of_lines():
    limit = 4096
    framer = LineFramer(limit)
    line = b"y" * 1000 + b"\r\n"
    chunk = (line * (65536 // len(line) + 1))[:65536]
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        assert TOO_LONG not in frames(framer, chunk)
        assert framer.buffered <= limit + 1


# End of stream


def test_finish_returns_a_last_line_without_lf():
    framer = LineFramer(MAX)
    frames(framer, b"one\nlast")
    assert rest(framer) == [b"last"]


def test_finish_returns_nothing_when_the_stream_ended_with_lf():
    framer = LineFramer(MAX)
    frames(framer, b"one\n")
    assert rest(framer) == []


def test_finish_returns_nothing_for_an_empty_stream():
    assert rest(LineFramer(MAX)) == []


def test_finish_returns_a_last_line_of_exactly_max_line_bytes():
    framer = LineFramer(MAX)
    frames(framer, b"x" * MAX)
    assert rest(framer) == [b"x" * MAX]


def test_finish_returns_nothing_while_discarding_an_over_long_line():
    framer = LineFramer(MAX)
    frames(framer, b"x" * (MAX + 1))
    frames(framer, b"more")
    assert rest(framer) == []


def test_finish_empties_the_buffer():
    framer = LineFramer(MAX)
    frames(framer, b"last")
    rest(framer)
    assert framer.buffered == 0


# Property: framing does not depend on how the stream is cut into chunks

# No LF, no NUL: nothing that could end a line early (CR NUL ends one too).
line_bytes = st.binary(max_size=MAX).map(lambda raw: raw.replace(b"\n", b"").replace(b"\x00", b""))


@st.composite
def lines_and_chunks(draw):
    lines = draw(st.lists(line_bytes, max_size=20))
    ends = draw(
        st.lists(st.sampled_from([b"\n", b"\r\n", b"\r\x00"]), min_size=len(lines), max_size=len(lines))
    )
    unterminated = draw(line_bytes.filter(bool) | st.just(b""))
    data = b"".join(line + end for line, end in zip(lines, ends)) + unterminated
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=30)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in zip(bounds, bounds[1:])]
    # The frame keeps a CR before the end, as it keeps the rest of the raw line.
    expected = [line + end[:-1] for line, end in zip(lines, ends)] + ([unterminated] if unterminated else [])
    return chunks, expected


@settings(max_examples=300)
@given(lines_and_chunks())
def test_any_chunking_of_lines_within_the_limit_and_any_line_ends_yields_exactly_those_lines(case):
    chunks, expected = case
    framer = LineFramer(MAX)
    assert frames(framer, *chunks) + rest(framer) == expected


@settings(max_examples=300)
@given(st.binary(max_size=200), st.data())
def test_buffer_stays_within_max_line_plus_one_for_any_input(data, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    framer = LineFramer(MAX)
    for start, end in zip(bounds, bounds[1:]):
        frames(framer, data[start:end])
        assert framer.buffered <= MAX + 1


@settings(max_examples=300)
@given(st.binary(max_size=200).map(lambda raw: raw.replace(b"a", b"\n")), st.data())
def test_frames_do_not_depend_on_chunking_even_for_over_long_lines(data, draw):
    whole = LineFramer(MAX)
    expected = frames(whole, data) + rest(whole)
    cuts = sorted(draw.draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    framer = LineFramer(MAX)
    chunks = [data[start:end] for start, end in zip(bounds, bounds[1:])]
    assert frames(framer, *chunks) + rest(framer) == expected
