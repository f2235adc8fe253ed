"""The soak's attackers: what the attack run of issue 10 did to gchat, done again for minutes.

Each attacker comes from an address of its own in 127.0.0.0/8, so that per-address limits
(``--max-per-ip``, the password and ``/oper`` throttles) meet the attacker and not the soak's
other clients, which all come from 127.0.0.1. Each one counts what it got the server to do;
``run.py`` checks those figures against what the README promises.

* ``Ghost``: a victim connects; from the ghost address a second connection sends one 64 KiB
  chunk of ``/msg VICTIM ...`` lines from a room of its own (where no notice written to it
  could reveal the reset) and resets. The server may have read part of the chunk,
  but it must notice the reset within a second and deliver nothing on the ghost's behalf after
  it: the victim counts what still arrives later. A ghost session that lingered would also hold
  its ``--max-per-ip`` place, and the next ghost's connection would be refused.
* ``HandshakeStaller`` (TLS): opens more connections than ``--max-per-ip`` from one address and
  never starts a handshake. The surplus must be closed at once; meanwhile a TLS client from
  another address must get in and be answered.
* ``PasswordGuesser`` (password server): guesses the server password as fast as the server
  answers, on several connections from one address.
* ``OperGuesser`` (password server): knows the server password, then guesses ``/oper`` as fast
  as the server answers.
* ``Knower`` (password server): knows the password, from 127.0.0.1 and from the guessers'
  address, and measures how long admission takes while the guessing goes on.
"""

from __future__ import annotations

import select
import socket
import time

from actors import NEEDS_PASSWORD, TIMEOUT, Actor, ClientError, Conn

GHOST_ADDRESS = "127.0.0.2"
STALL_ADDRESS = "127.0.0.3"
BYSTANDER_ADDRESS = "127.0.0.4"
GUESS_ADDRESS = "127.0.0.5"
OPER_ADDRESS = "127.0.0.6"

# What the ghost sends before its reset: the read-ahead the attack run used.
GHOST_CHUNK = 65536
GHOST_TEXT = "boo from a ghost"
# How long after the reset the victim watches, and how long a line may still be on its way.
GHOST_WATCH, GHOST_GRACE = 3.0, 1.5
# How many stalled handshakes one staller opens (more than --max-per-ip), and how long the
# server gets to close the surplus: "at once", with room for a loaded machine.
STALLS, REFUSE_WINDOW = 60, 2.0
WRONG_PASSWORD = "!!! wrong password"
WRONG_OPERATOR = "!!! wrong operator name or password"


class Ghost(Actor):
    kind = "ghost"
    pause = (0.5, 1.5)

    def cycle(self) -> None:
        victim = Conn(self.target)
        try:
            victim.greet()
            nick = self.unique_nick("v")
            victim.nick(nick)
            ghost = Conn(self.target, source=GHOST_ADDRESS)
            try:
                ghost.greet()
                # A room of its own: no notice sent to the ghost can reveal the reset early.
                ghost.join(f"#{self.name}")
                line = f"/msg {nick} {GHOST_TEXT}\n".encode()
                ghost.send(line * (GHOST_CHUNK // len(line)))
                # The first line delivered: the server is reading the chunk. Reset now.
                victim.read_until(self.haunts, "the ghost's first line")
            finally:
                ghost.reset()
            gone = time.monotonic()
            self.stats.add("ghosts")
            deadline = gone + GHOST_WATCH
            while (remaining := deadline - time.monotonic()) > 0:
                victim.fill(remaining)
                late = time.monotonic() - gone > GHOST_GRACE
                for text in victim.lines():
                    if self.haunts(text):
                        self.stats.add("ghost lines late" if late else "ghost lines in time")
                if victim.eof:
                    raise ClientError("the server closed a ghost's victim")
        finally:
            victim.close()

    @staticmethod
    def haunts(line: str) -> bool:
        return line.endswith(f"* {GHOST_TEXT}")


class HandshakeStaller(Actor):
    kind = "staller"
    pause = (1.0, 3.0)

    def cycle(self) -> None:
        socks: list[socket.socket] = []
        try:
            for _ in range(STALLS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.settimeout(TIMEOUT)
                sock.bind((STALL_ADDRESS, 0))
                sock.connect((self.target.host, self.target.port))
            still_open = set(socks)
            deadline = time.monotonic() + REFUSE_WINDOW
            while still_open and (remaining := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select(list(still_open), [], [], remaining)
                for sock in readable:
                    try:
                        data = sock.recv(4096)  # a refusal (or an alert) may come before the close
                    except OSError:
                        data = b""
                    if not data:
                        still_open.discard(sock)
            self.stats.add("stalled handshakes", len(socks))
            self.stats.add("stalled handshakes closed at once", len(socks) - len(still_open))
            self.stats.peak("stalled handshakes held at most", len(still_open))
            # While the rest are held, a TLS client from another address is served.
            conn = Conn(self.target, source=BYSTANDER_ADDRESS)
            try:
                conn.greet()
                conn.ping()
                self.stats.add("TLS clients served beside stalled handshakes")
            finally:
                conn.close()
        finally:
            for sock in socks:
                Conn.reset_socket(sock)


class Guesser(Actor):
    """Guesses a secret with ``command`` as fast as the server answers, counting the answers."""

    pause = (0.0, 0.05)
    source = ""
    command = ""
    wrong = ""

    def enter(self, conn: Conn) -> None:
        raise NotImplementedError

    def cycle(self) -> None:
        conn = Conn(self.target, source=self.source, check=False)
        try:
            self.enter(conn)
            while not self.target.stop.is_set():
                conn.say(f"{self.command} guess-{self.rng.random()}")
                try:
                    reply = conn.read_until(
                        lambda text: text.startswith("!!! "), f"an answer to {self.command}"
                    )
                except ClientError:  # closed, or kept waiting past the deadline: either ends a try
                    self.stats.add(f"{self.kind}s closed or kept waiting")
                    return
                self.stats.add(f"{self.kind}: answered {'wrong' if reply == self.wrong else 'refused'}")
        finally:
            conn.reset()


class PasswordGuesser(Guesser):
    kind = "password guesser"
    source, command, wrong = GUESS_ADDRESS, "/pass", WRONG_PASSWORD

    def enter(self, conn: Conn) -> None:
        conn.read_until(lambda _: True, "the welcome line")
        conn.expect(NEEDS_PASSWORD)


class OperGuesser(Guesser):
    kind = "oper guesser"
    source, command, wrong = OPER_ADDRESS, "/oper root", WRONG_OPERATOR

    def enter(self, conn: Conn) -> None:
        conn.greet()  # it knows the server password


class Knower(Actor):
    """Knows the password; how long admission takes, from a clean address and the guessers'."""

    kind = "knower"
    pause = (0.2, 0.6)

    def cycle(self) -> None:
        source = GUESS_ADDRESS if self.index % 2 else None
        started = time.monotonic()
        conn = Conn(self.target, source=source)
        try:
            conn.greet()
            conn.ping()
            waited_ms = int(1000 * (time.monotonic() - started))
            where = "the guessers' address" if source else "127.0.0.1"
            self.stats.add(f"admissions from {where}")
            self.stats.peak(f"slowest admission from {where}, ms", waited_ms)
            conn.say("/quit")
            conn.expect("*** Bye!")
        finally:
            conn.close()
