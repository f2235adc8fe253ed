"""PROTOCOL.md "Limits and hostile input", row by row, over real sockets."""

import contextlib
import itertools
import json
import os
import resource
import select
import socket
import time

import pytest
from conftest import PONG, small_window_socket
from test_metrics import scrape, start_metered

IDLE_NOTICE = "*** disconnected: idle timeout"
# With --idle-timeout 1: late enough for a loaded machine, too early for a server that
# ignored the flag or reset its timer on every byte.
IDLE_BOUND = 4.0


def test_line_over_max_line_gets_error_and_is_not_delivered(start_server):
    server = start_server("--rate", "0", "--max-line", "100")
    a, b = server.join(), server.join()
    a.say("x" * 101, "after")
    a.expect("!!! line too long (max 100 bytes)")
    b.expect(f"<{a.nick}> after")


def test_line_of_exactly_max_line_bytes_is_delivered(start_server):
    server = start_server("--rate", "0", "--max-line", "100")
    a, b = server.join(), server.join()
    text = "y" * (100 - len(""))
    a.send(text.encode() + b"\r\n")
    b.expect(f"<{a.nick}> {text}")


def test_max_line_counts_raw_bytes_before_sanitizing(start_server):
    server = start_server("--rate", "0", "--max-line", "10")
    a, b = server.join(), server.join()
    a.send(b"\x1b[31mred\x1b[0m\n")  # 12 raw bytes, 3 after sanitizing
    a.expect("!!! line too long (max 10 bytes)")
    a.ping()
    b.ping()


def test_ten_megabyte_line_without_lf_keeps_memory_bounded_and_connection_usable(server):
    a, b = server.join(), server.join()
    before = server.rss_kb()
    server.reset_peak()
    chunk = b"z" * 65536
    for _ in range(160):
        a.send(chunk)
    a.expect("!!! line too long (max 4096 bytes)")
    a.send(b"\n")  # ends the long line; the ping below proves all 10 MB were read
    a.ping()
    grown_kb = server.peak_kb() - before  # the peak: a line held whole and then freed shows
    assert grown_kb < 8 * 1024, f"server grew by {grown_kb} KiB reading one 10 MB line"
    a.say("still here")
    b.expect(f"<{a.nick}> still here")


def test_invalid_utf8_is_replaced_and_delivered(server):
    a, b = server.join(), server.join()
    a.send(b"caf\xe9 \xc3( \xed\xa0\x80 ok\n")
    b.expect(f"<{a.nick}> caf\ufffd \ufffd( \ufffd\ufffd\ufffd ok")


def test_control_characters_and_escape_sequences_are_removed(server):
    a, b = server.join(), server.join()
    a.send(b"\x1b[1;31mred\x1b[0m \x1b]0;pwned\x07title\tTAB\x07\x00\xc2\x9bC1 \x1b(Bend\x1b[\n")
    b.expect(f"<{a.nick}> red title\tTABC1 Bend")  # ESC ( is a pair: the B stays


def test_osc_ended_by_string_terminator_is_removed(server):
    a, b = server.join(), server.join()
    a.send(b"a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b\n")
    b.expect(f"<{a.nick}> alinkb")


def test_line_of_only_control_characters_is_ignored(server):
    a, b = server.join(), server.join()
    a.send(b"\x1b[2J\x07\x00\n")
    a.ping()
    b.ping()


def test_escape_before_a_command_still_runs_the_command(server):
    a, b = server.join(), server.join()
    a.send(b"\x1b[0m/quit\n")
    a.expect("*** Bye!")
    b.expect(f"*** {a.nick} quit (leaving)")


def test_telnet_negotiation_is_removed_and_never_answered(server):
    a, b = server.join(), server.join()
    a.send(b"\xff\xfd\x18\xff\xfb\x01\xff\xfa\x18\x00xterm\xff\xf0hel\xff\xf1lo\r\n")
    b.expect(f"<{a.nick}> hello")
    a.ping()  # no negotiation reply came before the pong


