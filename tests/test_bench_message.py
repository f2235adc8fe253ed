"""The benchmark's pure parts: line format and parse, counting, percentiles, sequence checks, plans."""

import math
import pickle
import random
import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.bench import cli
from gchat.bench.clients import LineProtocol, RedisProtocol
from gchat.bench.message import (
    BAD_FIELDS,
    BAD_LENGTH,
    FOREIGN,
    MARKER,
    MIN_SIZE,
    SPLICED,
    NeedleCounter,
    count_into,
    format_payload,
    head,
    needle,
    new_token,
    parse_line,
    sender_needle,
)
from gchat.bench.options import MEMBER_SENDERS, Options, make_plans, port_for
from gchat.bench.report import build, to_text
from gchat.bench.results import Checks, StreamResult
from gchat.bench.stats import Histogram, SequenceChecker, bucket_bounds, bucket_of, percentile

TOKEN = b"0123abcd"
HEAD = head(TOKEN)


def line(sender=3, seq=12, sent=123_456_789, size=64, token=TOKEN):
    return format_payload(token, sender, seq, sent, size)


# Format


@pytest.mark.parametrize("size", [MIN_SIZE, 64, 200, 4096, 70000])
def test_a_payload_is_the_size_minus_the_lf(size):
    payload = format_payload(TOKEN, 9_999_999, 9_999_999_999, 2**64 - 1, size)
    assert len(payload) == size - 1
    assert payload.startswith(MARKER + TOKEN + b" ")
    assert b"\n" not in payload
    assert payload.endswith(b".")


def test_a_size_too_small_for_the_fields_is_refused():
    with pytest.raises(ValueError, match="too small"):
        format_payload(TOKEN, 1, 1, 2**63, 30)


def test_tokens_are_fresh_and_of_one_length():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert {len(token) for token in tokens} == {8}


# Parse


def test_a_line_parses_back_with_or_without_a_server_prefix():
    assert parse_line(line(), HEAD, 64) == (3, 12, 123_456_789)
    assert parse_line(b"<guest12> " + line(), HEAD, 64) == (3, 12, 123_456_789)
    assert parse_line(b"*alice* hi " + line(), HEAD, 64) == (3, 12, 123_456_789)


def test_a_cr_before_the_lf_is_ignored():
    # Redis push frames end each bulk string with CRLF.
    assert parse_line(line() + b"\r", HEAD, 64) == (3, 12, 123_456_789)


def test_lines_without_a_marker_are_not_ours():
    assert parse_line(b"*** guest4 joined #lobby", HEAD, 64) is None
    assert parse_line(b"", HEAD, 64) is None


def test_another_runs_line_is_foreign():
    assert parse_line(line(token=b"ffffffff"), HEAD, 64) == FOREIGN


def test_two_markers_in_one_line_is_a_splice():
    first, second = line(seq=1), line(seq=2)
    assert parse_line(first[:20] + second, HEAD, 64) == SPLICED
    assert parse_line(first + second, HEAD, 64) == SPLICED
    # Even when the glued part comes from another run.
    assert parse_line(line(token=b"ffffffff")[:30] + second, HEAD, 64) == SPLICED


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_a_truncated_or_padded_line_has_the_wrong_length(cut):
    assert parse_line(line()[:-cut], HEAD, 64) == BAD_LENGTH
    assert parse_line(line() + b"." * cut, HEAD, 64) == BAD_LENGTH


def test_a_line_of_another_size_has_the_wrong_length():
    assert parse_line(line(size=80), HEAD, 64) == BAD_LENGTH


@pytest.mark.parametrize(
    ("old", "new"),
    [(b" 12 ", b" 1x "), (b" 3 ", b" - "), (b"....", b"..?."), (b" 123456789 ", b" 12345678_ ")],
)
def test_damaged_fields_are_malformed(old, new):
    damaged = line().replace(old, new, 1)
    assert len(damaged) == 63
    assert parse_line(damaged, HEAD, 64) == BAD_FIELDS


def test_a_missing_field_is_malformed_not_foreign():
    damaged = HEAD + b" 3 12 " + b"." * (63 - len(HEAD) - 6)
    assert parse_line(damaged, HEAD, 64) == BAD_FIELDS


@given(st.binary(max_size=200))
def test_parse_never_raises(data):
    parse_line(data, HEAD, 64)
    parse_line(HEAD + b" " + data, HEAD, 64)


# Counting across chunk boundaries


def split_at(data, cuts):
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)])]


@given(st.integers(0, 30), st.lists(st.integers(0, 10_000), max_size=20), st.binary(max_size=40))
def test_counting_does_not_depend_on_where_reads_split_the_stream(lines, cuts, noise):
    stream = b"".join(b"<g1> " + line(seq=seq) + b"\n" + noise for seq in range(lines))
    expected = stream.count(needle(TOKEN))
    counter = NeedleCounter(needle(TOKEN))
    for chunk in split_at(stream, cuts):
        counter.feed(chunk)
    assert counter.count == expected
    byte_by_byte = NeedleCounter(needle(TOKEN))
    for index in range(len(stream)):
        byte_by_byte.feed(stream[index : index + 1])
    assert byte_by_byte.count == expected


