"""CHATHISTORY read and answered, pure: requests into spans of a room's lines, refusals, replies."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.irc import chathistory, replies
from gchat.irc.chathistory import (
    MAX_LIMIT,
    Fail,
    Query,
    Span,
    Targets,
    covers,
    invalid_target,
    latest,
    parse,
    timestamp,
)
from gchat.irc.message import MAX_BODY, Message, serialize, server_time
from gchat.irc.message import parse as parse_line
from gchat.irc.style import IrcStyle
from gchat.news import Kind
from gchat.news import Message as Line

# 2026-12-04T12:00:00.250Z and the lines shown at it or about it.
T = "2026-12-04T12:00:00.250Z"
MS = 1796385600250
START, END = MS / 1000, (MS + 1) / 1000


def ref(millis: int = MS) -> str:
    return "timestamp=" + server_time(millis / 1000)


# --- timestamps ---------------------------------------------------------------------------


def test_a_timestamp_names_its_millisecond():
    assert timestamp("timestamp=" + T) == MS
    assert ref() == "timestamp=" + T


@pytest.mark.parametrize(
    ("word", "millis"),
    [
        ("timestamp=2026-12-04T12:00:00Z", MS - 250),
        ("timestamp=2026-12-04T12:00:00.2Z", MS - 50),
        ("timestamp=2026-12-04T12:00:00.250999Z", MS),
    ],
)
def test_a_timestamp_without_or_past_milliseconds_is_taken_to_the_millisecond(word, millis):
    assert timestamp(word) == millis


@pytest.mark.parametrize(
    "word",
    [
        "2026-12-04T12:00:00.250Z",
        "timestamp=2026-13-04T12:00:00.250Z",
        "timestamp=2026-02-30T12:00:00.250Z",
        "timestamp=2026-12-04T24:00:00.250Z",
        "timestamp=2026-12-04 12:00:00.250Z",
        "timestamp=2026-12-04T12:00:00.250",
        "timestamp=٢٠٢٦-12-04T12:00:00.250Z",
    ],
)
def test_a_malformed_or_impossible_timestamp_names_nothing(word):
    assert timestamp(word) is None


# Milliseconds from 1970 to 2255, while a float Unix time still holds every microsecond.
@given(st.integers(min_value=0, max_value=2**53 // 1000))
def test_a_server_time_read_back_as_a_timestamp_is_its_millisecond(millis):
    assert timestamp("timestamp=" + server_time(millis / 1000)) == millis


# --- requests -----------------------------------------------------------------------------


def test_latest_star_is_the_newest_lines_of_all():
    assert parse(("LATEST", "#dev", "*", "10")) == Query(
        "LATEST", "#dev", (Span(-math.inf, math.inf, 10, True),)
    )


def test_subcommands_are_case_insensitive():
    assert parse(("latest", "#dev", "*", "10")) == parse(("LATEST", "#dev", "*", "10"))


def test_latest_with_a_timestamp_is_the_newest_lines_shown_later():
    assert parse(("LATEST", "#dev", ref(), "5")) == Query("LATEST", "#dev", (Span(END, math.inf, 5, True),))


def test_before_is_the_newest_lines_shown_earlier():
    assert parse(("BEFORE", "#dev", ref(), "5")) == Query(
        "BEFORE", "#dev", (Span(-math.inf, START, 5, True),)
    )


def test_after_is_the_oldest_lines_shown_later():
    assert parse(("AFTER", "#dev", ref(), "5")) == Query("AFTER", "#dev", (Span(END, math.inf, 5, False),))


def test_around_is_the_older_half_then_the_rest_from_the_reference_on():
    spans = (Span(-math.inf, START, 2, True), Span(START, math.inf, 5, False))
    assert parse(("AROUND", "#dev", ref(), "5")) == Query("AROUND", "#dev", spans)


def test_between_reads_from_the_first_reference_towards_the_second_either_way():
    early, late = ref(MS - 1000), ref()
    forwards = parse(("BETWEEN", "#dev", early, late, "5"))
    backwards = parse(("BETWEEN", "#dev", late, early, "5"))
    assert forwards == Query("BETWEEN", "#dev", (Span((MS - 999) / 1000, START, 5, False),))
    assert backwards == Query("BETWEEN", "#dev", (Span((MS - 999) / 1000, START, 5, True),))


def test_targets_is_a_span_between_two_timestamps_in_either_order():
    expected = Targets(Span((MS - 999) / 1000, START, 7, False))
    assert parse(("TARGETS", ref(MS - 1000), ref(), "7")) == expected
    assert parse(("TARGETS", ref(), ref(MS - 1000), "7")) == expected


@pytest.mark.parametrize(
    ("limit", "kept"), [("1", 1), ("100", 100), ("101", 100), ("0100", 100), ("9" * 5000, 100)]
)
def test_a_limit_over_the_maximum_is_cut_to_it(limit, kept):
    query = parse(("LATEST", "#dev", "*", limit))
    assert isinstance(query, Query)
    assert query.spans[0].limit == kept == min(kept, MAX_LIMIT)


@pytest.mark.parametrize(
    ("params", "fail"),
    [
        ((), Fail("NEED_MORE_PARAMS", ("*",), "Missing parameters")),
        (("LATEST", "#dev", "*"), Fail("NEED_MORE_PARAMS", ("LATEST",), "Missing parameters")),
        (("BETWEEN", "#dev", "*", "5"), Fail("NEED_MORE_PARAMS", ("BETWEEN",), "Missing parameters")),
        (("SEARCH", "#dev", "*", "5"), Fail("UNKNOWN_COMMAND", ("SEARCH",), "Unknown command")),
        (("LATEST", "#dev", "*", "0"), Fail("INVALID_PARAMS", ("LATEST", "0"), "Invalid parameters")),
        (("LATEST", "#dev", "*", "-5"), Fail("INVALID_PARAMS", ("LATEST", "-5"), "Invalid parameters")),
        (("LATEST", "#dev", "*", "²"), Fail("INVALID_PARAMS", ("LATEST", "²"), "Invalid parameters")),
        (("BEFORE", "#dev", "*", "5"), Fail("INVALID_PARAMS", ("BEFORE", "*"), "Invalid parameters")),
        (
            ("BEFORE", "#dev", "yesterday", "5"),
            Fail("INVALID_PARAMS", ("BEFORE", "yesterday"), "Invalid parameters"),
        ),
        (
            ("AFTER", "#dev", "msgid=abc", "5"),
            Fail("INVALID_MSGREFTYPE", ("AFTER", "msgid=abc"), "Only timestamp references are supported"),
        ),
    ],
)
def test_a_request_that_cannot_be_answered_says_why(params, fail):
    assert parse(params) == fail


WORDS = st.one_of(
    st.sampled_from(
        ["LATEST", "before", "AFTER", "AROUND", "BETWEEN", "TARGETS", "#dev", "*", "0", "1", "7", "msgid=x"]
    ),
    st.integers(min_value=0, max_value=2**53 // 1000).map(
        lambda millis: "timestamp=" + server_time(millis / 1000)
    ),
    st.text(max_size=40),
)


@given(st.lists(WORDS, max_size=7))
def test_any_parameters_give_a_request_or_a_refusal_that_a_line_carries(params):
    request = parse(tuple(params))
    assert isinstance(request, (Query, Targets, Fail))
    if isinstance(request, Fail):
        data = replies.chathistory_fail(request)
        assert data.endswith(b"\r\n")
        assert len(data) <= MAX_BODY + 2
        sent = parse_line(data[:-2])
        assert isinstance(sent, Message)
        assert sent.params[:2] == ("CHATHISTORY", request.code)
    else:
        spans = request.spans if isinstance(request, Query) else (request.span,)
        assert 1 <= max(span.limit for span in spans) <= MAX_LIMIT


# --- what falls in a span ------------------------------------------------------------------


def test_a_span_holds_lines_from_its_start_to_before_its_end_to_the_microsecond():
    span = Span(START, END, 1, True)
    assert covers(span, START)
    assert covers(span, END - 1e-6)
    assert not covers(span, START - 1e-6)
    assert not covers(span, END)


def test_targets_keeps_rooms_whose_latest_line_is_in_its_span_oldest_first_up_to_its_limit():
    targets = Targets(Span(START, START + 10, 2, False))
    found = [
        ("#late", START + 5),
        ("#before", START - 1),
        ("#early", START + 1),
        ("#after", START + 10),
        ("#mid", START + 3),
    ]
    assert latest(targets, found) == [("#early", START + 1), ("#mid", START + 3)]


# --- replies ------------------------------------------------------------------------------


def line(text: str, at: float = START) -> Line:
    return Line("#dev", "bob", "10.0.0.1", text, Kind.SAY, at)


def test_an_answer_is_a_chathistory_batch_of_timed_messages_where_negotiated():
    style = IrcStyle(time=True, batch=True)
    assert style.chathistory("#dev", [line("hi")]).decode().splitlines() == [
        ":gchat.irc BATCH +history chathistory :#dev",
        f"@time={T};batch=history :bob!bob@10.0.0.1 PRIVMSG #dev :hi",
        ":gchat.irc BATCH :-history",
    ]


def test_no_lines_is_an_empty_batch_so_the_client_is_not_left_waiting():
    assert IrcStyle(batch=True).chathistory("#dev", []) == (
        b":gchat.irc BATCH +history chathistory :#dev\r\n:gchat.irc BATCH :-history\r\n"
    )


def test_without_batch_the_lines_come_alone():
    assert IrcStyle().chathistory("#dev", [line("hi")]) == b":bob!bob@10.0.0.1 PRIVMSG #dev :hi\r\n"
    assert IrcStyle().chathistory("#dev", []) == b""


def test_targets_are_chathistory_targets_lines_in_their_batch():
    style = IrcStyle(batch=True)
    assert style.targets([("#dev", START)]).decode().splitlines() == [
        ":gchat.irc BATCH +targets :draft/chathistory-targets",
        f"@batch=targets :gchat.irc CHATHISTORY TARGETS #dev :{T}",
        ":gchat.irc BATCH :-targets",
    ]


def test_a_target_that_cannot_be_read_is_invalid_target_quoting_it():
    assert replies.chathistory_fail(invalid_target("LATEST", "#nope")) == (
        b":gchat.irc FAIL CHATHISTORY INVALID_TARGET LATEST #nope :Messages could not be retrieved\r\n"
    )


def test_isupport_advertises_the_maximum_and_timestamps():
    assert f"CHATHISTORY={MAX_LIMIT}" in replies.ISUPPORT
    assert "MSGREFTYPES=timestamp" in replies.ISUPPORT
    welcome = replies.welcome("alice", "127.0.0.1", "today", replies.Counts(1, 1, 1, 1))
    isupport = next(row for row in welcome.split(b"\r\n") if b" 005 " in row)
    assert len(serialize(Message("005", ())) + isupport) <= MAX_BODY + 2
    assert chathistory.CAP == "draft/chathistory"
