"""TLS on the listening port (--certfile, --keyfile, --handshake-timeout), over real sockets.

The certificate is made at test time by the openssl command; clients verify
the server against it, so every TLS client here really checks the chain.
"""

import contextlib
import selectors
import signal
import socket
import ssl
import subprocess
import time
from types import SimpleNamespace

import gevent
import gevent.socket
import gevent.ssl
import pytest
from conftest import (
    TIMEOUT,
    LineClient,
    assert_connections_add_up,
    disconnects,
    on_free_port,
    require,
    run_gchat,
    say_megabytes,
    scrape,
    small_window_socket,
)

from gchat.tls import server_context


def _openssl(*args):
    subprocess.run([require("openssl", "openssl"), *args], check=True, capture_output=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, its key, another key, and the key encrypted."""
    directory = tmp_path_factory.mktemp("tls")
    files = SimpleNamespace(
        cert=str(directory / "cert.pem"),
        key=str(directory / "key.pem"),
        other_key=str(directory / "other.pem"),
        encrypted_key=str(directory / "encrypted.pem"),
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    name = ("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _openssl("req", "-x509", *ec, "-nodes", "-days", "2", *name, "-keyout", files.key, "-out", files.cert)
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", files.other_key
    )
    _openssl("pkey", "-in", files.key, "-aes256", "-passout", "pass:secret", "-out", files.encrypted_key)
    return files


@pytest.fixture
def start_tls_server(start_server, pki):
    """Start a TLS server with extra flags; its clients trust its certificate."""
    client = ssl.create_default_context(cafile=pki.cert)

    def start(*flags):
        return start_server("--rate", "0", "--certfile", pki.cert, "--keyfile", pki.key, *flags, tls=client)

    return start


@pytest.fixture
def tls_server(start_tls_server):
    return start_tls_server()


def _wait_closed(sock, timeout=TIMEOUT):
    """Read and drop until the server closes (FIN or reset); fail after ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("the server did not close the connection") from None


def _count_closed(socks, want, timeout=TIMEOUT):
    """How many of ``socks`` the server closed (FIN or reset), waiting until ``want`` are or ``timeout``."""
    deadline = time.monotonic() + timeout
    closed = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while closed < want and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    closed += 1
    return closed


def test_start_up_line_is_unchanged_and_tls_is_logged(tls_server, pki):
    assert f"gchat listening on 127.0.0.1:{tls_server.port}" in tls_server.log
    tls_server.wait_for_log(rf"^TLS on, certificate {pki.cert}$")


def test_tls_client_gets_the_welcome_and_status_line(tls_server):
    client = tls_server.connect()
    client.expect("Welcome to the chatroom!", "*** You are guest1 in #lobby. Type /help for commands.")
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_1_2_client_is_served(tls_server, pki):
    context = ssl.create_default_context(cafile=pki.cert)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = LineClient(tls_server.address, tls=context)
    tls_server.clients.append(client)  # closed with the server
    client.expect("Welcome to the chatroom!", "*** You are guest1 in #lobby. Type /help for commands.")
    assert client.sock.version() == "TLSv1.2"


def test_tls_clients_chat_with_each_other(tls_server):
    a, b = tls_server.join(), tls_server.join()
    a.say("hello over TLS")
    b.expect(f"<{a.nick}> hello over TLS")
    b.say(f"/msg {a.nick} and back")
    a.expect(f"*{b.nick}* and back")


def test_lines_in_one_tls_record_longer_than_one_read_all_arrive(start_tls_server):
    """Under a rate limit the reader reads about one line's room at a time; the rest of the record waits
    inside OpenSSL, where no watcher sees it: the reader must take it before parking (9dc232a delivered
    only the first line, and the others when the client next sent something)."""
    server = start_tls_server("--rate", "1000")
    a, b = server.join(), server.join()
    lines = [f"{n} " + "x" * 3000 for n in range(3)]
    a.sock.sendall("".join(line + "\n" for line in lines).encode())  # one TLS record: 9 KB
    for line in lines:
        b.expect(f"<{a.nick}> {line}")


def test_plain_tcp_client_on_the_tls_port_is_dropped_and_tls_clients_still_work(tls_server):
    with socket.create_connection(tls_server.address, timeout=TIMEOUT) as plain:
        port = plain.getsockname()[1]
        plain.sendall(b"hello\n")
        _wait_closed(plain)
    client = tls_server.join()
    client.ping()
    tls_server.wait_for_log(rf"^127\.0\.0\.1:{port} TLS handshake failed \(.+\)$")
    assert len([line for line in tls_server.log if f":{port} " in line]) == 1
    assert not any("Traceback" in line for line in tls_server.log)


def test_client_that_never_handshakes_is_dropped_after_handshake_timeout(start_tls_server):
    server = start_tls_server("--handshake-timeout", "1")
    start = time.monotonic()
    with socket.create_connection(server.address, timeout=TIMEOUT) as stalled:
        _wait_closed(stalled)
    waited = time.monotonic() - start
    # Late enough for a loaded machine, too early for a server that kept the 10 s default.
    assert 0.9 <= waited < 5, f"dropped after {waited:.1f} s with --handshake-timeout 1"
    server.wait_for_log(r"TLS handshake failed \(not done within 1 s\)$")


def test_stalled_handshake_holds_a_place_under_max_clients(start_tls_server):
    server = start_tls_server("--max-clients", "1", "--handshake-timeout", "60")
    with socket.create_connection(server.address, timeout=TIMEOUT):
        newcomer = server.connect()  # accepted after the stalled one, which has the only place
        newcomer.expect("!!! server full, try again later")


def test_place_of_a_stalled_handshake_is_free_again_after_handshake_timeout(start_tls_server):
    server = start_tls_server("--max-clients", "1", "--handshake-timeout", "1")
    with socket.create_connection(server.address, timeout=TIMEOUT) as stalled:
        _wait_closed(stalled)
        server.join().ping()


def test_stalled_handshakes_from_one_address_take_only_its_share(start_tls_server):
    server = start_tls_server("--max-per-ip", "3", "--handshake-timeout", "60")
    baseline = server.open_fds()
    stalled = [socket.create_connection(server.address, timeout=TIMEOUT) for _ in range(50)]
    try:
        other = server.join(source="127.0.0.2")  # accepted after all 50: it got in despite them
        other.ping()
        # 3 places, and 1 handshake that is only there to deliver the refusal line (2 s at most):
        # the other 46 are closed at once, long before their 60 s to handshake.
        assert _count_closed(stalled, want=46) >= 46
        assert server.open_fds() <= baseline + 3 + 1 + 1  # ... + other's connection
    finally:
        for sock in stalled:
            sock.close()


def test_full_tls_server_refuses_a_newcomer_over_tls(start_tls_server):
    server = start_tls_server("--max-clients", "1")
    server.join()
    newcomer = server.connect()
    newcomer.expect("!!! server full, try again later")
    assert newcomer.read_to_eof() == b""


def test_quit_over_tls_ends_with_close_notify(tls_server):
    client = tls_server.join()
    client.say("/quit")
    client.expect("*** Bye!")
    assert client.read_to_eof() == b""  # without close_notify this raises SSLEOFError


def test_a_read_waiting_on_a_tls_socket_still_decrypts_after_its_shutdown(pki):
    """A quitting client's linger reads while its last lines go out, and they end with the shutdown.

    gevent's SSLSocket dropped its OpenSSL object at shutdown, so the waiting read
    raised ValueError when the client's next bytes came: a traceback, and no linger.
    In process, over a socket pair: the two steps in exactly that order.
    """
    ours, theirs = gevent.socket.socketpair()
    server = server_context(pki.cert, pki.key).wrap_socket(
        ours, server_side=True, do_handshake_on_connect=False
    )
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.cert)
    client = context.wrap_socket(theirs, server_hostname="127.0.0.1", do_handshake_on_connect=False)
    handshakes = [gevent.spawn(server.do_handshake), gevent.spawn(client.do_handshake)]
    gevent.joinall(handshakes, timeout=TIMEOUT, raise_error=True)
    reading = gevent.spawn(server.recv, 100)
    gevent.sleep(0)  # the read runs until it waits for input
    server.shutdown(socket.SHUT_WR)
    client.sendall(b"after the FIN")
    assert reading.get(timeout=TIMEOUT) == b"after the FIN"
    assert client.recv(100) == b""  # the close_notify went before the FIN
    server.close()
    client.close()