def test_telnet_in_character_mode_enter_ends_lines_and_backspace_erases(server):
    a, b = server.join(), server.join()
    # One key at a time, as telnet sends them after "mode character": Enter is CR NUL,
    # backspace is DEL (or BS), and "ï" is two bytes taken back by one key.
    for key in [
        b"h",
        b"i",
        b"\r\x00",
        b"n",
        b"a",
        "ï".encode(),
        b"\x7f",
        b"i",
        b"x",
        b"\x08",
        b"ve",
        b"\r",
        b"\x00",
    ]:
        a.send(key)
    b.expect(f"<{a.nick}> hi", f"<{a.nick}> naive")
    a.ping()


def test_last_line_without_lf_is_delivered_on_half_close(server):
    a, b = server.join(), server.join()
    a.send(b"parting words")
    a.sock.shutdown(socket.SHUT_WR)
    b.expect(f"<{a.nick}> parting words", f"*** {a.nick} quit (connection closed)")
    assert a.read_to_eof() == b""


def test_last_line_without_lf_is_delivered_on_close(server):
    a, b = server.join(), server.join()
    a.send(b"last")
    a.close()
    b.expect(f"<{a.nick}> last", f"*** {a.nick} quit (connection closed)")


def test_client_reset_mid_line_is_a_quit_and_others_carry_on(server):
    a, b = server.join(), server.join()
    a.send(b"half a li")
    a.reset()
    b.expect(f"*** {a.nick} quit (connection closed)")
    c = server.join()
    c.say("carry on")
    b.expect(f"<{c.nick}> carry on")


def test_fast_sender_is_slowed_down_and_loses_nothing(start_server):
    server = start_server("--rate", "50", "--burst", "5")
    a, b = server.join(), server.join()
    lines = [f"line {i}" for i in range(60)]
    started = time.monotonic()
    a.say(*lines)
    assert b.read_lines(60) == [f"<{a.nick}> {line}" for line in lines]
    # 5 lines of burst, then 55 at 50/s: at least 1.1 s however fast the machine.
    assert time.monotonic() - started >= 1.0


