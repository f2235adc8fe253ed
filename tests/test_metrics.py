"""--metrics-port: Prometheus metrics over real HTTP, after real clients did real things.

Every count is read after a reply proves the server has done what is
counted: the server counts before it sends, so a line a client has read was
counted already.
"""

import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from conftest import (
    OPER_PASSWORD,
    PONG,
    ROOT,
    TIMEOUT,
    assert_connections_add_up,
    disconnects,
    hash_password,
    knock,
    listening_ports,
    on_free_port,
    operator,
    run_gchat,
    scrape,
    small_window_socket,
    start_metered,
)

from gchat.metrics import SCRAPERS
from gchat.replies import SERVER_FULL

LINE = "x" * 4000
# A request whose headers never end: the blank line after them is not sent.
HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: gchat\r\n"


def test_metrics_are_off_by_default(server):
    assert listening_ports(server.pid) == {server.port}
    assert not any("metrics" in line for line in server.log)


def test_environment_variable_turns_metrics_on(start_server):
    server, port = on_free_port(
        lambda port: start_server("--rate", "0", env={"GCHAT_METRICS_PORT": str(port)})
    )
    assert listening_ports(server.pid) == {server.port, port}
    assert scrape(port)["gchat_connections_open"] == 0


def test_metrics_listen_on_the_chat_host(start_server):
    server, port = start_metered(start_server, "--host", "::1")
    assert server.host == "::1"
    assert scrape(port, host="[::1]")["gchat_rooms"] == 1


@pytest.mark.parametrize("value", ["-1", "65536", "lots"])
def test_bad_metrics_port_gives_one_line_and_nonzero_status(value):
    status, _, errors = run_gchat("--metrics-port", value)
    assert status == 2
    assert len(errors) == 1
    assert errors[0].startswith(f"gchat: error: argument --metrics-port: invalid value '{value}'")


def test_metrics_port_in_use_gives_one_line_and_status_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, errors = run_gchat("--port", "0", "--metrics-port", str(port))
    assert status == 1
    assert errors == [f"gchat: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]


def test_connections_are_counted_open_and_in_total(start_server):
    server, port = start_metered(start_server)
    a, b = server.join(), server.join()
    samples = scrape(port)
    assert samples["gchat_connections_open"] == 2
    assert samples["gchat_connections_total"] == 2
    b.say("/quit")
    a.expect(f"*** {b.nick} quit (leaving)")
    samples = scrape(port)
    assert samples["gchat_connections_open"] == 1
    assert samples["gchat_connections_total"] == 2


def test_chat_lines_in_and_deliveries_out_are_counted(start_server):
    server, port = start_metered(start_server)
    a, b, c = server.join(), server.join(), server.join()
    a.say("one", "/me two", "/who")
    a.readline()  # the /who reply
    for other in (b, c):
        other.expect(f"<{a.nick}> one", f"* {a.nick} two")
    samples = scrape(port)
    assert samples["gchat_messages_in_total"] == 2  # /who is a command, not a chat line
    # Welcome and status for each of 3 (6), 3 join notices, 2 lines to each of 2, 1 reply.
    assert samples["gchat_deliveries_total"] == 6 + 3 + 4 + 1


def test_bytes_in_and_out_are_counted(start_server):
    server, port = start_metered(start_server)
    a = server.connect()
    welcome = a.readline_bytes() + b"\n" + a.readline_bytes() + b"\n"
    a.say("/ping")
    assert a.readline() == PONG
    samples = scrape(port)
    assert samples["gchat_received_bytes_total"] == len("/ping\n")
    assert samples["gchat_sent_bytes_total"] == len(welcome) + len(PONG) + 1


def test_quit_is_counted_as_quit_whatever_reason_it_gives(start_server):
    server, port = start_metered(start_server)
    a, b = server.join(), server.join()
    b.say("/quit slow consumer")
    a.expect(f"*** {b.nick} quit (slow consumer)")
    samples = scrape(port)
    assert disconnects(samples, "quit") == 1
    assert disconnects(samples, "slow consumer") == 0


def test_closed_connection_is_counted(start_server):
    server, port = start_metered(start_server)
    a, b = server.join(), server.join()
    b.close()
    a.expect(f"*** {b.nick} quit (connection closed)")
    assert disconnects(scrape(port), "connection closed") == 1


def test_idle_timeout_is_counted(start_server):
    server, port = start_metered(start_server, "--idle-timeout", "1")
    assert server.connect().read_to_eof().endswith(b"*** disconnected: idle timeout\n")
    assert disconnects(scrape(port), "idle timeout") == 1


def test_slow_consumer_is_counted(start_server):
    server, port = start_metered(start_server, "--max-backlog", "65536")
    a, b = server.join(), server.join()
    stuck = small_window_socket(server.address)  # never reads
    for client in (a, b):
        client.expect("*** guest3 joined #lobby")
    notice = "*** guest3 quit (slow consumer)"
    # The kernel's buffers take about 3 MB (tcp_wmem allows 4 MB) before 64 KiB queue up.
    for _ in range(8000):  # at most 32 MB
        a.say(LINE)
        if b.readline() == notice:
            break
    else:
        raise AssertionError("the reader that never reads was not dropped")
    assert disconnects(scrape(port), "slow consumer") == 1
    stuck.close()


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--max-clients", "1"), "server full"),
        (("--max-per-ip", "1"), "too many from address"),
        (("--connect-burst", "1", "--connect-rate", "0.0001"), "connecting too fast"),
    ],
)
def test_refused_connection_is_counted_by_reason(start_server, flags, reason):
    server, port = start_metered(start_server, *flags)
    a = server.join()
    assert server.connect().read_to_eof().startswith(b"!!! ")
    samples = scrape(port)
    assert disconnects(samples, reason) == 1
    assert samples["gchat_connections_total"] == 2
    assert samples["gchat_connections_open"] == 1
    a.ping()


