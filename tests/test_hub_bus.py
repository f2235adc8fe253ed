"""The hub over a bus that does not deliver at once, and with users of other nodes.

``HeldBus`` keeps what the hub publishes until the test releases it, as the
Redis bus does while a round trip is under way, and lets a test play the
events another node would publish. The hub must keep each client's own
commands consistent meanwhile, and change rooms only as events are applied.
"""

from typing import Optional

import pytest
from test_hub import RecordingMailbox, User, drain

from gchat.bus import Entry, Replica, Snapshot
from gchat.chat import Chat as Hub
from gchat.events import Event, Joined, Left, NodeLost, Renamed, Said, encode
from gchat.news import Kind, Message
from gchat.replies import LINES

OTHER = "othernode"


class HeldBus:
    """Publishes nowhere until ``release``; claims answer as ``taken`` says."""

    def __init__(self) -> None:
        self.node = "thisnode"
        self.held: list[Event] = []
        self.taken: set[str] = set()
        self.listener: Optional[Replica] = None

    def start(self) -> None:
        pass

    def attach(self, replica: Replica) -> None:
        self.listener = replica

    def publish(self, event: Event) -> None:
        self.held.append(event)

    def rename(self, old: str, new: str) -> bool:
        if new.lower() in self.taken:
            return False
        self.publish(Renamed(old, new))
        return True

    def claim_guest(self) -> Optional[str]:
        return None

    def close(self) -> None:
        pass

    def release(self) -> None:
        """Apply everything published so far, in order, as Redis would hand it back."""
        assert self.listener is not None
        while self.held:
            self.listener.apply(self.held.pop(0))

    def play(self, event: Event) -> None:
        """An event from another node, after everything this node published."""
        self.release()
        assert self.listener is not None
        self.listener.apply(event)


@pytest.fixture
def bus() -> HeldBus:
    return HeldBus()


@pytest.fixture
def hub(bus: HeldBus) -> Hub:
    return Hub(bus=bus)


def connected(hub: Hub, bus: HeldBus, count: int) -> "list[User]":
    people = [User(hub) for _ in range(count)]
    bus.release()
    for user in people:
        user.take()
    return people


def test_a_newcomer_gets_its_status_line_only_when_its_join_comes_back(hub, bus):
    user = User(hub)
    assert user.take() == []
    bus.release()
    assert user.take() == ["*** You are guest1 in #lobby. Type /help for commands."]


def test_a_line_sent_right_after_join_goes_to_the_new_room(hub, bus):
    alice, bob, carol = connected(hub, bus, 3)
    bob.send("/join #dev")
    bus.release()
    alice.send("/join #dev")
    alice.send("hello dev")
    bus.release()
    assert bob.take()[-1] == "<guest1> hello dev"
    assert "<guest1> hello dev" not in carol.take()


def test_lines_ordered_before_a_join_still_reach_the_joiner_in_its_old_room(hub, bus):
    alice, bob = connected(hub, bus, 2)
    bob.send("before")
    alice.send("/join #dev")
    bus.release()
    assert alice.take() == ["<guest2> before", "*** You are now in #dev (1 user)"]


def test_who_right_after_join_already_shows_the_new_room(hub, bus):
    (alice,) = connected(hub, bus, 1)
    alice.send("/join #dev")
    alice.send("/who")
    bus.release()
    assert alice.take()[-1] == "*** users in #dev (1): guest1"


def test_a_nick_the_bus_says_is_taken_is_in_use(hub, bus):
    (alice,) = connected(hub, bus, 1)
    bus.taken.add("bob")
    assert alice.ask("/nick Bob") == ["!!! nickname in use: Bob"]
    assert alice.nick == "guest1"


def test_a_nick_being_claimed_by_one_client_is_in_use_for_another(hub, bus):
    alice, bob = connected(hub, bus, 2)
    alice.send("/nick bob2")
    assert bob.ask("/nick BOB2") == ["!!! nickname in use: BOB2"]