def _flood(client, line, size):
    """Send up to ``size`` bytes of ``line`` repeated, as much as the kernels take without blocking.

    What the server does not read stays in the kernels' buffers; a client
    pasting far more than its rate allows is left exactly there.
    """
    data = (line * (size // len(line) + 1))[:size]
    client.sock.setblocking(False)
    try:
        while data:
            data = data[client.sock.send(data) :]
    except BlockingIOError:
        pass
    client.sock.settimeout(client.timeout)


def _lines_before(client, line, at_most):
    """Read up to ``line``, failing as soon as more than ``at_most`` other lines come first."""
    count = 0
    while client.readline() != line:
        count += 1
        assert count <= at_most, f"more than {at_most} lines came before {line!r}"


def test_rate_limited_sender_has_only_about_one_max_line_read_ahead(start_server):
    server, port = start_metered(start_server, "--rate", "5", "--burst", "5", "--max-line", "100")
    a, b = server.join(), server.join()
    _flood(a, b"hi\n", 1 << 20)
    assert b.read_lines(7) == [f"<{a.nick}> hi"] * 7  # the burst, then the rate
    samples = scrape(port)
    handled = samples["gchat_messages_in_total"] * len(b"hi\n")
    # Read so far: what was handled, and at most one --max-line line (CR LF included) ahead.
    assert samples["gchat_received_bytes_total"] - handled <= 100 + 2


def test_reset_while_rate_limited_frees_the_place_at_once_and_delivers_nothing_more(start_server):
    server = start_server("--rate", "5", "--burst", "5", "--max-per-ip", "1")
    victim = server.join(source="127.0.0.2")
    sender = server.join()
    _flood(sender, f"/msg {victim.nick} x\n".encode(), 1 << 16)
    assert victim.read_lines(6) == [f"*{sender.nick}* x"] * 6  # it is being rate-limited
    sender.reset()
    # Noticed at once: the lines it had queued would have come at 5 a second for minutes.
    _lines_before(victim, f"*** {sender.nick} quit (connection closed)", at_most=5)
    victim.ping()  # and not one more private line came after the quit
    server.join().ping()  # its place under --max-per-ip is free


def test_close_while_rate_limited_ends_the_session_and_drops_the_unread_lines(start_server):
    server = start_server("--rate", "5", "--burst", "5")
    a, b = server.join(), server.join()
    _flood(a, b"hi\n", 1 << 16)
    assert b.read_lines(6) == [f"<{a.nick}> hi"] * 6
    a.sock.shutdown(socket.SHUT_WR)
    _lines_before(b, f"*** {a.nick} quit (connection closed)", at_most=5)
    b.ping()  # nothing more from a
    assert a.read_to_eof() == b""  # and a, still reading, was closed gracefully


def test_last_lines_within_the_burst_then_half_close_are_all_delivered(start_server):
    server = start_server("--rate", "5", "--burst", "5")
    a, b = server.join(), server.join()
    a.send(b"one\ntwo\r\nthree\nfour\nlast")
    a.sock.shutdown(socket.SHUT_WR)
    b.expect(*(f"<{a.nick}> {text}" for text in ("one", "two", "three", "four", "last")))
    b.expect(f"*** {a.nick} quit (connection closed)")


def test_idle_timeout_still_drops_a_client_that_stopped_after_being_rate_limited(start_server):
    server = start_server("--rate", "5", "--burst", "2", "--idle-timeout", "1")
    a = server.connect()
    a.read_lines(2)
    a.say(*["/ping"] * 4)
    assert a.read_lines(4) == [PONG] * 4  # the last two waited for the rate limit
    a.send(b"no newline")  # an unfinished line is no activity
    assert a.read_to_eof() == b"*** disconnected: idle timeout\n"


# More than any socket buffers hold (Linux's autotuned ones reach a few MB each way).
FLOOD_BYTES = 64 * 1024 * 1024


def test_rate_limit_leaves_a_flood_in_tcp_not_in_server_memory(start_server):
    server = start_server("--rate", "5", "--burst", "5")
    flooder = server.join()
    before = server.rss_kb()
    server.reset_peak()
    chunk = memoryview((b"flood " + b"f" * 93 + b"\n") * 10000)  # 10,000 lines, 1 MB
    flooder.sock.setblocking(False)
    sent = 0
    # Push until the kernel takes no more for a second: the server has stopped reading.
    while sent < FLOOD_BYTES and select.select([], [flooder.sock], [], 1.0)[1]:
        with contextlib.suppress(BlockingIOError):
            sent += flooder.sock.send(chunk[sent % len(chunk) :])
    assert sent < FLOOD_BYTES, "the server read a 64 MB flood at --rate 5: no back-pressure"
    grown_kb = server.peak_kb() - before
    assert grown_kb < 8 * 1024, f"server grew by {grown_kb} KiB while {sent >> 20} MB were pushed at it"


def test_reader_that_never_reads_is_dropped_while_others_get_everything(server):
    a, b = server.join(), server.join()
    stuck = small_window_socket(server.address)
    b.read_until("*** guest3 joined #lobby")
    a.expect("*** guest3 joined #lobby")
    baseline_kb = peak_kb = server.rss_kb()
    payload = "p" * 4000
    batch = 100
    quit_notice = "*** guest3 quit (slow consumer)"
    notices = []
    # 32 MB through the server, paced by b so that only the stuck client lags.
    for start in range(0, 8000, batch):
        a.say(*(f"{n} {payload}" for n in range(start, start + batch)))
        expected = [f"<{a.nick}> {n} {payload}" for n in range(start, start + batch)]
        received = [line for line in b.read_lines(batch) if line != quit_notice or notices.append(line)]
        while len(received) < batch:
            received.append(b.readline())
        assert received == expected
        peak_kb = max(peak_kb, server.rss_kb())
    assert notices == [quit_notice]
    assert peak_kb - baseline_kb < 16 * 1024, "server memory grew with the stuck reader's backlog"
    a.expect(quit_notice)
    stuck.close()


def test_server_full_refuses_newcomer_with_one_line(start_server):
    server = start_server("--rate", "0", "--max-clients", "2")
    a, b = server.join(), server.join()
    refused = server.connect()
    assert refused.read_to_eof() == b"!!! server full, try again later\n"
    a.ping()
    b.ping()


def test_a_place_freed_by_a_leaver_is_offered_again(start_server):
    server = start_server("--rate", "0", "--max-clients", "1")
    a = server.join()
    a.say("/quit")
    a.read_to_eof()
    server.clients.remove(a)
    server.join().ping()


def test_too_many_connections_from_one_address(start_server):
    server = start_server("--rate", "0", "--max-per-ip", "1")
    a = server.join()
    refused = server.connect()
    assert refused.read_to_eof() == b"!!! too many connections from your address\n"
    other = socket.create_connection(server.address, timeout=15, source_address=("127.0.0.2", 0))
    assert other.recv(25) == b"Welcome to the chatroom!\n"
    a.expect("*** guest2 joined #lobby")
    other.close()


def test_max_per_ip_counts_the_addresses_of_one_network_together(start_server):
    """--ipv4-prefix 24 here stands for IPv6's default /64 (this machine has one IPv6 address)."""
    server = start_server("--rate", "0", "--max-per-ip", "1", "--ipv4-prefix", "24")
    a = server.join(source="127.0.0.2")
    refused = server.connect(source="127.0.0.3")
    assert refused.read_to_eof() == b"!!! too many connections from your address\n"
    server.clients.remove(refused)
    server.join(source="127.0.1.2").ping()
    a.ping()


def test_connections_beyond_the_connect_budget_get_one_line_and_a_close(start_server):
    """--connect-rate bounds what connecting and closing in a loop costs: a refusal, not a session."""
    server = start_server("--rate", "0", "--connect-burst", "2", "--connect-rate", "0.0001")
    for _ in range(2):
        client = server.join(source="127.0.0.4")
        client.close()
        server.clients.remove(client)
    refused = server.connect(source="127.0.0.4")
    assert refused.read_to_eof() == b"!!! connecting too fast from your address, try again later\n"
    server.clients.remove(refused)
    server.join(source="127.0.0.5").ping()  # another address is not held back


def test_a_per_address_place_is_free_as_soon_as_its_client_left_the_chat(start_server):
    server = start_server("--rate", "0", "--max-per-ip", "1")
    leaver = server.join()
    observer = server.join(source="127.0.0.2")
    leaver.say("/quit")
    leaver.expect("*** Bye!")  # and its socket stays open: the place must not wait for it
    observer.expect(f"*** {leaver.nick} quit (leaving)")
    server.clients.remove(leaver)  # it reads no more join notices
    newcomer = server.join()  # from the leaver's address
    newcomer.ping()
    leaver.close()


def test_server_full_is_checked_before_per_address_limit(start_server):
    server = start_server("--rate", "0", "--max-clients", "1", "--max-per-ip", "1")
    server.join()
    assert server.connect().read_to_eof() == b"!!! server full, try again later\n"


def test_idle_client_is_told_and_disconnected_within_the_idle_timeout(start_server):
    server = start_server("--rate", "0", "--idle-timeout", "1")
    a = server.connect()
    a.read_lines(2)  # welcome and status
    started = time.monotonic()
    assert a.read_to_eof() == (IDLE_NOTICE + "\n").encode()
    waited = time.monotonic() - started
    assert waited < IDLE_BOUND, f"dropped {waited:.1f} s after the last line with --idle-timeout 1"


def test_an_unfinished_line_does_not_count_as_activity(start_server):
    server = start_server("--rate", "0", "--idle-timeout", "1")
    a = server.connect()
    a.read_lines(2)  # welcome and status
    started = time.monotonic()
    # One byte of a line that never ends every 0.1 s, on past the idle timeout, until
    # the server speaks: the notice, however long the client keeps trickling.
    while not select.select([a.sock], [], [], 0.1)[0]:
        assert time.monotonic() - started < IDLE_BOUND, "an unfinished line kept the client active"
        a.send(b"x")
    # A byte sent as the server closed may come back as a reset: read the line, not to EOF.
    assert a.readline() == IDLE_NOTICE


def test_room_is_told_when_a_member_idles_out_while_active_members_stay(start_server):
    server = start_server("--rate", "0", "--idle-timeout", "1")
    a, b = server.join(), server.join()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        b.say("/ping")  # every line b sends keeps b active
        line = b.readline()
        if line == f"*** {a.nick} quit (idle timeout)":
            break
        assert line == PONG
        time.sleep(0.05)
    else:
        raise AssertionError("no idle-timeout quit notice")
    assert a.read_to_eof() == (IDLE_NOTICE + "\n").encode()


def test_five_hundred_clients_each_receive_one_broadcast(server):
    clients = [server.connect() for _ in range(500)]
    for client in clients:
        client.readline()
        client.readline()
    sender = clients[-1]
    sender.say("hello all")
    for client in clients[:-1]:
        client.read_until("<guest500> hello all")
        client.ping()  # and nothing after it: no second copy
    sender.ping()


def test_mass_reset_while_the_room_talks_leaves_no_ghosts(server):
    """Resets racing a fan-out: every session must still leave the hub and close."""
    watcher = server.join()
    crowd = [server.connect() for _ in range(300)]
    for client in crowd:
        client.read_lines(2)  # welcome and status
    watcher.read_lines(300)  # their join notices
    talker = server.join()
    for index, client in enumerate(crowd):
        client.reset()
        if index % 10 == 0:
            talker.say(f"line {index} " + "x" * 1000)
    server.clients = [watcher, talker]
    lines = watcher.read_until(f"<{talker.nick}> line 290 " + "x" * 1000)
    quits = {line for line in lines if line.endswith(" quit (connection closed)")}
    while len(quits) < 300:
        line = watcher.readline()
        if line.endswith(" quit (connection closed)"):
            quits.add(line)
    watcher.say("/who")
    assert watcher.readline() == f"*** users in #lobby (2): {watcher.nick}, {talker.nick}"
    assert not [line for line in server.log if "failed with" in line or "Traceback" in line]


def test_refusal_keeps_no_descriptor_while_the_refused_client_stays(start_server):
    server = start_server("--rate", "0", "--max-clients", "1")
    member = server.join()
    baseline = server.open_fds()
    refused = [server.connect() for _ in range(20)]  # they read their line, and never close
    for client in refused:
        assert client.read_to_eof() == b"!!! server full, try again later\n"
    member.ping()  # each refusal is one step of the server's: all of them are done by now
    assert server.open_fds() == baseline


def _lowest_free_fd(pid):
    """The descriptor number process ``pid`` would get for its next open file."""
    taken = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(number for number in itertools.count() if number not in taken)


def _messages(log, log_format):
    """The server's log records as their message text, asserting each is one well-formed line."""
    if log_format == "json":
        return [json.loads(line)["msg"] for line in log]
    return [line.removeprefix("gchat: warning: ") for line in log]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_accept_out_of_descriptors_is_a_log_record_and_the_server_carries_on(start_server, log_format):
    server = start_server("--rate", "0", "--log-format", log_format)
    member = server.join()
    limits = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
    started = time.monotonic()
    full = _lowest_free_fd(server.pid)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (full, limits[1]))
    waiting = server.connect()  # stays in the listen backlog: accept fails with EMFILE
    where = f"{server.host}:{server.port}"
    server.wait_for_log(rf"accept on {where} failed: Too many open files; pausing accepts for 0\.1 s")
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, limits)
    assert waiting.readline() == "Welcome to the chatroom!"
    waiting.readline()  # its status line
    waiting.nick = "guest2"
    member.expect("*** guest2 joined #lobby")
    waiting.say("made it")
    member.expect("<guest2> made it")
    server.wait_for_log(rf"accepting on {where} again after \d+ failed accepts")
    elapsed = time.monotonic() - started
    messages = _messages(server.log, log_format)
    failures = [m for m in messages if m.startswith(f"accept on {where} failed")]
    assert 1 <= len(failures) <= 1 + elapsed  # at most one a second, however often accept failed
    assert len([m for m in messages if m.startswith(f"accepting on {where} again")]) <= len(failures)
    assert not [line for line in server.log if "Traceback" in line]
