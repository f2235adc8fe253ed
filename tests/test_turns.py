"""A room's lines shared per loop turn (gchat.output's Chorus, Broadcast, Turn), in-process.

A real ``Chat`` whose rooms reach their clients through ``Chorus`` audiences,
and real connections over socketpairs (the ``Rig`` of test_connection): the
test drives the chat from its own greenlet, so everything it does before it
reads happens in one loop turn, the case shared turns exist for. What each
peer reads is then exactly what one turn owed it, in order.

Tests of order run twice: over plain sockets, where a line alone in its turn
is a ``Broadcast`` sent ahead of everything else at the flush, and over
sockets that count their sends, which the broadcast leaves to ``deliver``.
"""

import gc

import pytest
from test_connection import DEFAULTS, TIMEOUT, Counting, Rig

from gchat.chat import Chat
from gchat.config import Config
from gchat.news import Kind
from gchat.output import Chorus, Output
from gchat.reasons import SERVER_ERROR, SLOW_CONSUMER
from gchat.replies import LINES

STATUS = b"*** You are %s in #lobby. Type /help for commands.\n"


def plain(sock):
    return sock


class Person:
    def __init__(self, rig: Rig, chat: Chat, config: Config = DEFAULTS, wrap=Counting) -> None:
        self.connection, self.peer = rig.connect(config, wrap=wrap)
        client = chat.connect(self.connection.output, "127.0.0.1", LINES)
        assert client is not None
        self.client = client
        self.nick = client.nick

    def read(self, *lines: bytes) -> None:
        """Read exactly ``lines`` (and, within the timeout, nothing else before them)."""
        expected = b"".join(lines)
        data = b""
        while len(data) < len(expected):
            chunk = self.peer.recv(len(expected) - len(data))
            assert chunk, f"closed after {data!r}"
            data += chunk
        assert data == expected

    def read_the_end(self) -> None:
        assert self.peer.recv(100) == b"", "more was sent before the FIN"

    def read_nothing_more(self) -> None:
        self.peer.settimeout(0.2)
        try:
            assert self.peer.recv(100) == b"", "more was sent"
        except OSError:
            pass
        finally:
            self.peer.settimeout(TIMEOUT)


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def chat(rig: Rig) -> Chat:
    return Chat(audience=lambda style: Chorus(rig.flusher))


@pytest.fixture(params=[plain, Counting], ids=["plain", "counted"])
def wrap(request):
    return request.param


def people(rig: Rig, chat: Chat, count: int, wrap=Counting) -> "list[Person]":
    everyone = [Person(rig, chat, wrap=wrap) for _ in range(count)]
    for index, person in enumerate(everyone):
        person.read(
            STATUS % person.nick.encode(),
            *(b"*** %s joined #lobby\n" % later.nick.encode() for later in everyone[index + 1 :]),
        )
    return everyone


def chat_line(person: Person, text: str) -> bytes:
    return b"<%s> %s\n" % (person.nick.encode(), text.encode())


def test_a_burst_reaches_everyone_else_in_order_with_one_send_each(rig, chat):
    alice, bob, carol = people(rig, chat, 3)
    sends = bob.connection.sock.sends
    texts = [f"line {n}" for n in range(100)]
    for text in texts:
        chat.say(alice.client, None, text)
    burst = [chat_line(alice, text) for text in texts]
    bob.read(*burst)
    carol.read(*burst)
    assert bob.connection.sock.sends == sends + 1