def test_users_of_other_nodes_are_in_who_and_hear_nothing_here(hub, bus):
    (alice,) = connected(hub, bus, 1)
    bus.play(Joined(OTHER, 1, "remote", "#lobby"))
    assert alice.take() == ["*** remote joined #lobby"]
    alice.send("/who")
    bus.release()
    assert alice.take() == ["*** users in #lobby (2): guest1, remote"]


def test_a_line_from_another_node_reaches_local_members(hub, bus):
    (alice,) = connected(hub, bus, 1)
    bus.play(Joined(OTHER, 1, "remote", "#lobby"))
    bus.play(Said(OTHER, 1, Message("#lobby", "remote", "10.0.0.2", "hi", Kind.SAY, 0.0)))
    assert alice.take()[-1] == "<remote> hi"


def test_a_lost_node_s_users_quit_with_node_lost(hub, bus):
    (alice,) = connected(hub, bus, 1)
    bus.play(Joined(OTHER, 1, "remote", "#lobby"))
    bus.play(Joined(OTHER, 2, "other", "#dev"))
    alice.take()
    bus.play(NodeLost(OTHER))
    assert alice.take() == ["*** remote quit (node lost)"]
    alice.send("/rooms")
    bus.release()
    assert alice.take() == ["*** rooms (1): #lobby (1)"]


def test_a_node_lost_notice_about_this_node_removes_no_one(hub, bus):
    alice, _ = connected(hub, bus, 2)
    bus.play(NodeLost(bus.node))
    assert alice.take() == []
    alice.send("/who")
    bus.release()
    assert alice.take() == ["*** users in #lobby (2): guest1, guest2"]


def test_a_lost_link_is_announced_and_forgets_other_nodes(hub, bus):
    (alice,) = connected(hub, bus, 1)
    bus.play(Joined(OTHER, 1, "remote", "#lobby"))
    alice.take()
    hub.link_lost()
    assert alice.take() == ["*** cluster link lost, local only"]
    alice.send("/who")
    bus.release()
    assert alice.take() == ["*** users in #lobby (1): guest1"]


def test_a_restored_link_brings_back_other_nodes_from_the_snapshot(hub, bus):
    (alice,) = connected(hub, bus, 1)
    hub.link_lost()
    alice.take()
    hub.resync({}, Snapshot([Entry(OTHER, 1, "remote", ("#lobby",), "10.0.0.2", "h")]))
    assert alice.take() == ["*** cluster link restored"]
    assert bus.held == []  # the bus republished this node's clients itself
    alice.send("/who")
    bus.release()
    assert alice.take() == ["*** users in #lobby (2): guest1, remote"]


def test_a_nick_taken_while_the_link_was_down_is_renamed_to_a_guest(hub, bus):
    alice, bob = connected(hub, bus, 2)
    assert alice.ask("/nick alice") == ["*** You are now alice"]
    bus.release()
    bob.take()
    hub.link_lost()
    drain(alice, bob)
    hub.resync({alice.client.cid: "guest7"}, Snapshot([Entry(OTHER, 1, "Alice", ("#dev",), "10.0.0.2", "h")]))
    assert alice.take() == ["*** You are now guest7", "*** cluster link restored"]
    assert bob.take() == ["*** alice is now known as guest7", "*** cluster link restored"]


def test_a_join_whose_event_was_lost_with_the_link_is_completed_by_the_resync(hub, bus):
    """Redis ran the join, its event never came back: the client is moved as it asked (issue 10, item 11)."""
    alice, bob = connected(hub, bus, 2)
    alice.send("/join #h2")
    bus.held.clear()
    hub.link_lost()
    drain(alice, bob)
    hub.resync(
        {},
        Snapshot(
            [Entry(OTHER, 1, "remote", ("#h2",), "", "h")],
            history={
                "#h2": [encode(Said(OTHER, 1, Message("#h2", "remote", "h", "earlier", Kind.SAY, 0.0)))]
            },
        ),
    )
    assert alice.take() == [
        "*** You are now in #h2 (2 users)",
        "<remote> earlier",
        "*** cluster link restored",
    ]
    assert bob.take() == ["*** guest1 left #lobby", "*** cluster link restored"]


