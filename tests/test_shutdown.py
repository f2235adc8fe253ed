"""PROTOCOL.md "Shutdown": SIGINT/SIGTERM drain what is queued, then say goodbye."""

import signal
import socket
import time

import pytest
from conftest import PONG, say_megabytes, small_window_socket

NOTICE = b"*** server shutting down\n"
# An upper bound on a 1 s --shutdown-timeout that a loaded machine still meets, and
# that a server which ignored the flag (and waited the default 5 s) does not.
SHUTDOWN_TIMEOUT = 1
SHUTDOWN_BOUND = 4.0


def _read_all(sock):
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(data)
        data += chunk


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_delivers_every_queued_line_then_the_notice_and_exits_zero(start_server, signum):
    server = start_server("--rate", "0", "--max-backlog", "100000000")
    readers = [small_window_socket(server.address) for _ in range(3)]
    sender = server.connect()
    lines = say_megabytes(sender)  # queued for every reader
    server.signal(signum)
    for sock in readers:
        stream = _read_all(sock).decode()
        chat = [line.split("> ", 1)[1] for line in stream.splitlines() if line.startswith("<")]
        assert chat == lines
        assert stream.endswith("\n" + NOTICE.decode())
        sock.close()
    sender.close()
    assert server.wait() == 0


def test_nothing_is_relayed_or_announced_once_shutdown_began(server):
    a, b = server.join(), server.join()
    server.signal(signal.SIGTERM)
    a.expect(NOTICE.decode().rstrip("\n"))
    a.say("too late", "/who")
    assert b.read_to_eof() == NOTICE  # no chat, no quit notice for a
    assert a.read_to_eof() == b""  # no reply to /who
    a.close()
    b.close()
    assert server.wait() == 0


def _backlogged_reader(server):
    """A client that never reads, with megabytes queued for it: it keeps a shutdown waiting."""
    stuck = small_window_socket(server.address)
    say_megabytes(server.join())
    return stuck


def test_shutdown_waits_no_longer_than_shutdown_timeout_for_a_client_that_never_reads(start_server):
    server = start_server(
        "--rate", "0", "--max-backlog", "100000000", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT)
    )
    stuck = _backlogged_reader(server)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    waited = time.monotonic() - started
    assert waited < SHUTDOWN_BOUND, f"exited {waited:.1f} s after SIGTERM with --shutdown-timeout 1"
    stuck.close()


def test_shutdown_waits_no_longer_than_shutdown_timeout_for_a_client_that_never_closes(start_server):
    server = start_server("--shutdown-timeout", str(SHUTDOWN_TIMEOUT))
    stays_open = server.connect()
    stays_open.read_until("*** You are guest1 in #lobby. Type /help for commands.")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert stays_open.read_to_eof() == NOTICE
    assert server.wait() == 0  # though the client never closed its end
    waited = time.monotonic() - started
    assert waited < SHUTDOWN_BOUND, f"exited {waited:.1f} s after SIGTERM with --shutdown-timeout 1"


def test_nobody_connects_once_shutdown_began(start_server):
    server = start_server("--rate", "0", "--max-backlog", "100000000", "--shutdown-timeout", "60")
    stuck = _backlogged_reader(server)  # keeps the server shutting down for up to 60 s
    watcher = server.join()
    server.signal(signal.SIGTERM)
    watcher.read_until(NOTICE.decode().rstrip("\n"))  # sent after the listener was closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=15).close()
    assert server.proc.poll() is None, "the server exited: this test must check a shutdown in progress"
    stuck.close()


def _terminate_and_time(server, clients, within, what):
    """SIGTERM; each client reads the notice to EOF (keeping its socket open); exit 0 ``within`` s."""
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    for client in clients:
        assert client.read_to_eof() == NOTICE
    assert server.wait() == 0
    assert time.monotonic() - started < within, what


def test_shutdown_ends_once_clients_have_everything_though_they_never_close(start_server):
    server = start_server("--shutdown-timeout", "30")
    clients = [server.join() for _ in range(5)]
    for client in clients:
        client.ping()
    _terminate_and_time(server, clients, 10, "the server waited for clients that had everything")


def test_a_client_yet_to_give_the_password_is_told_and_does_not_delay_the_exit(start_server, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("secret\n")
    server = start_server("--shutdown-timeout", "30", "--password-file", str(password_file))
    waiting = server.connect()
    waiting.read_lines(2)  # welcome, and the server wants a password
    _terminate_and_time(server, [waiting], 10, "the server waited for a client that had everything")


def test_shutdown_does_not_wait_for_the_rate_limit_of_a_flooding_client(start_server):
    server = start_server("--rate", "0.1", "--burst", "1", "--shutdown-timeout", "30")
    flooder = server.connect()
    flooder.read_lines(2)
    flooder.say(*["/ping"] * 50)
    assert flooder.readline() == PONG  # the next one waits 10 s for its token
    _terminate_and_time(server, [flooder], 8, "the shutdown waited for the rate limit")


def test_quit_closes_the_connection_once_the_client_has_everything_though_it_never_closes(start_server):
    server = start_server("--shutdown-timeout", "30")
    baseline = server.open_fds()
    clients = [server.connect() for _ in range(5)]
    for client in clients:
        client.read_lines(2)
        client.say("/quit")
        assert client.read_to_eof().endswith(b"*** Bye!\n")  # and the socket stays open
    deadline = time.monotonic() + 10
    while server.open_fds() > baseline:
        # Polling /proc: nothing the server sends tells when it has closed a descriptor.
        assert time.monotonic() < deadline, "descriptors held for clients that had everything"
        time.sleep(0.05)


def test_second_signal_exits_at_once_with_nonzero_status(start_server):
    server = start_server("--shutdown-timeout", "60")
    stays_open = server.connect()
    stays_open.read_until("*** You are guest1 in #lobby. Type /help for commands.")
    server.signal(signal.SIGTERM)
    server.wait_for_log("gchat shutting down")
    assert stays_open.read_to_eof() == NOTICE
    server.signal(signal.SIGTERM)
    assert server.wait() != 0


def test_shutdown_logs_no_traceback(server):
    client = server.join()
    server.signal(signal.SIGINT)
    assert client.read_to_eof() == NOTICE
    client.close()  # the server need not wait out --shutdown-timeout
    assert server.wait() == 0
    server.wait_for_log("gchat stopped")
    assert not any("Traceback" in line for line in server.log)