@pytest.fixture
def locked(start_server, password_file):
    """A metered server with a password: (server, metrics port)."""
    return start_metered(start_server, "--password-file", password_file)


@pytest.fixture
def moderated(start_server, tmp_path):
    """A metered server with an operator, and the operator: (server, metrics port, operator)."""
    path = tmp_path / "opers"
    path.write_text(f"boss:{hash_password(OPER_PASSWORD)}\n")
    server, port = start_metered(start_server, "--oper-file", str(path))
    return server, port, operator(server, "127.0.0.2")


def test_client_at_the_password_prompt_holds_an_open_connection(locked):
    server, port = locked
    knock(server)
    samples = scrape(port)
    assert samples["gchat_connections_open"] == 1
    assert samples["gchat_connections_total"] == 1


def test_third_wrong_password_is_counted(locked):
    server, port = locked
    client = knock(server)
    client.say("/pass one", "/pass two", "/pass three")
    client.read_to_eof()
    samples = scrape(port)
    assert disconnects(samples, "wrong password") == 1
    assert samples["gchat_connections_open"] == 0


def test_kick_is_counted_as_kicked_not_quit(moderated):
    server, port, boss = moderated
    target = server.join()
    boss.say(f"/kick {target.nick} quit")
    target.read_to_eof()
    # The session ends when the kicked client closes (until then it holds its place).
    target.close()
    server.wait_for_log(rf"{target.nick} disconnected \(kicked\)")
    samples = scrape(port)
    assert disconnects(samples, "kicked") == 1
    assert disconnects(samples, "quit") == 0


def test_connection_from_a_banned_address_is_counted_as_refused(moderated):
    server, port, boss = moderated
    target = server.join("127.0.0.3")
    boss.say(f"/ban {target.nick}")
    target.read_to_eof()
    target.close()
    server.wait_for_log(rf"{target.nick} disconnected \(kicked\)")
    assert server.connect(source="127.0.0.3").read_to_eof() == b"!!! you are banned from this server\n"
    samples = scrape(port)
    assert disconnects(samples, "kicked") == 1
    assert disconnects(samples, "banned") == 1


def test_rooms_gauge_follows_rooms_with_members(start_server):
    server, port = start_metered(start_server)
    a, b = server.join(), server.join()
    a.say("/join dev")
    a.expect("*** You are now in #dev (1 user)")
    b.say("/join ops")
    b.read_until("*** You are now in #ops (1 user)")
    assert scrape(port)["gchat_rooms"] == 3
    a.say("/join lobby")
    a.read_until("*** You are now in #lobby (1 user)")
    assert scrape(port)["gchat_rooms"] == 2


def test_queued_bytes_show_the_backlog_of_a_reader_that_never_reads(start_server):
    server, port = start_metered(start_server, "--max-backlog", str(64 * 1024 * 1024))
    a, b = server.join(), server.join()
    stuck = small_window_socket(server.address)  # never reads
    for client in (a, b):
        client.expect("*** guest3 joined #lobby")
    assert scrape(port)["gchat_queued_bytes"] == 0
    # 8 MB: more than the kernel's buffers (tcp_wmem at most 4 MB here) can hold.
    for _ in range(20):
        a.say(*[LINE] * 100)
        b.read_lines(100)
    assert scrape(port)["gchat_queued_bytes"] > 1024 * 1024
    stuck.close()


def test_bus_lag_is_not_exported_without_a_bus(start_server):
    _, port = start_metered(start_server)
    assert not any(name.startswith("gchat_bus_lag") for name in scrape(port))


