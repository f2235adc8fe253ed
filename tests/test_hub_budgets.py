"""The hub's per-address budgets with a clock the test turns: what comes back, and when."""

from test_hub import User

from gchat.budget import Budget
from gchat.chat import Chat as Hub

TOO_MANY_JOINS = "!!! too many joins from your address, try again later"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_join_is_allowed_again_once_the_rate_gives_a_token_back():
    clock = Clock()
    hub = Hub(joins=Budget(rate=0.5, burst=1), clock=clock)
    a = User(hub, "10.0.0.1")
    assert a.ask("/join #x") == ["*** You are now in #x (1 user)"]
    assert a.ask("/join #y") == [TOO_MANY_JOINS]
    clock.now = 1.9
    assert a.ask("/join #y") == [TOO_MANY_JOINS]
    clock.now = 2.0
    assert a.ask("/join #y") == ["*** You are now in #y (1 user)"]


def test_joins_that_are_answered_at_once_cost_nothing():
    hub = Hub(joins=Budget(rate=0.001, burst=1), clock=Clock())
    a = User(hub, "10.0.0.1")
    assert a.ask("/join #lobby") == ["!!! you are already in #lobby"]
    assert a.ask("/join #no!") == ["!!! invalid room: #no!"]
    assert a.ask("/join #x") == ["*** You are now in #x (1 user)"]


def test_a_refused_private_message_is_allowed_again_after_its_token_comes_back():
    clock = Clock()
    hub = Hub(messages=Budget(rate=1, burst=1), clock=clock)
    a, b = User(hub, "10.0.0.1"), User(hub, "10.0.0.2")
    b.take()
    a.send(f"/msg {b.nick} one")
    assert a.ask(f"/msg {b.nick} two") == [
        f"!!! too many messages to {b.nick} from your address, try again later"
    ]
    clock.now = 1.0
    a.send(f"/msg {b.nick} three")
    assert b.take() == [f"*{a.nick}* one", f"*{a.nick}* three"]


def test_a_notice_costs_one_token_per_recipient():
    clock = Clock()
    hub = Hub(announcements=Budget(rate=1, burst=4), clock=clock)
    room = [User(hub, "10.0.0.1") for _ in range(3)]  # 0 + 1 + 2 = 3 recipients: no budget left
    for person in room:
        person.take()
    newcomer = User(hub, "10.0.0.9")  # another address: announced
    newcomer.take()
    assert [person.take() for person in room] == [[f"*** {newcomer.nick} joined #lobby"]] * 3
    room[0].leave()  # 3 recipients, 1 token: left out
    assert [person.take() for person in [*room[1:], newcomer]] == [[], [], []]
    clock.now = 2.0  # 1 + 2 tokens: enough for the 2 left
    room[1].leave()
    assert [person.take() for person in [room[2], newcomer]] == [
        [f"*** {room[1].nick} quit (connection closed)"]
    ] * 2


def test_a_rename_notice_past_the_budget_is_left_out_and_the_nick_still_changes():
    hub = Hub(announcements=Budget(rate=0.001, burst=1), clock=Clock())
    watcher = User(hub, "10.0.0.1")
    a = User(hub, "10.0.0.2")  # its joined notice spends the budget
    watcher.take()
    assert a.ask("/nick ann") == ["*** You are now ann"]
    assert watcher.take() == []
    assert watcher.ask("/who") == [f"*** users in #lobby (2): ann, {watcher.nick}"]
