"""Real IRC clients in the room of a real ``nc`` user: a library bot (PyPI ``irc``) and irssi in tmux.

These use the clients as a user would; a missing tool fails the test (see
``conftest.require``), since tests/run.sh installs them.
"""

import os
import queue
import subprocess
import threading
import time

import irc.client
import pytest
from conftest import TIMEOUT, require

from gchat.irc.replies import NO_MOTD


class Netcat:
    """A real ``nc`` on the line port; its output read line by line with deadlines."""

    def __init__(self, address):
        self.proc = subprocess.Popen(
            [require("nc", "netcat-openbsd"), address[0], str(address[1])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def say(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def readline(self):
        try:
            return self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("nc read nothing in time") from None

    def until(self, line):
        """Lines up to and including ``line``."""
        seen = [self.readline()]
        while seen[-1] != line:
            seen.append(self.readline())
        return seen

    def close(self):
        self.proc.kill()
        self.proc.wait(TIMEOUT)


@pytest.fixture
def irc_server(start_server):
    return start_server("--rate", "0", "--irc-port", "0")


@pytest.fixture
def nc(irc_server):
    client = Netcat(irc_server.address)
    assert client.readline() == "Welcome to the chatroom!"
    status = client.readline()
    client.nick = status.split()[3]
    yield client
    client.close()


# --- The ``irc`` library from PyPI (jaraco), as a bot author would use it ----------------------


class Bot:
    """A bot on ``irc.client``: every event it gets, collected, and a bounded wait for one."""

    def __init__(self, address, nick):
        self.reactor = irc.client.Reactor()
        self.events = []
        for kind in ("welcome", "join", "pubmsg", "privmsg", "action", "part", "quit"):
            self.reactor.add_global_handler(kind, self._collect)
        self.connection = self.reactor.server().connect(address[0], address[1], nick)

    def _collect(self, connection, event):
        self.events.append(event)

    def wait_for(self, kind, **fields):
        """The first event of ``kind`` whose attributes match ``fields``; the reactor runs meanwhile."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event in self.events:
                if event.type == kind and all(getattr(event, k) == v for k, v in fields.items()):
                    self.events.remove(event)
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} {fields} in time; got {self.events}")
            self.reactor.process_once(timeout=0.1)


def test_a_bot_on_the_irc_library_chats_with_an_nc_user(irc_server, nc):
    bot = Bot(irc_server.irc_address(), "helper")
    bot.wait_for("welcome")
    bot.connection.join("#lobby")
    bot.wait_for("join", target="#lobby")
    assert nc.readline() == "*** helper joined #lobby"
    nc.say("hello bot")
    event = bot.wait_for("pubmsg", target="#lobby")
    assert (event.source.nick, event.arguments) == (nc.nick, ["hello bot"])
    bot.connection.privmsg("#lobby", "hello human")
    assert nc.readline() == "<helper> hello human"
    bot.connection.action("#lobby", "beeps")
    assert nc.readline() == "* helper beeps"
    nc.say("/me pats the bot")
    assert bot.wait_for("action", target="#lobby").arguments == ["pats the bot"]
    nc.say("/msg helper secret")
    assert bot.wait_for("privmsg", target="helper").arguments == ["secret"]
    bot.connection.privmsg(nc.nick, "got it")
    assert nc.readline() == "*helper* got it"
    bot.connection.quit("shift over")
    assert nc.readline() == "*** helper quit (shift over)"


# --- irssi in tmux ----------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (its own socket), one window, read as the screen shows it."""

    def __init__(self, tmp_path, command):
        self.binary = require("tmux", "tmux")
        self.socket = str(tmp_path / "tmux.sock")
        env = {**os.environ, "TERM": "xterm-256color", "HOME": str(tmp_path)}
        self.run("new-session", "-d", "-x", "160", "-y", "40", "-s", "chat", command, env=env)

    def run(self, *args, env=None):
        return subprocess.run(
            [self.binary, "-S", self.socket, *args],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
            env=env,
        ).stdout.decode("utf-8", "replace")

    def type(self, text):
        self.run("send-keys", "-t", "chat", "-l", text)
        self.run("send-keys", "-t", "chat", "Enter")

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "chat", "-S", "-100")

    def wait_for(self, text):
        """The screen once it shows ``text``: a terminal has no event to wait on, so it is polled."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {text!r}:\n{screen}")
            time.sleep(0.1)

    def kill(self):
        subprocess.run([self.binary, "-S", self.socket, "kill-server"], capture_output=True, timeout=TIMEOUT)


def test_irssi_in_tmux_joins_the_room_of_an_nc_user(irc_server, nc, tmp_path):
    irssi = require("irssi", "irssi")
    host, port = irc_server.irc_address()
    home = tmp_path / "irssi"
    home.mkdir()
    # irssi paces a user's commands after a burst (one per 2.2 s): the test would spend 10 s waiting.
    (home / "config").write_text(
        'settings = { "irc/core" = { cmd_queue_speed = "0"; cmds_max_at_once = "0"; }; };\n'
    )
    tmux = Tmux(tmp_path, f"{irssi} --home={home} -n alice -c {host} -p {port}")
    try:
        irc_server.wait_for_log(r"connected as alice \(IRC\)")
        # Registered on the server is not yet ready in irssi: keys typed while it still
        # reads the welcome can be lost. The MOTD's end is the last line of the welcome.
        tmux.wait_for(NO_MOTD)
        tmux.type("/join #lobby")
        assert nc.readline() == "*** alice joined #lobby"
        tmux.wait_for(nc.nick)
        nc.say("hello from nc")
        tmux.wait_for("hello from nc")
        tmux.type("hi nc, irssi here")
        assert nc.readline() == "<alice> hi nc, irssi here"
        tmux.type("/me waves")
        assert nc.readline() == "* alice waves"
        nc.say("/me waves back")
        tmux.wait_for("waves back")
        tmux.type(f"/msg {nc.nick} a private word")
        assert nc.readline() == "*alice* a private word"
        # What irssi's user saw, for whoever reads the test's directory.
        (tmp_path / "irssi-screen.txt").write_text(tmux.screen())
        tmux.type("/quit see you")
        assert nc.readline() == "*** alice quit (see you)"
    finally:
        tmux.kill()