def test_count_into_counts_several_senders_with_one_carry():
    needles = [sender_needle(TOKEN, sender) for sender in range(4)]
    assert len({len(item) for item in needles}) == 1
    stream = b"".join(line(sender=sender % 4, seq=sender) + b"\n" for sender in range(10))
    buf = bytearray(64 + len(stream))
    totals = [0] * 4
    carry = b""
    for chunk in split_at(stream, [7, 100, 101, 333, 500]):
        buf[64 : 64 + len(chunk)] = chunk
        counts, carry = count_into(buf, 64, 64 + len(chunk), needles, carry)
        totals = [total + count for total, count in zip(totals, counts)]
    assert totals == [3, 3, 2, 2]


# Percentiles and the histogram


def test_percentile_is_nearest_rank():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(values, 50) == 5
    assert percentile(values, 90) == 9
    assert percentile(values, 99) == 10
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 10
    assert percentile([42], 99.9) == 42


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1], 101)


@given(st.integers(0, 2**62))
def test_a_value_lies_within_its_bucket_and_the_bucket_is_narrow(value):
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value <= high
    assert high - low <= max(low // 128, 0) + 1


def test_buckets_are_ordered_like_values():
    values = sorted(random.Random(1).randrange(0, 10**10) for _ in range(2000))
    indices = [bucket_of(value) for value in values]
    assert indices == sorted(indices)


def test_histogram_percentiles_are_within_one_percent():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(13, 1.5)) for _ in range(20000)]
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (50, 90, 99, 99.9):
        exact = percentile(ordered, q)
        assert math.isclose(histogram.percentile(q), exact, rel_tol=0.01)
    assert histogram.max == ordered[-1]
    assert histogram.percentile(100) == ordered[-1]
    assert histogram.count == len(values)


def test_merged_histograms_equal_one_and_survive_pickling():
    rng = random.Random(3)
    values = [rng.randrange(10**9) for _ in range(1000)]
    whole, first, second = Histogram(), Histogram(), Histogram()
    for index, value in enumerate(values):
        whole.record(value)
        (first if index % 2 else second).record(value)
    first.merge(pickle.loads(pickle.dumps(second)))
    assert first.buckets == whole.buckets
    assert (first.count, first.max, first.min, first.total) == (
        whole.count,
        whole.max,
        whole.min,
        whole.total,
    )


def test_an_empty_histogram_has_no_percentiles():
    with pytest.raises(ValueError, match="empty"):
        Histogram().percentile(50)


def test_negative_latencies_count_as_zero():
    histogram = Histogram()
    histogram.record(-5)
    assert histogram.percentile(50) == 0


# Sequence checks


def checked(*seqs, sender=1):
    checker = SequenceChecker()
    for seq in seqs:
        checker.see(sender, seq)
    return checker


def test_in_order_is_clean():
    checker = checked(0, 1, 2, 3)
    assert (checker.losses({1: 4}), checker.duplicates, checker.reorders) == (0, 0, 0)
    assert checker.next_seq(1) == 4


def test_a_gap_is_a_loss():
    checker = checked(0, 1, 4, 5)
    assert checker.losses({1: 6}) == 2
    assert checker.next_seq(1) == 6


def test_a_late_line_is_a_reorder_not_a_loss():
    checker = checked(0, 2, 1, 3)
    assert (checker.losses({1: 4}), checker.reorders, checker.duplicates) == (0, 1, 0)


def test_a_repeat_is_a_duplicate():
    checker = checked(0, 1, 1, 2, 0)
    assert (checker.losses({1: 3}), checker.duplicates, checker.reorders) == (0, 2, 0)


def test_lines_never_received_at_the_end_are_lost():
    checker = checked(0, 1)
    assert checker.losses({1: 5}) == 3
    # A sender never heard from at all.
    assert checker.losses({1: 2, 7: 4}) == 4


def test_a_receivers_own_lines_can_be_excluded():
    checker = checked(0, 1, sender=2)
    assert checker.losses({2: 2, 5: 3}, exclude=(5,)) == 0
    assert checker.losses({2: 2, 5: 3}) == 3


def test_senders_are_checked_separately():
    checker = SequenceChecker()
    for seq in range(3):
        checker.see(1, seq)
        checker.see(2, seq)
    assert checker.losses({1: 3, 2: 3}) == 0
    assert checker.duplicates == 0


# Handshakes and framing for each protocol

STATUS = b"*** You are guest1 in #lobby. Type /help for commands.\n"
FIRST = b"<guest2> hello\n"


@pytest.mark.parametrize(("await_join", "rest"), [(False, STATUS + FIRST), (True, FIRST)])
def test_a_line_client_is_ready_at_the_welcome_or_once_its_join_is_confirmed(await_join, rest):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"Welcome to the chatroom!\n" + STATUS + FIRST)
        proto = LineProtocol("#lobby", await_join=await_join)
        assert proto.join(ours, lambda: time.monotonic() + 5, 0) == rest


def test_line_protocol_frames_payloads_as_lines():
    proto = LineProtocol("#lobby")
    assert proto.frame([b"a", b"b"]) == b"a\nb\n"


