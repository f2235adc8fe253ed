"""The web page's WebSocket protocol end to end: a real server, real sockets, the websockets library."""

import _ssl
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import PING, PONG, TIMEOUT, LineClient, WebClient, free_port, require, start_web, web_url
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from gchat.commands import HISTORY_MAX
from gchat.web.style import ARRIVED_MEMBERS


@pytest.fixture
def web_server(start_server):
    return start_web(start_server)


def line_and_web(server) -> "tuple[LineClient, WebClient]":
    """A line client, then a web client whose arrival the line client has read."""
    line = server.join()
    web = WebClient(server)
    web.arrive()
    line.expect(f"*** {web.nick} joined #lobby")
    return line, web


def test_joining_a_big_room_costs_the_server_a_bounded_arrival_not_the_rooms_member_list(web_server):
    """Amplification: one join (or a join and part in a loop) must not make the server write O(n)."""
    for _ in range(2 * ARRIVED_MEMBERS):
        client = web_server.connect()
        client.readline(), client.readline()  # the welcome and status lines: it is in #lobby
    web = WebClient(web_server)
    arrived = web.arrive()
    assert arrived["count"] == 2 * ARRIVED_MEMBERS + 1
    assert len(arrived["members"]) == ARRIVED_MEMBERS
    web.send(type="part", room="#lobby")
    web.until("left", room="#lobby")
    web.send(type="join", room="#lobby")
    again = web.until("arrived", room="#lobby")
    assert (again["count"], len(again["members"])) == (2 * ARRIVED_MEMBERS + 1, ARRIVED_MEMBERS)
    web.send(type="who", room="#lobby")
    assert len(web.until("member_list")["members"]) == 2 * ARRIVED_MEMBERS + 1


def test_a_web_client_arrives_in_the_lobby_with_its_history(web_server):
    line = web_server.join()
    line.say("before you came")
    line.ping()
    arrived = WebClient(web_server).arrive()
    assert arrived["first"] is True
    [message] = arrived["history"]
    assert (message["nick"], message["text"], "kind" in message) == (line.nick, "before you came", False)
    assert isinstance(message["at"], int)


def test_web_and_line_clients_talk_both_ways(web_server):
    line, web = line_and_web(web_server)
    web.send(type="say", room="#lobby", text="hi from the web")
    line.expect(f"<{web.nick}> hi from the web")
    line.say("hi from nc")
    assert web.until("message", nick=line.nick)["text"] == "hi from nc"


def test_a_web_client_sees_its_own_message_as_the_room_did(web_server):
    web = WebClient(web_server)
    web.arrive()
    web.send(type="say", room="#lobby", text="tab\there\x1b[31m")
    assert web.until("message")["text"] == "tab\there"


def test_me_from_the_web_is_an_action(web_server):
    line, web = line_and_web(web_server)
    web.send(type="me", room="#lobby", text="waves")
    line.expect(f"* {web.nick} waves")


def test_private_messages_both_ways(web_server):
    line, web = line_and_web(web_server)
    line.say(f"/msg {web.nick} psst")
    assert web.until("private", nick=line.nick)["text"] == "psst"
    web.send(type="msg", nick=line.nick, text="hush")
    line.expect(f"*{web.nick}* hush")


def test_the_nick_of_the_last_visit_is_taken_at_once(web_server):
    assert WebClient(web_server, "/ws?nick=alice").arrive()["nick"] == "alice"


def test_a_nick_in_use_at_the_upgrade_makes_a_guest(web_server):
    line = web_server.join()
    arrived = WebClient(web_server, f"/ws?nick={line.nick}").arrive()
    assert arrived["nick"] != line.nick


def test_rooms_members_and_topic_requests(web_server):
    web = WebClient(web_server)
    web.arrive()
    web.send(type="join", room="Dev")
    assert web.until("arrived")["room"] == "#dev"
    web.send(type="rooms")
    assert web.until("room_list")["rooms"] == [["#dev", 1, ""], ["#lobby", 1, ""]]
    web.send(type="who", room="#dev")
    assert [m["nick"] for m in web.until("member_list")["members"]] == [web.nick]
    web.send(type="part", room="#dev")
    assert web.until("left")["room"] == "#dev"


def test_a_malformed_message_gets_an_error_and_the_socket_stays(web_server):
    web = WebClient(web_server)
    web.arrive()
    web.ws.send("not json")
    assert web.until("error")["text"] == "not JSON"
    web.ping()


def test_quit_says_bye_and_closes_with_1000(web_server):
    web = WebClient(web_server)
    web.arrive()
    web.send(type="quit", reason="done")
    web.until("notice", code="bye")
    with pytest.raises(ConnectionClosed) as closed:
        web.next()
    assert closed.value.rcvd.code == 1000


def test_shutdown_tells_web_clients_and_closes_with_1001(web_server):
    web = WebClient(web_server)
    web.arrive()
    web_server.signal(15)
    web.until("notice", code="shutting_down")
    with pytest.raises(ConnectionClosed) as closed:
        web.next()
    assert closed.value.rcvd.code == 1001


