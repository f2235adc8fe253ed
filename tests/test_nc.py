"""A real netcat as a chat client, as the README tells people to connect."""

import subprocess

from conftest import TIMEOUT, require


def test_nc_client_chats_with_a_socket_client(server):
    listener = server.join()
    nc = subprocess.Popen(
        [require("nc", "netcat-openbsd"), server.host, str(server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        listener.expect("*** guest2 joined #lobby")
        nc.stdin.write(b"hello from netcat\n")
        nc.stdin.flush()
        listener.expect("<guest2> hello from netcat")
        listener.say("hi nc")
        listener.ping()
        nc.stdin.write(b"/quit\n")
        nc.stdin.flush()
        listener.expect("*** guest2 quit (leaving)")
        out, _ = nc.communicate(timeout=TIMEOUT)
    finally:
        nc.kill()
    assert out.decode().splitlines() == [
        "Welcome to the chatroom!",
        "*** You are guest2 in #lobby. Type /help for commands.",
        "<guest1> hi nc",
        "*** Bye!",
    ]
