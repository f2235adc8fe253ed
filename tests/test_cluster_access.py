"""Operators across nodes (issues 5 and 6): kicks, bans and topics reach every node.

Real ``python -m gchat --bus`` nodes on the session's real redis-server, each
test on a database of its own (conftest).
"""

import signal

import pytest
from conftest import LINK_LOST, LINK_RESTORED, NEEDS_PASSWORD, OPER_PASSWORD, Cluster, hash_password, reply


@pytest.fixture(scope="module")
def oper_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("opers") / "opers"
    path.write_text(f"boss:{hash_password(OPER_PASSWORD)}\n")
    return str(path)


def operator(cluster, node):
    client = cluster.join(node)
    client.say(f"/oper boss {OPER_PASSWORD}")
    client.expect("*** You are now an operator")
    return client


def test_an_operator_kicks_a_user_of_another_node(cluster, oper_file):
    a_node, b_node = cluster.start(2, "--oper-file", oper_file)
    boss = operator(cluster, a_node)
    target = cluster.join(b_node)
    boss.say(f"/kick {target.nick} enough")
    notice = f"*** {target.nick} was kicked by {boss.nick} (enough)"
    assert target.read_to_eof() == (notice + "\n").encode()
    boss.expect(notice)
    boss.say("/who")
    assert boss.readline() == f"*** users in #lobby (1): {boss.nick}"


def test_a_kicked_users_nick_is_free_on_every_node(cluster, oper_file):
    a_node, b_node = cluster.start(2, "--oper-file", oper_file)
    boss = operator(cluster, a_node)
    target = cluster.join(b_node)
    target.say("/nick taken")
    target.expect("*** You are now taken")
    boss.expect(f"*** {target.nick} is now known as taken")
    boss.say("/kick taken")
    boss.expect("*** taken was kicked by guest1 (no reason given)")
    boss.say("/nick taken")
    assert boss.readline() == "*** You are now taken"


def ban_guest2(boss_node, target_node):
    """An operator (guest1, 127.0.0.2) of ``boss_node`` bans guest2 (127.0.0.5) of ``target_node``:
    (the operator, the banned client)."""
    boss = boss_node.connect(source="127.0.0.2")
    boss.expect("Welcome to the chatroom!", "*** You are guest1 in #lobby. Type /help for commands.")
    boss.say(f"/oper boss {OPER_PASSWORD}")
    boss.expect("*** You are now an operator")
    target = target_node.connect(source="127.0.0.5")
    target.expect("Welcome to the chatroom!", "*** You are guest2 in #lobby. Type /help for commands.")
    boss.expect("*** guest2 joined #lobby")
    boss.say("/ban guest2")
    boss.expect("*** guest2 was kicked by guest1 (banned)", "*** banned 127.0.0.5")
    return boss, target


def test_a_ban_on_one_node_refuses_the_address_on_every_node(cluster, oper_file):
    a_node, b_node = cluster.start(2, "--oper-file", oper_file)
    _, target = ban_guest2(a_node, b_node)
    assert b"(banned)" in target.read_to_eof()
    for node in (a_node, b_node):
        assert node.connect(source="127.0.0.5").read_to_eof() == b"!!! you are banned from this server\n"


def test_a_topic_set_on_one_node_is_shown_on_another_and_to_a_later_node(cluster, oper_file):
    a_node, b_node = cluster.start(2, "--oper-file", oper_file)
    boss = operator(cluster, a_node)
    member = cluster.join(b_node)
    boss.say("/topic one chat, many nodes")
    line = "*** topic for #lobby: one chat, many nodes"
    boss.expect(line)
    member.expect(line)
    late = cluster.node()
    newcomer = late.connect()
    assert newcomer.read_lines(3)[1:] == [
        "*** You are guest3 in #lobby. Type /help for commands.",
        line,
    ]


def test_a_ban_on_one_node_closes_the_address_connections_at_another_nodes_password_prompt(
    cluster, oper_file, tmp_path
):
    password = tmp_path / "password"
    password.write_text("sesame\n")
    a_node, b_node = cluster.start(2, "--oper-file", oper_file, "--password-file", str(password))
    boss = a_node.connect(source="127.0.0.2")
    boss.expect("Welcome to the chatroom!", NEEDS_PASSWORD)
    boss.say("/pass sesame", f"/oper boss {OPER_PASSWORD}")
    boss.expect("*** You are guest1 in #lobby. Type /help for commands.", "*** You are now an operator")
    target = b_node.connect(source="127.0.0.5")
    target.expect("Welcome to the chatroom!", NEEDS_PASSWORD)
    target.say("/pass sesame")
    target.expect("*** You are guest2 in #lobby. Type /help for commands.")
    boss.expect("*** guest2 joined #lobby")
    waiting = b_node.connect(source="127.0.0.5")
    waiting.expect("Welcome to the chatroom!", NEEDS_PASSWORD)
    boss.say("/ban guest2")
    boss.expect("*** guest2 was kicked by guest1 (banned)", "*** banned 127.0.0.5")
    assert waiting.read_to_eof() == b"!!! you are banned from this server\n"


def test_a_ban_and_a_topic_set_while_cut_off_reach_every_node_once_back(start_server, own_redis, oper_file):
    """Issue 10, item 11: bans and topics converge too; Redis stalls past --node-timeout meanwhile."""
    cluster = Cluster(start_server, own_redis.url(0))
    a_node, b_node = cluster.start(2, "--oper-file", oper_file, "--node-timeout", "1")
    boss = operator(cluster, a_node)
    member = cluster.join(b_node)
    target = a_node.connect(source="127.0.0.5")
    target.expect("Welcome to the chatroom!", "*** You are guest3 in #lobby. Type /help for commands.")
    boss.expect("*** guest3 joined #lobby")
    member.expect("*** guest3 joined #lobby")
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        for client in (boss, member, target):
            client.expect(LINK_LOST)
        boss.say("/ban guest3", "/topic set while apart")
        boss.expect(
            "*** guest3 was kicked by guest1 (banned)",
            "*** banned 127.0.0.5",
            "*** topic for #lobby: set while apart",
        )
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    for client in (boss, member):
        client.read_until(LINK_RESTORED)
    # Both nodes are back; whatever node a published before this, b has applied after it.
    boss.say(f"/msg {member.nick} are you in step?")
    member.read_until(f"*{boss.nick}* are you in step?")
    assert b_node.connect(source="127.0.0.5").read_to_eof() == b"!!! you are banned from this server\n"
    assert reply(member, "/topic") == "*** topic for #lobby: set while apart"


def test_an_unban_on_one_node_lets_the_address_back_in_on_another(cluster, oper_file):
    a_node, b_node = cluster.start(2, "--oper-file", oper_file)
    boss, _ = ban_guest2(a_node, a_node)
    pardoner = b_node.connect(source="127.0.0.4")
    pardoner.expect("Welcome to the chatroom!", "*** You are guest3 in #lobby. Type /help for commands.")
    boss.expect("*** guest3 joined #lobby")
    pardoner.say(f"/oper boss {OPER_PASSWORD}", "/unban 127.0.0.5", "unbanned it")
    pardoner.expect("*** You are now an operator", "*** unbanned 127.0.0.5")
    boss.expect("<guest3> unbanned it")  # a has the unban: the bus keeps one order
    back = a_node.connect(source="127.0.0.5")
    assert back.readline() == "Welcome to the chatroom!"
