"""PROTOCOL.md "Limits and hostile input", row by row, over real sockets."""

import contextlib
import select
import socket
import struct
import time

from conftest import PONG

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
    a.send(b"\x1b[1;31mred\x1b[0m \x1b]0;pwned\x07title\tTAB\x07\x00\x7f\xc2\x9bC1 \x1b(Bend\x1b[\n")
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
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.send(b"half a li")
    a.close()
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


def _small_receive_buffer_client(server):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(server.address)
    return raw


def test_reader_that_never_reads_is_dropped_while_others_get_everything(server):
    a, b = server.join(), server.join()
    stuck = _small_receive_buffer_client(server)
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
    for client in crowd:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    talker = server.join()
    for index, client in enumerate(crowd):
        client.close()
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
