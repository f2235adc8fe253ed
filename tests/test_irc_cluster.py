"""IRC across a cluster: IRC and line clients on two gchat nodes sharing a real Redis, and IRC over TLS."""

import re
import ssl

import pytest
from conftest import IRC_SERVER, OPER_PASSWORD
from test_tls import pki  # noqa: F401  (the certificate fixture)

S = f":{IRC_SERVER}"


def prefix(nick):
    return f":{nick}!{nick}@127.0.0.1"


@pytest.fixture
def nodes(cluster):
    """Two nodes, each with an IRC port."""
    return cluster.start(2, "--irc-port", "0")


def test_irc_on_one_node_and_a_line_client_on_another_talk_both_ways(cluster, nodes):
    first, second = nodes
    line = cluster.join(second)
    alice = first.irc("alice")
    alice.join("#lobby")
    line.expect("*** alice joined #lobby")
    line.say("hello across")
    assert alice.readline() == f"{prefix(line.nick)} PRIVMSG #lobby :hello across"
    alice.send_line("PRIVMSG #lobby :\x01ACTION waves across\x01")
    assert line.readline() == "* alice waves across"
    alice.send_line(f"PRIVMSG {line.nick} :psst")
    assert line.readline() == "*alice* psst"
    line.say("/msg alice back")
    assert alice.readline() == f"{prefix(line.nick)} PRIVMSG alice :back"


def test_a_nick_held_on_another_node_is_433(cluster, nodes):
    first, second = nodes
    first.irc("alice")
    other = second.irc_connect()
    # Refused at NICK if the other node's registration reached this one already, else at
    # registration, when the nick is claimed across the cluster: one 433 either way.
    other.send_line("NICK alice", "USER alice 0 * :A")
    assert other.readline() == f"{S} 433 * alice :Nickname is already in use"
    other.sync()


def test_names_whois_and_history_see_the_whole_cluster(cluster, nodes):
    first, second = nodes
    line = cluster.join(second)
    line.say("from the other node")
    line.ping()
    alice = first.irc("alice", caps=("server-time",))
    lines = alice.join("#lobby")
    assert f"{S} 353 alice = #lobby :alice {line.nick}" in lines
    said = rf"@time=\S+ {prefix(line.nick)} PRIVMSG #lobby :from the other node"
    assert re.fullmatch(said, alice.readline())
    alice.send_line(f"WHOIS {line.nick}")
    assert alice.until(" 318 ")[1] == f"{S} 319 alice {line.nick} :#lobby"


def test_lusers_counts_the_users_of_every_node(cluster, nodes):
    first, second = nodes
    line = cluster.join(second)
    alice = first.irc("alice")
    assert f"{S} 353 alice = #lobby :alice {line.nick}" in alice.join("#lobby")  # first knows of it
    alice.send_line("LUSERS")
    assert alice.until(" 255 ") == [
        f"{S} 251 alice :There are 2 users and 0 invisible on 2 servers",
        f"{S} 254 alice 1 :channels formed",
        f"{S} 255 alice :I have 1 clients and 1 servers",
    ]


def test_a_node_started_later_sees_operators_and_away_users_of_another_node(cluster, oper_file):
    first = cluster.node("--irc-port", "0", "--oper-file", oper_file)
    alice = first.irc("alice")
    alice.send_line(f"OPER boss :{OPER_PASSWORD}", "AWAY :at lunch")
    alice.until(" 306 alice ")
    late = cluster.node("--irc-port", "0")
    bob = late.irc("bob")
    bob.send_line("WHOIS alice")
    lines = bob.until(" 318 ")
    assert f"{S} 313 bob alice :is an IRC operator" in lines
    assert f"{S} 301 bob alice :at lunch" in lines


def test_an_irc_user_leaving_is_seen_on_the_other_node(cluster, nodes):
    first, second = nodes
    line = cluster.join(second)
    alice = first.irc("alice")
    alice.join("#lobby")
    line.expect("*** alice joined #lobby")
    alice.send_line("NICK alicia", "QUIT :off")
    line.expect("*** alice is now known as alicia", "*** alicia quit (off)")


def test_irc_over_tls_and_plain_irc_and_a_tls_line_client_in_one_room(start_server, pki):  # noqa: F811
    trust = ssl.create_default_context(cafile=pki.cert)
    server = start_server(
        "--rate", "0", "--certfile", pki.cert, "--keyfile", pki.key, "--irc-port", "0", "--ircs-port", "0",
        tls=trust,
    )  # fmt: skip
    line = server.join()
    secure = server.irc("secure", tls=trust)
    plain = server.irc("plain")
    secure.join("#lobby")
    line.expect("*** secure joined #lobby")
    plain.join("#lobby")
    assert secure.readline() == f"{prefix('plain')} JOIN :#lobby"
    line.expect("*** plain joined #lobby")
    line.say("over tls")
    assert secure.readline() == f"{prefix(line.nick)} PRIVMSG #lobby :over tls"
    assert plain.readline() == f"{prefix(line.nick)} PRIVMSG #lobby :over tls"
    secure.send_line("QUIT :bye")
    assert secure.read_to_eof() == b"ERROR :Bye!\r\n"
    line.expect("*** secure quit (bye)")
