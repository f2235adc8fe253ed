"""LineFramer: raw chunks in, LF-terminated lines out, never more than one line buffered."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gchat.framing import TOO_LONG, LineFramer

MAX = 16


def feed_all(framer, chunks):
    frames = []
    for chunk in chunks:
        frames.extend(framer.feed(chunk))
    return frames


def byte_by_byte(data):
    return [data[i : i + 1] for i in range(len(data))]


# Line endings


def test_lf_ends_a_line():
    assert LineFramer(MAX).feed(b"hello\n") == [b"hello"]


def test_crlf_line_is_cut_at_the_lf():
    # The framer keeps the CR; sanitize() drops it with the other C0 controls.
    assert LineFramer(MAX).feed(b"hello\r\n") == [b"hello\r"]


def test_several_lines_in_one_chunk_come_out_in_order():
    assert LineFramer(MAX).feed(b"one\ntwo\r\nthree\n") == [b"one", b"two\r", b"three"]


def test_empty_lines_are_framed_as_empty():
    assert LineFramer(MAX).feed(b"\n\r\n") == [b"", b"\r"]


def test_chunk_without_lf_yields_nothing_yet():
    framer = LineFramer(MAX)
    assert framer.feed(b"partial") == []
    assert framer.buffered == len(b"partial")


def test_line_split_across_two_chunks_is_joined():
    framer = LineFramer(MAX)
    assert framer.feed(b"hel") == []
    assert framer.feed(b"lo\nwor") == [b"hello"]
    assert framer.feed(b"ld\n") == [b"world"]


def test_lines_fed_byte_by_byte_are_joined():
    framer = LineFramer(MAX)
    assert feed_all(framer, byte_by_byte(b"abc\r\nxyz\n\n")) == [b"abc\r", b"xyz", b""]
    assert framer.buffered == 0


def test_crlf_split_between_cr_and_lf_is_one_line_ending():
    framer = LineFramer(MAX)
    assert framer.feed(b"hi\r") == []
    assert framer.feed(b"\n") == [b"hi\r"]


def test_empty_chunk_changes_nothing():
    framer = LineFramer(MAX)
    framer.feed(b"abc")
    assert framer.feed(b"") == []
    assert framer.feed(b"\n") == [b"abc"]


# The max_line boundary


def test_line_of_exactly_max_line_bytes_passes():
    assert LineFramer(MAX).feed(b"x" * MAX + b"\n") == [b"x" * MAX]


def test_line_of_max_line_plus_one_bytes_is_too_long():
    assert LineFramer(MAX).feed(b"x" * (MAX + 1) + b"\n") == [TOO_LONG]


def test_cr_before_lf_is_not_counted_in_the_length():
    assert LineFramer(MAX).feed(b"x" * MAX + b"\r\n") == [b"x" * MAX + b"\r"]


def test_cr_before_lf_does_not_excuse_a_line_one_byte_too_long():
    assert LineFramer(MAX).feed(b"x" * (MAX + 1) + b"\r\n") == [TOO_LONG]


def test_only_one_cr_before_lf_is_not_counted():
    assert LineFramer(MAX).feed(b"x" * MAX + b"\r\r\n") == [TOO_LONG]


def test_cr_inside_the_line_is_counted():
    assert LineFramer(MAX).feed(b"x" * (MAX - 1) + b"\r" + b"y" + b"\n") == [TOO_LONG]


def test_max_line_bytes_then_cr_then_lf_in_separate_feeds_passes():
    framer = LineFramer(MAX)
    assert framer.feed(b"x" * MAX) == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [b"x" * MAX + b"\r"]


def test_max_line_bytes_and_cr_buffered_then_lf_passes():
    framer = LineFramer(MAX)
    assert framer.feed(b"x" * MAX + b"\r") == []
    assert framer.buffered == MAX + 1
    assert framer.feed(b"\n") == [b"x" * MAX + b"\r"]


def test_max_line_bytes_and_cr_followed_by_more_data_is_too_long():
    framer = LineFramer(MAX)
    assert framer.feed(b"x" * MAX + b"\r") == []
    assert framer.feed(b"y") == [TOO_LONG]


def test_max_line_bytes_fed_byte_by_byte_with_crlf_passes():
    framer = LineFramer(MAX)
    assert feed_all(framer, byte_by_byte(b"x" * MAX + b"\r\n")) == [b"x" * MAX + b"\r"]


def test_max_line_plus_one_bytes_fed_byte_by_byte_is_too_long():
    framer = LineFramer(MAX)
    assert feed_all(framer, byte_by_byte(b"x" * (MAX + 1) + b"\n")) == [TOO_LONG]


# Over-long lines


def test_over_long_line_is_reported_before_its_lf_arrives():
    assert LineFramer(MAX).feed(b"x" * (MAX + 1)) == [TOO_LONG]


def test_over_long_line_is_reported_as_soon_as_the_buffer_exceeds_the_limit():
    framer = LineFramer(MAX)
    assert feed_all(framer, byte_by_byte(b"x" * MAX)) == []
    assert framer.feed(b"x") == [TOO_LONG]


def test_over_long_line_is_reported_once():
    framer = LineFramer(MAX)
    frames = feed_all(framer, [b"x" * (MAX + 1), b"y" * 100, b"z" * 100, b"end\n"])
    assert frames == [TOO_LONG]


def test_over_long_line_fed_byte_by_byte_is_reported_once():
    framer = LineFramer(MAX)
    assert feed_all(framer, byte_by_byte(b"x" * (MAX * 5) + b"\n")) == [TOO_LONG]


def test_remainder_of_over_long_line_is_discarded_until_its_lf():
    framer = LineFramer(MAX)
    framer.feed(b"x" * (MAX + 1))
    assert framer.feed(b"rest of it") == []
    assert framer.buffered == 0


def test_line_after_an_over_long_line_is_intact():
    framer = LineFramer(MAX)
    framer.feed(b"x" * (MAX + 1))
    assert framer.feed(b"rest\nnext\n") == [b"next"]


def test_line_after_an_over_long_line_is_intact_in_the_same_chunk():
    assert LineFramer(MAX).feed(b"x" * (MAX + 5) + b"\nnext\n") == [TOO_LONG, b"next"]


def test_line_after_an_over_long_line_is_intact_when_fed_byte_by_byte():
    framer = LineFramer(MAX)
    data = b"x" * (MAX * 3) + b"\r\n" + b"ok\r\n"
    assert feed_all(framer, byte_by_byte(data)) == [TOO_LONG, b"ok\r"]


def test_each_over_long_line_is_reported_separately():
    framer = LineFramer(MAX)
    data = b"x" * (MAX + 1) + b"\n" + b"y" * (MAX + 1) + b"\nok\n"
    assert framer.feed(data) == [TOO_LONG, TOO_LONG, b"ok"]


def test_over_long_line_right_after_a_discarded_one_is_reported_again():
    framer = LineFramer(MAX)
    assert framer.feed(b"x" * (MAX + 1)) == [TOO_LONG]
    assert framer.feed(b"x\n" + b"y" * (MAX + 1)) == [TOO_LONG]
    assert framer.feed(b"y\nok\n") == [b"ok"]


def test_buffer_never_exceeds_max_line_plus_one_while_feeding_10_mb():
    limit = 4096
    framer = LineFramer(limit)
    chunk = b"x" * 65536
    frames = []
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        frames.extend(framer.feed(chunk))
        assert framer.buffered <= limit + 1
    frames.extend(framer.feed(b"\nafter\n"))
    assert frames == [TOO_LONG, b"after"]


def test_buffer_never_exceeds_max_line_plus_one_while_feeding_10_mb_of_lines():
    limit = 4096
    framer = LineFramer(limit)
    line = b"y" * 1000 + b"\r\n"
    chunk = (line * (65536 // len(line) + 1))[:65536]
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        assert TOO_LONG not in framer.feed(chunk)
        assert framer.buffered <= limit + 1


# End of stream


def test_finish_returns_a_last_line_without_lf():
    framer = LineFramer(MAX)
    framer.feed(b"one\nlast")
    assert framer.finish() == [b"last"]


def test_finish_returns_nothing_when_the_stream_ended_with_lf():
    framer = LineFramer(MAX)
    framer.feed(b"one\n")
    assert framer.finish() == []


def test_finish_returns_nothing_for_an_empty_stream():
    assert LineFramer(MAX).finish() == []


def test_finish_returns_a_last_line_of_exactly_max_line_bytes():
    framer = LineFramer(MAX)
    framer.feed(b"x" * MAX)
    assert framer.finish() == [b"x" * MAX]


def test_finish_returns_nothing_while_discarding_an_over_long_line():
    framer = LineFramer(MAX)
    framer.feed(b"x" * (MAX + 1))
    framer.feed(b"more")
    assert framer.finish() == []


def test_finish_empties_the_buffer():
    framer = LineFramer(MAX)
    framer.feed(b"last")
    framer.finish()
    assert framer.buffered == 0


# Property: framing does not depend on how the stream is cut into chunks

line_bytes = st.binary(max_size=MAX).map(lambda raw: raw.replace(b"\n", b""))


@st.composite
def lines_and_chunks(draw):
    lines = draw(st.lists(line_bytes, max_size=20))
    unterminated = draw(line_bytes.filter(bool) | st.just(b""))
    data = b"".join(line + b"\n" for line in lines) + unterminated
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=30)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[start:end] for start, end in zip(bounds, bounds[1:])]
    expected = lines + ([unterminated] if unterminated else [])
    return chunks, expected


@settings(max_examples=300)
@given(lines_and_chunks())
def test_any_chunking_of_lines_within_the_limit_yields_exactly_those_lines(case):
    chunks, expected = case
    framer = LineFramer(MAX)
    assert feed_all(framer, chunks) + framer.finish() == expected


@settings(max_examples=300)
@given(st.binary(max_size=200), st.data())
def test_buffer_stays_within_max_line_plus_one_for_any_input(data, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    framer = LineFramer(MAX)
    for start, end in zip(bounds, bounds[1:]):
        framer.feed(data[start:end])
        assert framer.buffered <= MAX + 1


@settings(max_examples=300)
@given(st.binary(max_size=200).map(lambda raw: raw.replace(b"a", b"\n")), st.data())
def test_frames_do_not_depend_on_chunking_even_for_over_long_lines(data, draw):
    whole = LineFramer(MAX)
    expected = whole.feed(data) + whole.finish()
    cuts = sorted(draw.draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    framer = LineFramer(MAX)
    chunks = [data[start:end] for start, end in zip(bounds, bounds[1:])]
    assert feed_all(framer, chunks) + framer.finish() == expected