def test_bus_lag_times_this_nodes_lines_through_redis(cluster):
    node, port = on_free_port(lambda port: cluster.node("--metrics-port", str(port)))
    a, b = cluster.join(node), cluster.join(node)
    for n in range(5):
        a.say(f"line {n}")
        b.expect(f"<{a.nick}> line {n}")
    samples = scrape(port)
    # One line is timed at a time, so at least the first; each came back through Redis.
    assert 1 <= samples["gchat_bus_lag_seconds_count"] <= 5
    assert 0 < samples["gchat_bus_lag_seconds_sum"] < TIMEOUT
    assert samples["gchat_messages_in_total"] == 5


def half_sent_requests(port, count):
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.sendall(HALF_SENT)
        socks.append(sock)
    return socks


def read_to_close(sock):
    """Everything the server sends until it closes (FIN or reset)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_metrics_connections_beyond_the_cap_get_a_503_and_descriptors_stay_bounded(start_server):
    server, port = start_metered(start_server)
    member = server.join()
    baseline = server.open_fds()
    held = half_sent_requests(port, SCRAPERS)
    surplus = half_sent_requests(port, 10)
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(port)
    assert refused.value.code == 503
    for sock in surplus:
        assert read_to_close(sock).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    member.ping()  # the server refuses in one step, so each refusal above is over by now
    assert server.open_fds() <= baseline + SCRAPERS
    for sock in held + surplus:
        sock.close()


def test_half_sent_request_is_closed_at_its_deadline(start_server):
    server, port = start_metered(start_server, "--metrics-timeout", "1")
    (sock,) = half_sent_requests(port, 1)
    started = time.monotonic()
    assert read_to_close(sock) == b""  # no 400 or 500: the client is simply too slow
    assert 0.5 < time.monotonic() - started < TIMEOUT
    sock.close()
    assert scrape(port)["gchat_connections_open"] == 0
    assert not [line for line in server.log if "Traceback" in line]


def readme_reasons():
    """The disconnect reasons the README's metrics table names (each in backquotes)."""
    text = (ROOT / "README.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `gchat_disconnects_total{reason}`")]
    description = row.split(" | ")[2]
    return {word for word in re.findall(r"`([^`]*)`", description) if re.fullmatch(r"[a-z ]+", word)}


def test_every_disconnect_reason_the_readme_names_is_there_at_zero_from_the_start(start_server):
    _, port = start_metered(start_server)
    samples = scrape(port)
    reasons = readme_reasons()
    assert len(reasons) == 13
    assert {reason: disconnects(samples, reason) for reason in reasons} == dict.fromkeys(reasons, 0)


def test_connections_total_is_open_plus_every_disconnect(start_server):
    server, port = start_metered(start_server, "--max-clients", "3", "--idle-timeout", "3")
    a, b, c = server.join(), server.join(), server.join()
    assert_connections_add_up(port, 3, 3)
    assert server.connect().read_to_eof() == SERVER_FULL
    assert_connections_add_up(port, 3, 4)
    b.say("/quit")
    a.expect(f"*** {b.nick} quit (leaving)")
    a.ping()  # activity: a is the one that idles out last
    assert_connections_add_up(port, 2, 4)
    c.reset()
    a.expect(f"*** {c.nick} quit (connection closed)")
    assert_connections_add_up(port, 1, 4)
    assert a.read_to_eof().endswith(b"*** disconnected: idle timeout\n")
    assert_connections_add_up(port, 0, 4)


def test_history_replayed_on_joining_counts_as_one_delivery(start_server):
    server, port = start_metered(start_server, "--history", "20")
    talker = server.join()
    talker.say("one", "two", "three")
    talker.ping()
    before = scrape(port)["gchat_deliveries_total"]
    newcomer = server.connect()
    newcomer.expect(
        "Welcome to the chatroom!",
        "*** You are guest2 in #lobby. Type /help for commands.",
        f"<{talker.nick}> one",
        f"<{talker.nick}> two",
        f"<{talker.nick}> three",
    )
    talker.expect("*** guest2 joined #lobby")
    # Welcome, the arrival (status and history together), the join notice to the talker.
    assert scrape(port)["gchat_deliveries_total"] == before + 3


def test_rooms_gauge_counts_the_rooms_of_other_nodes_users(cluster):
    node, port = on_free_port(lambda port: cluster.node("--metrics-port", str(port)))
    other = cluster.node()
    watcher = cluster.join(node)
    dev, ops = cluster.join(other), cluster.join(other)
    for client, room in ((dev, "#dev"), (ops, "#ops")):
        client.say(f"/join {room}")
        client.read_until(f"*** You are now in {room} (1 user)")
        watcher.expect(f"*** {client.nick} left #lobby")  # node has applied the move
    assert scrape(port)["gchat_rooms"] == 3