def test_a_quit_whose_last_lines_wait_for_the_client_ends_cleanly_over_tls(tls_server, pki):
    """Its last lines, Bye included, then close_notify; the server lingers meanwhile, logging no traceback."""
    context = ssl.create_default_context(cafile=pki.cert)
    quitter = context.wrap_socket(small_window_socket(tls_server.address), server_hostname="127.0.0.1")
    greeting = b""
    while b"Type /help" not in greeting:
        greeting += quitter.recv(65536)
    nick = greeting.split(b"You are ")[1].split()[0].decode()
    sender = tls_server.join()
    sender.say(*[f"{n} " + "w" * 1000 for n in range(8)])  # more than the quitter's window holds
    sender.ping()
    quitter.sendall(b"/quit\n")
    sender.expect(f"*** {nick} quit (leaving)")  # the server lingers now, its last bytes unread
    text = b""
    with contextlib.suppress(ssl.SSLError, OSError):
        while data := quitter.recv(65536):
            text += data
    assert text.endswith(b"*** Bye!\n")
    quitter.close()
    tls_server.signal(signal.SIGTERM)
    assert tls_server.wait() == 0
    tls_server.stop()  # its log read to the end
    assert not any("Traceback" in line for line in tls_server.log)


def test_shutdown_reaches_tls_clients(tls_server):
    client = tls_server.join()
    tls_server.signal(signal.SIGTERM)
    client.expect("*** server shutting down")
    assert client.read_to_eof() == b""
    client.close()  # the server need not wait out --shutdown-timeout
    assert tls_server.wait() == 0