def test_another_sites_page_is_refused_with_403(web_server):
    with pytest.raises(InvalidStatus) as refused:
        WebClient(web_server, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_an_origin_listed_in_web_origin_is_accepted(start_server):
    server = start_web(start_server, "--web-origin", "https://chat.example")
    WebClient(server, origin="https://chat.example").arrive()


def test_a_message_over_max_line_is_closed_with_1009(start_server):
    server = start_web(start_server, "--max-line", "100")
    web = WebClient(server)
    web.arrive()
    web.send(type="say", room="#lobby", text="x" * 200)
    with pytest.raises(ConnectionClosed) as closed:
        web.until("never")
    assert closed.value.rcvd.code == 1009


def test_the_page_is_served_with_a_strict_policy(web_server):
    with urllib.request.urlopen(web_url(web_server) + "/", timeout=TIMEOUT) as response:
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert b'<script src="app.js"' in response.read()


def test_an_unknown_path_is_404(web_server):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(web_url(web_server) + "/etc/passwd", timeout=TIMEOUT)
    assert error.value.code == 404


def test_a_file_fetch_ends_its_connection_so_a_page_load_holds_no_place(web_server):
    """Over HTTP/1.1, which keeps connections by default: the server closes once it has answered."""
    host, port = web_url(web_server).rsplit("/", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /app.js HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in response


def silent_socket(server) -> socket.socket:
    """A WebSocket that completed its handshake and then reads nothing and answers nothing."""
    host, port = web_url(server).rsplit("/", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(Request(host=host, target="/ws")))
    while not any(isinstance(event, AcceptConnection) for event in client.events()):
        client.receive_data(sock.recv(65536))
    return sock


def test_a_socket_that_answers_no_ping_is_dropped(start_server):
    server = start_web(start_server, "--web-ping", "0.2")
    line = server.join()
    sock = silent_socket(server)
    joined = line.readline()
    assert joined.endswith(" joined #lobby")
    nick = joined.split()[1]
    line.expect(f"*** {nick} quit (no pong)")
    sock.close()


def test_web_clients_count_under_max_clients(start_server):
    """The refusal is sent at accept, before the request is read: a client that waits reads it whole.

    (One whose request is already in flight may get a reset instead, as a line client that
    sends before reading does; the page then tries again later.)
    """
    server = start_web(start_server, "--max-clients", "1")
    server.join()
    host, port = web_url(server).rsplit("/", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert response.endswith(b"\r\n\r\n!!! server full, try again later\n")


def test_the_password_gate_applies_to_web_clients(start_server, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    server = start_web(start_server, "--password-file", str(secret))
    web = WebClient(server)
    assert web.next()["type"] == "password_required"
    web.send(type="say", room="#lobby", text="let me in")
    assert web.next()["type"] == "password_required"
    web.send(type="pass", password="s3cret")
    web.arrive()


def test_idle_timeout_applies_to_web_clients(start_server):
    server = start_web(start_server, "--idle-timeout", "0.5")
    line = server.connect()
    web = WebClient(server)
    web.arrive()
    web.until("idle_timeout")
    with pytest.raises(ConnectionClosed):
        web.until("never")
    line.close()


def test_a_line_client_is_unchanged_by_the_web_port(web_server):
    line = web_server.join()
    line.say(PING)
    assert line.readline() == PONG


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> "tuple[str, str]":
    """A self-signed certificate for 127.0.0.1 and its key (paths)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [require("openssl", "openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=TIMEOUT,
    )  # fmt: skip
    return cert, key


def test_wss_with_certfile(start_server, certificate):
    cert, key = certificate
    server = start_web(start_server, "--certfile", cert, "--keyfile", key)
    assert web_url(server).startswith("https://")
    WebClient(server, ssl=ssl.create_default_context(cafile=cert)).arrive()


# OpenSSL's numbers, as the ssl module's message callback gives them.
HANDSHAKE = 22
NEW_SESSION_TICKET = 4
INNER_CONTENT_TYPE = 0x101
APPLICATION_DATA = b"\x17"
# How long each of the client's two threads waits for the other at the session ticket.
MEETING = 2.0


def test_a_wss_upgrade_written_while_the_client_takes_a_session_ticket_reaches_the_server(
    start_server, certificate
):
    """The WebClient's TLS (SerialTls): its reading thread and its writer never use OpenSSL at once.

    A TLS 1.3 server sends session tickets just after the handshake, as the
    client writes its upgrade request; OpenSSL takes a ticket in a small
    handshake whose output buffer it frees unsent, so a request another thread
    wrote meanwhile was lost (test_wss_with_certfile failed, one connection in
    about 300 under load). Here the two threads are made to meet there: the
    writer waits (in OpenSSL, at its first record) until the reader is taking
    the first ticket, which waits until the writer's write has returned. With
    the threads serialised, whichever comes first waits MEETING seconds for
    the other in vain, and the request goes out whole, before or after the ticket.
    """
    cert, key = certificate
    server = start_web(start_server, "--certfile", cert, "--keyfile", key)
    context = ssl.create_default_context(cafile=cert)
    in_ticket, written = threading.Event(), threading.Event()

    def meet(_conn, direction, _version, content_type, message_type, data):
        ticket = content_type == HANDSHAKE and message_type == NEW_SESSION_TICKET
        if direction == "read" and ticket and not in_ticket.is_set():
            in_ticket.set()
            written.wait(MEETING)
        elif direction == "write" and content_type == INNER_CONTENT_TYPE and data == APPLICATION_DATA:
            in_ticket.wait(MEETING)

    def returned(_frame, event, function):
        tls = type(getattr(function, "__self__", None)) is _ssl._SSLSocket
        if event == "c_return" and tls and function.__name__ == "write":
            written.set()  # the writer's SSL_write, done

    context._msg_callback = meet
    sys.setprofile(returned)
    try:
        web = WebClient(server, ssl=context)
    finally:
        sys.setprofile(None)
    web.arrive()


def test_a_web_client_and_a_line_client_of_another_node_talk(cluster):
    web_node = cluster.node("--web-port", str(free_port()))
    line_node = cluster.node()
    line = cluster.join(line_node)
    web = WebClient(web_node)
    web.arrive()
    line.expect(f"*** {web.nick} joined #lobby")
    web.send(type="say", room="#lobby", text="across the bus")
    line.expect(f"<{web.nick}> across the bus")
    line.say("and back")
    assert web.until("message", nick=line.nick)["text"] == "and back"


def test_a_browser_that_does_not_read_is_a_slow_consumer(start_server):
    server = start_web(start_server, "--max-backlog", "65536")
    line = server.join()
    sock = silent_socket(server)
    nick = line.readline().split()[1]
    line.say(*(f"{n:05d} " + "q" * 994 for n in range(3000)))
    line.read_until(f"*** {nick} quit (slow consumer)")
    sock.close()


# --- Older lines (the page's scroll-up) ----------------------------------------------------


def stored_web(start_server, tmp_path, count: int, *flags: str) -> WebClient:
    """A web client arriving in #lobby after ``count`` lines (``line 0`` first) were said there,
    on a server that keeps them on disk and replays the last 2 on join."""
    server = start_web(start_server, "--store", str(tmp_path / "chat.db"), "--history", "2", *flags)
    line = server.join()
    line.say(*(f"line {n}" for n in range(count)))
    line.ping()
    return WebClient(server)


def older(web: WebClient, before: object, limit: int, room: str = "#lobby") -> "dict[str, object]":
    web.send(type="history", room=room, before=before, limit=limit)
    return web.until("older_lines", room=room)


def test_older_lines_come_oldest_first_with_their_times_until_none_remain(start_server, tmp_path):
    web = stored_web(start_server, tmp_path, 9)
    shown = web.arrive()["history"]
    assert [m["text"] for m in shown] == ["line 7", "line 8"]
    pages = []
    more = True
    while more:
        before = shown[0]["at"]
        answer = older(web, before, 3)
        shown, more = answer["history"], answer["more"]
        times = [m["at"] for m in shown]
        assert times == sorted(times)
        assert all(at < before for at in times)
        assert all(m["type"] == "message" and "kind" not in m for m in shown)
        pages.append([m["text"] for m in shown])
    assert pages == [["line 4", "line 5", "line 6"], ["line 1", "line 2", "line 3"], ["line 0"]]
    last = older(web, shown[0]["at"], 3)
    assert (last["history"], last["more"]) == ([], False)


def test_older_lines_of_a_room_not_joined_are_refused(start_server, tmp_path):
    web = stored_web(start_server, tmp_path, 1)
    web.arrive()
    web.send(type="history", room="Dev", before=time.time() * 1_000_000, limit=3)
    web.until("not_in", room="#dev")
    web.ping()


def test_older_lines_are_at_most_the_line_protocols_history_bound(start_server, tmp_path):
    web = stored_web(start_server, tmp_path, HISTORY_MAX + 5)
    before = web.arrive()["history"][0]["at"]
    web.send(type="history", room="#lobby", before=before, limit=HISTORY_MAX + 1)
    assert web.until("error")["text"] == f"history: limit must be an integer from 1 to {HISTORY_MAX}"
    answer = older(web, before, HISTORY_MAX)
    assert (len(answer["history"]), answer["more"]) == (HISTORY_MAX, True)


def test_older_lines_requests_count_against_the_rate(start_server, tmp_path):
    """With --rate 10 and a burst of 1, 6 requests take 5 new tokens: half a second at least
    (a lower bound, which no load on the machine can break; a little less for float rounding)."""
    web = stored_web(start_server, tmp_path, 1, "--rate", "10", "--burst", "1")
    before = web.arrive()["at"]
    start = time.monotonic()
    for _ in range(6):
        web.send(type="history", room="#lobby", before=before, limit=1)
    for _ in range(6):
        web.until("older_lines")
    assert time.monotonic() - start >= 0.45