def test_a_newcomer_whose_join_was_lost_with_the_link_is_welcomed_by_the_resync(hub, bus):
    newcomer = User(hub)
    bus.held.clear()
    hub.link_lost()
    hub.resync({}, Snapshot())
    assert newcomer.take() == [
        "*** cluster link lost, local only",
        "*** You are guest1 in #lobby. Type /help for commands.",
        "*** cluster link restored",
    ]


def test_a_join_applied_after_its_clients_lost_rename_moves_the_one_member(hub, bus):
    """The Renamed event went with the link; the next join carries the new nick: no second member."""
    alice, bob = connected(hub, bus, 2)
    assert alice.ask("/nick alice") == ["*** You are now alice"]
    bus.held.clear()
    alice.send("/join #dev")
    bus.release()
    assert bob.take() == ["*** guest1 is now known as alice", "*** alice left #lobby"]
    alice.send("/rooms")
    bus.release()
    assert alice.take() == ["*** You are now in #dev (1 user)", "*** rooms (2): #dev (1), #lobby (1)"]


def test_another_nodes_resync_replaces_its_users_with_notices_for_what_changed(hub, bus):
    (alice,) = connected(hub, bus, 1)
    for cid, nick in enumerate(("stays", "renamed", "moved", "gone"), 1):
        bus.play(Joined(OTHER, cid, nick, "#lobby"))
    alice.take()
    hub.resynced(
        OTHER,
        [
            Entry(OTHER, 1, "stays", ("#lobby",), "", "h"),
            Entry(OTHER, 2, "newname", ("#lobby",), "", "h"),
            Entry(OTHER, 3, "moved", ("#dev",), "", "h"),
            Entry(OTHER, 5, "newcomer", ("#lobby",), "", "h"),
        ],
    )
    assert alice.take() == [
        "*** gone quit (left while the link was down)",
        "*** renamed is now known as newname",
        "*** moved left #lobby",
        "*** newcomer joined #lobby",
    ]
    alice.send("/rooms")
    bus.release()
    assert alice.take() == ["*** rooms (2): #dev (1), #lobby (4)"]


class LeavingBus(HeldBus):
    """A bus during whose claim the claiming client is dropped (say, as a slow consumer)."""

    def __init__(self) -> None:
        super().__init__()
        self.leaving: Optional[User] = None

    def rename(self, old: str, new: str) -> bool:
        renamed = super().rename(old, new)
        if self.leaving is not None:
            self.leaving.leave("slow consumer")
            self.leaving = None
        return renamed


def test_a_client_gone_while_its_nick_was_claimed_gives_the_claim_back():
    bus = LeavingBus()
    hub = Hub(bus=bus)
    alice, bob = connected(hub, bus, 2)
    bus.leaving = alice
    alice.send("/nick gone")
    assert bus.held == [
        Renamed("guest1", "gone"),
        Left("guest1", "slow consumer"),
        Left("gone", "slow consumer"),
    ]
    bus.release()
    assert bob.ask("/nick gone") == ["*** You are now gone"]


def test_announce_limit_silences_joins_and_quits_in_large_rooms(bus):
    hub = Hub(bus=bus, announce_limit=2)
    alice, bob = connected(hub, bus, 2)
    carol = User(hub)
    bus.release()
    carol.leave()
    bus.release()
    assert alice.take() == []
    bob.leave()
    bus.release()
    assert alice.take() == ["*** guest2 quit (connection closed)"]


def test_a_client_admitted_after_shutdown_began_is_told_and_closed(hub, bus):
    hub.shutdown()
    mailbox = RecordingMailbox()
    hub.connect(mailbox, "", LINES)
    assert mailbox.lines == ["*** server shutting down"]
    assert mailbox.closed
