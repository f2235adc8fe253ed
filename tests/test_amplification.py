"""What one address may make the chat send others: joins, private messages, notices (issue 10, item 7).

Each test sets a small budget and a rate so low that nothing refills while it
runs, so the limit is hit at the same line on any machine.
"""

import re

import pytest
from conftest import PING, PONG, move, rename, reply

TOO_MANY_JOINS = "!!! too many joins from your address, try again later"
# A refill far slower than any test: no token comes back while one runs.
NO_REFILL = "0.0001"


def too_many_messages(nick: str) -> str:
    return f"!!! too many messages to {nick} from your address, try again later"


def test_joins_beyond_the_join_budget_are_refused_with_one_line_and_change_nothing(start_server):
    server = start_server("--rate", "0", "--join-burst", "3", "--join-rate", NO_REFILL)
    a, b = server.join(), server.join()
    move(a, "#x", 1, old=(b,))
    move(a, "#lobby", 2, new=(b,), old_room="#x")
    move(a, "#x", 1, old=(b,))
    assert reply(a, "/join #lobby") == TOO_MANY_JOINS
    assert reply(a, "/who") == f"*** users in #x (1): {a.nick}"
    b.ping()  # no left or joined notice came before the reply


@pytest.mark.parametrize(
    ("flags", "shared", "apart"),
    [
        ((), ("127.0.0.21", "127.0.0.21"), "127.0.0.22"),
        # --ipv4-prefix 24 stands for IPv6's default /64 (this machine has one IPv6 address).
        (("--ipv4-prefix", "24"), ("127.0.0.23", "127.0.0.24"), "127.0.1.24"),
    ],
)
def test_the_join_budget_is_shared_by_the_connections_of_one_source_only(start_server, flags, shared, apart):
    server = start_server("--rate", "0", "--join-burst", "1", "--join-rate", NO_REFILL, *flags)
    a, b = (server.join(source=source) for source in shared)
    c = server.join(source=apart)
    move(a, "#x", 1, old=(b, c))
    assert reply(b, "/join #y") == TOO_MANY_JOINS
    move(c, "#y", 1, old=(b,))


def test_join_rate_zero_turns_the_join_limit_off(start_server):
    server = start_server("--rate", "0", "--join-burst", "1", "--join-rate", "0")
    a = server.join()
    for room in ("#x", "#y", "#z"):
        a.say(f"/join {room}")
        assert a.readline().startswith(f"*** You are now in {room} (")


def test_a_private_flood_from_one_address_is_throttled_and_the_target_stays(start_server):
    server = start_server("--rate", "0", "--msg-burst", "5", "--msg-rate", NO_REFILL)
    victim = server.join(source="127.0.0.31")
    x = server.join(source="127.0.0.32")
    y = server.join(source="127.0.0.32")
    refused = []
    for attacker in (x, y):
        attacker.say(*[f"/msg {victim.nick} {attacker.nick} says {n}" for n in range(10)], PING)
        refused += attacker.read_until(PONG)[:-1]
    assert refused == [too_many_messages(victim.nick)] * 15
    victim.say(PING)  # connected still, and owed exactly the first five
    assert victim.read_until(PONG) == [
        *(f"*{x.nick}* {x.nick} says {n}" for n in range(5)),
        PONG,
    ]


def test_the_private_budget_is_per_target_and_per_address(start_server):
    server = start_server("--rate", "0", "--msg-burst", "1", "--msg-rate", NO_REFILL)
    v, w = server.join(source="127.0.0.41"), server.join(source="127.0.0.41")
    a, b = server.join(source="127.0.0.42"), server.join(source="127.0.0.43")
    a.say(f"/msg {v.nick} one")
    v.expect(f"*{a.nick}* one")
    # The same target in other letters: the same budget, refused in the words the sender used.
    assert reply(a, f"/msg {v.nick.upper()} two") == too_many_messages(v.nick.upper())
    a.say(f"/msg {w.nick} three")
    w.expect(f"*{a.nick}* three")
    b.say(f"/msg {v.nick} four")
    v.expect(f"*{b.nick}* four")
    v.ping()


def test_a_normal_user_is_never_refused_with_the_default_limits(start_server):
    server = start_server()  # every default, --rate included
    me, friend = server.join(), server.join()
    rooms = [f"#room{n}" for n in range(10)]
    me.say(*(f"/join {room}" for room in rooms), *(f"/msg {friend.nick} line {n}" for n in range(30)), PING)
    replies = me.read_until(PONG)
    assert not [line for line in replies if line.startswith("!!! ") and line != PONG]
    assert [line for line in replies if line.startswith("*** You are now in ")] == [
        f"*** You are now in {room} (1 user)" for room in rooms
    ]
    friend.expect(f"*** {me.nick} left #lobby", *(f"*{me.nick}* line {n}" for n in range(30)))


def test_the_budgets_can_be_set_from_the_environment(start_server):
    server = start_server("--rate", "0", env={"GCHAT_MSG_BURST": "1", "GCHAT_MSG_RATE": NO_REFILL})
    a, b = server.join(), server.join()
    a.say(f"/msg {b.nick} one")
    b.expect(f"*{a.nick}* one")
    assert reply(a, f"/msg {b.nick} two") == too_many_messages(b.nick)


def test_notices_about_one_address_past_its_budget_are_left_out_and_the_users_still_come_and_go(
    start_server,
):
    server = start_server("--rate", "0", "--announce-burst", "3", "--announce-rate", NO_REFILL)
    watcher = server.join(source="127.0.0.51")
    x = server.join(source="127.0.0.52")  # a notice to one: 2 left
    x.say("/quit")
    x.expect("*** Bye!")
    watcher.expect(f"*** {x.nick} quit (leaving)")  # 1 left
    x.close()
    y = server.join(source="127.0.0.52")  # 0 left
    quiet = server.connect(source="127.0.0.52")
    assert quiet.readline() == "Welcome to the chatroom!"
    match = re.fullmatch(r"\*\*\* You are (\S+) in #lobby\. Type /help for commands\.", quiet.readline())
    assert match
    quiet.nick = match.group(1)
    watcher.ping()
    y.ping()  # no joined notice came before the reply
    listed = reply(watcher, "/who").split(": ", 1)[1].split(", ")
    assert sorted(listed) == sorted([watcher.nick, y.nick, quiet.nick])
    server.join(source="127.0.0.53")  # another address: announced to all three
    quiet.say("/quit")
    quiet.expect("*** Bye!")
    watcher.ping()


def test_nick_toggling_past_the_notice_budget_is_left_out_and_the_nick_still_changes(start_server):
    server = start_server("--rate", "0", "--announce-burst", "2", "--announce-rate", NO_REFILL)
    watcher = server.join(source="127.0.0.61")
    toggler = server.join(source="127.0.0.62")  # a notice to one: 1 left
    old = toggler.nick
    rename(toggler, "tick", watcher)  # 0 left
    toggler.say("/nick tock")
    toggler.expect("*** You are now tock")
    watcher.ping()  # no notice came before the reply
    assert reply(watcher, "/who") == f"*** users in #lobby (2): {watcher.nick}, tock"
    assert old != "tock"


def test_with_a_bus_a_refused_join_reaches_no_other_node(cluster):
    a_node, b_node = cluster.start(2, "--join-burst", "1", "--join-rate", NO_REFILL)
    a, b = cluster.join(a_node), cluster.join(b_node)
    move(a, "#x", 1, old=(b,))
    assert reply(a, "/join #lobby") == TOO_MANY_JOINS
    assert reply(b, "/rooms") == "*** rooms (2): #lobby (1), #x (1)"