def test_redis_protocol_pipelines_publish_commands():
    proto = RedisProtocol("#lobby", 8)
    framed = proto.frame([b"1234567", b"abcdefg"])
    one = b"*3\r\n$7\r\nPUBLISH\r\n$6\r\n#lobby\r\n$7\r\n"
    assert framed == one + b"1234567\r\n" + one + b"abcdefg\r\n"


# Plans


@pytest.mark.parametrize(
    ("proto", "clients", "senders", "procs", "sample"),
    [
        ("line", 100, 10, 1, 8),
        ("line", 10, 2, 3, 8),
        ("line", 7, 5, 2, 1),
        ("redis", 5, 10, 2, 8),
        ("irc", 10, 2, 3, 8),
    ],
)
def test_plans_split_clients_and_give_every_worker_a_probe_that_hears_everyone(
    proto, clients, senders, procs, sample
):
    options = Options(
        mode="throughput", proto=proto, clients=clients, senders=senders, procs=procs, sample=sample
    )
    plans = make_plans(options, (TOKEN,))
    indices = sorted(receiver.index for plan in plans for receiver in plan.receivers)
    assert indices == list(range(clients))
    for plan in plans:
        probes = [receiver for receiver in plan.receivers if receiver.probe]
        assert len(probes) == 1
        assert probes[0].sampled
        assert probes[0].own is None
    assert sum(receiver.sampled for plan in plans for receiver in plan.receivers) == min(
        max(sample, procs), clients
    )
    if proto in MEMBER_SENDERS:
        owns = sorted(r.own for plan in plans for r in plan.receivers if r.own is not None)
        assert owns == list(range(senders))
        assert all(not plan.senders for plan in plans)
    else:
        assert sorted(s for plan in plans for s in plan.senders) == list(range(senders))


def test_sampled_receivers_are_spread_over_the_room_not_bunched_at_one_end():
    # A server fans out in an order of its own: samples from one end would time only its first or last sends.
    options = Options(mode="latency", proto="line", clients=100, senders=10, procs=1, sample=8)
    (plan,) = make_plans(options, (TOKEN,))
    sampled = sorted(receiver.index for receiver in plan.receivers if receiver.sampled)
    assert sampled[0] == 10
    assert sampled[-1] == 99
    assert max(b - a for a, b in zip(sampled, sampled[1:])) <= 13
    assert [receiver.index for receiver in plan.receivers if receiver.probe] == [99]


# Command line and report


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["throughput", "--size", "10"],
        ["throughput", "--clients", "5", "--senders", "5"],
        ["throughput", "--duration", "nan"],
        ["capacity", "--procs", "2"],
        ["latency", "--rate", "0"],
        ["throughput", "--port", "5001,x"],
        ["throughput", "--port", "5001,"],
        ["throughput", "--proto", "redis", "--await-join"],
        ["throughput", "--proto", "irc", "--size", "400"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gchat.bench: error: ")
    assert err.count("\n") == 1


def test_a_cluster_is_several_ports_and_clients_go_round_robin_over_them():
    options = cli.parse(
        ["throughput", "--port", "5001,5002,5003", "--pid", "7,8", "--clients", "7", "--senders", "2"]
    )
    assert options.ports == (5001, 5002, 5003)
    assert options.pids == (7, 8)
    assert [port_for(options, index) for index in range(7)] == [5001, 5002, 5003] * 2 + [5001]
    assert cli.parse(["throughput"]).ports == (5000,)


def test_mode_defaults_are_filled_in():
    assert cli.parse(["fanout"]).clients == 1000
    assert cli.parse(["fanout"]).senders == 1
    assert cli.parse(["capacity"]).senders == 4
    assert cli.parse(["throughput"]).clients == 100


def test_a_run_with_a_failed_check_says_so():
    result = StreamResult(lines_sent=10, lines_sent_measured=10, interval_s=1.0)
    result.checks = Checks(expected=90, delivered=89, losses=1, sampled_receivers=1, sampled_lines=9)
    report = build(Options(mode="throughput"), [result], [])
    assert not report["ok"]
    assert report["failures"] == ["1 lines lost on sampled receivers", "89 deliveries counted, 90 expected"]
    assert "CHECKS FAILED" in to_text(report)


def test_a_clean_run_passes():
    result = StreamResult(lines_sent=10, lines_sent_measured=10, interval_s=1.0)
    result.checks = Checks(expected=90, delivered=90, sampled_receivers=1, sampled_lines=9)
    report = build(Options(mode="throughput"), [result], [])
    assert report["ok"]
    assert report["results"]["lines_sent_per_s"] == 10.0
    assert "checks passed" in to_text(report)


def test_lines_of_earlier_runs_are_named_as_such_in_a_passed_run():
    result = StreamResult(lines_sent=10, lines_sent_measured=10, interval_s=1.0)
    result.checks = Checks(expected=90, delivered=90, sampled_receivers=1, sampled_lines=9, foreign=160)
    text = to_text(build(Options(mode="throughput"), [result], []))
    assert "ignored 160 lines of earlier runs (history replayed)" in text
    assert "foreign" not in text