def _finish_handshake_and_read(sock, tls, incoming, outgoing):
    """Complete a memory-BIO handshake over ``sock``, then what the server says before closing."""
    text = b""
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if not data:
                    return text
                incoming.write(data)
        sock.sendall(outgoing.read())  # the client's Finished: the server's handshake ends now
        while b"\n" not in text:
            data = sock.recv(65536)
            if not data:
                return text
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError):
                text += tls.read(65536)
    except (ssl.SSLError, OSError):
        pass  # closed or reset: whatever came before it is the answer
    return text


def test_a_handshake_finished_after_sigterm_admits_nobody_and_counts_as_server_shutdown(
    start_tls_server, pki
):
    server, metrics = on_free_port(
        lambda port: start_tls_server(
            "--metrics-port", str(port), "--max-backlog", "100000000", "--shutdown-timeout", "60"
        )
    )
    context = ssl.create_default_context(cafile=pki.cert)
    stuck = context.wrap_socket(small_window_socket(server.address), server_hostname="127.0.0.1")
    sender = server.connect()
    say_megabytes(sender)  # queued for stuck, which never reads: a long shutdown
    # The handshake by hand over memory buffers, so that it stops exactly in the middle.
    late = socket.create_connection(server.address, timeout=TIMEOUT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    handshake = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        handshake.do_handshake()
    late.sendall(outgoing.read())  # the ClientHello
    incoming.write(late.recv(65536))  # the server's answer: it is mid-handshake, waiting for us
    server.signal(signal.SIGTERM)
    sender.read_until("*** server shutting down")
    assert sender.read_to_eof() == b""
    before = scrape(metrics)
    assert b"Welcome" not in _finish_handshake_and_read(late, handshake, incoming, outgoing)
    after = scrape(metrics)
    assert disconnects(after, "server shutdown") == disconnects(before, "server shutdown") + 1
    late.close()
    stuck.close()


def test_large_history_arrives_complete_over_tls(start_tls_server):
    server = start_tls_server("--history", "1000", "--max-backlog", "16777216")
    a = server.join()
    lines = [f"{i:04d} " + "h" * 4000 for i in range(1000)]
    a.say(*lines)
    a.ping()
    b = server.join()  # its history, 4 MB, is queued at once: far more than one send takes
    assert b.read_lines(1000) == [f"<{a.nick}> {line}" for line in lines]
    b.ping()


def test_room_talk_reaches_a_late_reader_complete_and_in_order_over_tls(start_tls_server):
    server = start_tls_server("--max-backlog", "67108864")
    a, b = server.join(), server.join()
    lines = [f"{i:04d} " + "t" * 3000 for i in range(2000)]
    a.say(*lines)  # 6 MB while b reads nothing: b's output backs up and grows as it is retried
    a.ping()
    assert b.read_lines(2000) == [f"<{a.nick}> {line}" for line in lines]
    b.ping()


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--certfile", "cert.pem"], {}),
        ([], {"GCHAT_KEYFILE": "key.pem"}),
    ],
)
def test_certfile_and_keyfile_only_together(args, env):
    status, _, errors = run_gchat(*args, env=env)
    assert status == 2
    assert errors == ["gchat: error: --certfile and --keyfile go together: give both or neither"]


_UNREADABLE = "No such file or directory"
_UNUSABLE = "cannot use the TLS certificate {cert} with its key {key}: "


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        pytest.param(
            "/nonexistent", "key", "cannot read the TLS certificate {cert}: " + _UNREADABLE, id="no cert"
        ),
        pytest.param("cert", "/nonexistent", "cannot read the TLS key {key}: " + _UNREADABLE, id="no key"),
        pytest.param("cert", "other_key", _UNUSABLE + "key values mismatch", id="other key"),
        pytest.param("key", "key", _UNUSABLE + "not a PEM certificate and its private key", id="not a cert"),
        pytest.param(
            "cert",
            "encrypted_key",
            "the TLS key {key} is encrypted: give gchat an unencrypted one",
            id="encrypted",
        ),
    ],
)
def test_unusable_certificate_or_key_gives_one_line_and_nonzero_status(pki, cert, key, message):
    cert, key = getattr(pki, cert, cert), getattr(pki, key, key)  # a pki file, or a path as given
    status, _, errors = run_gchat("--certfile", cert, "--keyfile", key)
    assert status == 1
    assert errors == ["gchat: " + message.format(cert=cert, key=key)]


def test_tls_connections_count_once_handshaken_a_refused_one_at_once_a_failed_one_never(start_tls_server):
    server, metrics = on_free_port(
        lambda port: start_tls_server(
            "--metrics-port", str(port), "--max-clients", "1", "--handshake-timeout", "1"
        )
    )
    with socket.create_connection(server.address, timeout=TIMEOUT) as plain:
        plain.sendall(b"hello\n")
        _wait_closed(plain)
    assert_connections_add_up(metrics, 0, 0)
    server.join().ping()
    assert_connections_add_up(metrics, 1, 1)
    with socket.create_connection(server.address, timeout=TIMEOUT) as refused:
        _wait_closed(refused)  # it never handshakes, so it never reads its refusal line
    assert_connections_add_up(metrics, 1, 2)
    assert disconnects(scrape(metrics), "server full") == 1
