"""A room's lines shared per loop turn (gchat.output's Chorus, Turn, Share), in-process.

A real ``Chat`` whose rooms reach their clients through ``Chorus`` audiences,
and real connections over socketpairs (the ``Rig`` of test_connection): the
test drives the chat from its own greenlet, so everything it does before it
reads happens in one loop turn, the case shared turns exist for. What each
peer reads is then exactly what one turn owed it, in order.
"""

import gc

import pytest
from test_connection import DEFAULTS, TIMEOUT, Counting, Rig

from gchat.chat import Chat
from gchat.config import Config
from gchat.news import Kind
from gchat.output import Chorus
from gchat.reasons import SLOW_CONSUMER
from gchat.replies import LINES

STATUS = b"*** You are %s in #lobby. Type /help for commands.\n"


class Person:
    def __init__(self, rig: Rig, chat: Chat, config: Config = DEFAULTS) -> None:
        self.connection, self.peer = rig.connect(config, wrap=Counting)
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


def people(rig: Rig, chat: Chat, count: int) -> "list[Person]":
    everyone = [Person(rig, chat) for _ in range(count)]
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


def test_a_sender_is_not_sent_its_own_lines_from_a_shared_turn(rig, chat):
    alice, bob = people(rig, chat, 2)
    for n in range(5):
        chat.say(alice.client, None, f"a{n}")
        chat.say(bob.client, None, f"b{n}")
    alice.read(*(chat_line(bob, f"b{n}") for n in range(5)))
    bob.read(*(chat_line(alice, f"a{n}") for n in range(5)))


def test_a_private_message_keeps_its_place_among_the_rooms_lines(rig, chat):
    alice, bob = people(rig, chat, 2)
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


def test_a_newcomer_in_mid_turn_gets_the_lines_after_its_arrival_only(rig, chat):
    alice, _bob = people(rig, chat, 2)
    chat.say(alice.client, None, "before 1")
    chat.say(alice.client, None, "before 2")
    carol = Person(rig, chat)
    chat.say(alice.client, None, "after")
    carol.read(
        STATUS % carol.nick.encode(),
        chat_line(alice, "before 1"),
        chat_line(alice, "before 2"),
        chat_line(alice, "after"),
    )
    carol.read_nothing_more()


def test_a_member_who_leaves_in_mid_turn_gets_no_later_lines(rig, chat):
    alice, bob, carol = people(rig, chat, 3)
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


def test_a_closed_connection_gets_no_lines_of_the_turn_after_its_close(rig, chat):
    alice, bob = people(rig, chat, 2)
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


def test_an_action_and_a_line_in_one_turn_are_each_rendered_as_such(rig, chat):
    alice, bob = people(rig, chat, 2)
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


def test_a_turn_shared_while_a_backlog_waits_comes_after_it_in_order(rig, chat):
    alice, bob = people(rig, chat, 2)
    # Far more than the socket buffers hold: the first turn leaves a backlog and a writer.
    texts = [f"{n:05d} " + "x" * 200 for n in range(4000)]
    for text in texts[:2000]:
        chat.say(alice.client, None, text)
    rig.flusher.flush()
    for text in texts[2000:]:
        chat.say(alice.client, None, text)
    bob.read(*(chat_line(alice, text) for text in texts))