def test_a_sender_is_not_sent_its_own_lines_from_a_shared_turn(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    for n in range(5):
        chat.say(alice.client, None, f"a{n}")
        chat.say(bob.client, None, f"b{n}")
    alice.read(*(chat_line(bob, f"b{n}") for n in range(5)))
    bob.read(*(chat_line(alice, f"a{n}") for n in range(5)))


def test_a_private_message_keeps_its_place_among_the_rooms_lines(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "one")
    chat.say(alice.client, None, "two")
    chat.private(alice.client, bob.nick, "between")
    chat.say(alice.client, None, "three")
    bob.read(
        chat_line(alice, "one"),
        chat_line(alice, "two"),
        b"*%s* between\n" % alice.nick.encode(),
        chat_line(alice, "three"),
    )


def test_a_newcomer_in_mid_turn_gets_the_lines_after_its_arrival_only(rig, chat, wrap):
    alice, _bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "before 1")
    chat.say(alice.client, None, "before 2")
    carol = Person(rig, chat, wrap=wrap)
    chat.say(alice.client, None, "after")
    carol.read(
        STATUS % carol.nick.encode(),
        chat_line(alice, "before 1"),
        chat_line(alice, "before 2"),
        chat_line(alice, "after"),
    )
    carol.read_nothing_more()


def test_a_member_who_leaves_in_mid_turn_gets_no_later_lines(rig, chat, wrap):
    alice, bob, carol = people(rig, chat, 3, wrap)
    chat.say(alice.client, None, "one")
    chat.say(alice.client, None, "two")
    chat.join(bob.client, "#elsewhere", switch=True)
    chat.say(alice.client, None, "three")
    bob.read(chat_line(alice, "one"), chat_line(alice, "two"), b"*** You are now in #elsewhere (1 user)\n")
    bob.read_nothing_more()
    carol.read(
        chat_line(alice, "one"),
        chat_line(alice, "two"),
        b"*** %s left #lobby\n" % bob.nick.encode(),
        chat_line(alice, "three"),
    )


def test_a_closed_connection_gets_no_lines_of_the_turn_after_its_close(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "one")
    chat.say(alice.client, None, "two")
    chat.quit(bob.client, "bye")
    chat.say(alice.client, None, "three")
    bob.read(chat_line(alice, "one"), chat_line(alice, "two"), b"*** Bye!\n")
    bob.read_nothing_more()


def test_a_shared_turn_over_max_backlog_cuts_the_client_off(rig, chat):
    alice = Person(rig, chat)
    alice.read(STATUS % alice.nick.encode())
    small = Person(rig, chat, Config(max_backlog=1000))
    small.read(STATUS % small.nick.encode())
    for _ in range(50):
        chat.say(alice.client, None, "x" * 50)
    rig.flusher.flush()
    assert small.connection.reason == SLOW_CONSUMER


def test_an_action_and_a_line_in_one_turn_are_each_rendered_as_such(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "waves", Kind.ACTION)
    chat.say(alice.client, None, "hi")
    bob.read(b"* %s waves\n" % alice.nick.encode(), chat_line(alice, "hi"))


def test_a_shared_turn_allocates_no_collected_object_per_recipient(rig, chat):
    """A share lives until the flush: one object per recipient would outlive the collector's young
    generations, be promoted, and make CPython walk every client's objects in full collections,
    a pause that grows with the room (tests/perf/README.md, the capacity scenario)."""
    everyone = people(rig, chat, 100)
    speaker = everyone[0]
    chat.say(speaker.client, None, "alone in its turn: delivered directly")
    gc.disable()
    try:
        before = len(gc.get_objects())
        chat.say(speaker.client, None, "the second opens a shared turn")
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert grown < len(everyone) // 2, f"{grown} objects tracked for a turn shared by {len(everyone) - 1}"


