"""The benchmark's IRC client, pure parts and handshake: registration, JOIN, PINGs, framing."""

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gchat.bench.clients import IrcProtocol, ProtocolError
from gchat.bench.irc import IrcRefused, PingWatch, Registration, split_message
from gchat.bench.message import format_payload, head, parse_line

TOKEN = b"0123abcd"
WELCOME = b":irc.test 001 bench7 :Welcome to IRC bench7!~bench7@127.0.0.1\r\n"
MOTD_MISSING = b":irc.test 422 bench7 :MOTD File is missing\r\n"
JOINED = b":bench7!~bench7@127.0.0.1 JOIN :#lobby\r\n"
NAMES = b":irc.test 353 bench7 = #lobby :bench7\r\n:irc.test 366 bench7 #lobby :End of NAMES list\r\n"


def handshake(server_lines: bytes, index: int = 7) -> "tuple[bytes, bytes]":
    """(what the client sent, what it returned past its JOIN) for a server that says ``server_lines``."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(server_lines)
        rest = IrcProtocol("#lobby").join(ours, lambda: time.monotonic() + 5, index)
        theirs.settimeout(0.2)
        sent = b""
        try:
            while chunk := theirs.recv(65536):
                sent += chunk
        except socket.timeout:
            pass
    return sent, rest


def test_an_irc_client_registers_as_benchN_and_is_ready_at_its_own_join():
    relayed = b":bench3!~bench3@127.0.0.1 PRIVMSG #lobby :hello\r\n"
    sent, rest = handshake(WELCOME + MOTD_MISSING + JOINED + NAMES + relayed)
    assert sent == b"NICK bench7\r\nUSER bench7 0 * :bench\r\nJOIN #lobby\r\n"
    assert rest == NAMES + relayed


def test_an_irc_client_answers_a_ping_during_registration_with_its_token():
    sent, _ = handshake(b"PING :cookie 42\r\n" + WELCOME + JOINED)
    assert b"PONG :cookie 42\r\n" in sent


def test_a_nick_in_use_is_retried_with_a_suffix_before_the_welcome():
    taken = b":irc.test 433 * bench7 :Nickname already in use\r\n"
    welcome = WELCOME.replace(b"bench7", b"bench7_")
    sent, _ = handshake(taken + welcome + JOINED.replace(b"bench7!", b"bench7_!"))
    assert b"NICK bench7_\r\n" in sent
    assert sent.endswith(b"JOIN #lobby\r\n")


def test_another_clients_join_does_not_make_ours_ready():
    steps = Registration("bench7", "#lobby")
    steps.feed(WELCOME.rstrip(b"\r\n"))
    steps.feed(b":bench8!~bench8@127.0.0.1 JOIN :#lobby")
    assert not steps.joined


@pytest.mark.parametrize(
    "refusal",
    [
        b":irc.test 471 bench7 #lobby :Cannot join channel (+l)",
        b"ERROR :Closing link: (Too many connections)",
        b":irc.test 263 bench7 JOIN :Too many joins from your address, try again later",
    ],
)
def test_a_refused_join_is_reported_in_the_servers_words(refusal):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(WELCOME + refusal + b"\r\n")
        with pytest.raises(ProtocolError) as refused:
            IrcProtocol("#lobby").join(ours, lambda: time.monotonic() + 5, 7)
    # At once, in its words: not a timeout that happens to quote them.
    assert refusal.decode() in str(refused.value)
    assert "timed out" not in str(refused.value)


def test_registration_refusals_are_irc_refused():
    with pytest.raises(IrcRefused):
        Registration("bench7", "#lobby").feed(b":irc.test 465 bench7 :You are banned")


def test_split_message_skips_tags_and_keeps_the_trailing_parameter_whole():
    assert split_message(b"@time=x :a!b@c PRIVMSG #lobby :two words\r") == (
        b"a",
        b"PRIVMSG",
        [b"#lobby", b"two words"],
    )


def test_irc_frames_payloads_as_privmsgs_to_the_room():
    assert IrcProtocol("#lobby").frame([b"a", b"b"]) == b"PRIVMSG #lobby :a\r\nPRIVMSG #lobby :b\r\n"


def test_a_relayed_privmsg_is_checked_as_a_line():
    payload = format_payload(TOKEN, 3, 12, 99, 64)
    relayed = b":bench3!~bench3@127.0.0.1 PRIVMSG #lobby :" + payload + b"\r"
    assert parse_line(relayed, head(TOKEN), 64) == (3, 12, 99)


STREAM_PARTS = st.lists(
    st.sampled_from(
        [
            b":bench1!~bench1@h PRIVMSG #lobby :~gb~0123abcd 1 2 3 ....\r\n",
            b"PING :irc.test\r\n",
            b":irc.test PING bench9 :tok en\r\n",
            b":bench2!~bench2@h JOIN :#lobby\r\n",
        ]
    ),
    max_size=12,
)


@given(STREAM_PARTS, st.lists(st.integers(0, 400), max_size=8))
def test_pings_are_answered_once_however_reads_cut_the_stream(parts, cuts):
    stream = b"".join(parts)
    whole = PingWatch().feed(stream, 0, len(stream))
    expected = b"".join(b"PONG " + part.split(b"PING ", 1)[1] for part in parts if b"PING " in part)
    assert whole == expected
    watch = PingWatch()
    answers = b""
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    for start, end in zip(bounds, bounds[1:]):
        # Reads land behind a gap in a bigger buffer, as in the receivers.
        buf = bytearray(b"x" * 16) + stream[start:end] + b"PING junk"
        answers += watch.feed(buf, 16, 16 + end - start)
    assert answers == expected