def test_a_turn_shared_while_a_backlog_waits_comes_after_it_in_order(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    # Far more than the socket buffers hold: the first turn leaves a backlog and a writer.
    texts = [f"{n:05d} " + "x" * 200 for n in range(4000)]
    for text in texts[:2000]:
        chat.say(alice.client, None, text)
    rig.flusher.flush()
    for text in texts[2000:]:
        chat.say(alice.client, None, text)
    bob.read(*(chat_line(alice, text) for text in texts))


def test_a_line_alone_in_its_turn_costs_no_python_call_per_recipient(rig, chat, monkeypatch):
    """Over plain sockets the flush sends it to the whole room in one C-level loop (Broadcast):
    a deliver and a flush per recipient were most of gchat's CPU beyond the kernel's at
    1,000 lines/s into 100 clients (tests/perf/README.md)."""
    everyone = people(rig, chat, 100, plain)
    speaker = everyone[0]
    calls = []

    def counted(name):
        original = getattr(Output, name)

        def method(self, *args):
            calls.append(name)
            return original(self, *args)

        return method

    for name in ("deliver", "flush"):
        monkeypatch.setattr(Output, name, counted(name))
    chat.say(speaker.client, None, "alone in its turn")
    for person in everyone[1:]:
        person.read(chat_line(speaker, "alone in its turn"))
    assert calls == []


def test_a_private_message_before_a_lone_line_comes_before_it(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.private(alice.client, bob.nick, "first")
    chat.say(alice.client, None, "second")
    bob.read(b"*%s* first\n" % alice.nick.encode(), chat_line(alice, "second"))


def test_a_private_message_after_a_lone_line_comes_after_it(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "first")
    chat.private(alice.client, bob.nick, "second")
    bob.read(chat_line(alice, "first"), b"*%s* second\n" % alice.nick.encode())


def in_two_rooms(rig: Rig, chat: Chat, wrap) -> "tuple[Person, Person]":
    alice, bob = people(rig, chat, 2, wrap)
    chat.join(alice.client, "#b", switch=False)
    chat.join(bob.client, "#b", switch=False)
    alice.read(b"*** You are now in #b (1 user)\n", b"*** %s joined #b\n" % bob.nick.encode())
    bob.read(b"*** You are now in #b (2 users)\n")
    return alice, bob


def test_lone_lines_in_two_rooms_reach_a_member_of_both_in_order(rig, chat, wrap):
    alice, bob = in_two_rooms(rig, chat, wrap)
    chat.say(alice.client, "#lobby", "one")
    chat.say(alice.client, "#b", "two")
    chat.say(alice.client, "#lobby", "three")
    bob.read(chat_line(alice, "one"), chat_line(alice, "two"), chat_line(alice, "three"))


def test_a_lone_line_then_a_burst_keeps_a_private_message_between_them(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "one")
    chat.private(alice.client, bob.nick, "between")
    chat.say(alice.client, None, "two")
    bob.read(chat_line(alice, "one"), b"*%s* between\n" % alice.nick.encode(), chat_line(alice, "two"))


def test_a_burst_after_lone_lines_in_two_rooms_comes_after_both(rig, chat, wrap):
    alice, bob = in_two_rooms(rig, chat, wrap)
    chat.say(alice.client, "#lobby", "a1")
    chat.say(alice.client, "#b", "b1")
    chat.say(alice.client, "#lobby", "a2")
    chat.say(alice.client, "#b", "b2")
    bob.read(*(chat_line(alice, text) for text in ("a1", "b1", "a2", "b2")))


def test_a_member_who_quits_after_a_lone_line_gets_it_then_bye_then_the_end(rig, chat, wrap):
    alice, bob = people(rig, chat, 2, wrap)
    chat.say(alice.client, None, "last words")
    chat.quit(bob.client, "bye")
    bob.read(chat_line(alice, "last words"), b"*** Bye!\n")
    bob.read_the_end()


def test_a_connection_dropped_after_a_lone_line_is_sent_none_of_it(rig, chat, wrap):
    alice, bob, carol = people(rig, chat, 3, wrap)
    chat.say(alice.client, None, "not for bob")
    bob.connection.abort(SERVER_ERROR)
    carol.read(chat_line(alice, "not for bob"))
    bob.read_nothing_more()


def test_lone_lines_the_kernel_cannot_take_whole_reach_a_member_in_order(rig, chat, wrap):
    alice, bob = in_two_rooms(rig, chat, wrap)
    # More than a socketpair's buffers take at once, within --max-backlog: its rest waits for a writer.
    big = "x" * (DEFAULTS.max_backlog // 2)
    chat.say(alice.client, "#lobby", big)
    chat.say(alice.client, "#b", "after the big one")
    chat.private(alice.client, bob.nick, "and then this")
    bob.read(
        chat_line(alice, big),
        chat_line(alice, "after the big one"),
        b"*%s* and then this\n" % alice.nick.encode(),
    )
