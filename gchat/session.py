"""The line protocol's session: the greeting, the password gate, each line to the hub.

One ``Session`` per line client, the ``Dialect`` of its ``Connection`` (see
``gchat.connection``, which reads, writes, rate-limits and closes): it frames
input into lines (LF or CR NUL, at most ``--max-line`` bytes), sanitizes and
parses each and hands the command to the hub. With a server password the
client stays outside the hub until it knows it.
"""

import logging
import time
from typing import Optional

from gchat import line, replies
from gchat.bans import covers
from gchat.chat import Chat, Client
from gchat.commands import Command, Pass, parse
from gchat.config import Config
from gchat.connection import Connection
from gchat.framing import Frame, LineFramer, TooLong
from gchat.gate import Door, PasswordGate, Verdict
from gchat.lifecycle import OPEN
from gchat.reasons import BANNED, KICKED, QUIT, WRONG_PASSWORD
from gchat.sanitize import sanitize

log = logging.getLogger("gchat")


class Session:
    """A line client: outside the chat at the password prompt (``client`` None), then in it."""

    __slots__ = ("_chat", "_client", "_connection", "_gate", "_max_line", "_output", "framer", "max_frame")

    def __init__(self, connection: Connection, chat: Chat, config: Config, door: Optional[Door]) -> None:
        self._connection = connection
        self._output = connection.output
        self._chat = chat
        self._max_line = config.max_line
        self.framer = LineFramer(config.max_line)
        # The longest line and its end (CR LF or CR NUL).
        self.max_frame = config.max_line + 2
        # With a server password the client stays outside the hub until it knows it.
        self._gate = PasswordGate(door, connection.host) if door is not None else None
        self._client: Optional[Client] = None

    def start(self) -> None:
        self._output.deliver(replies.WELCOME)
        if self._gate is None:
            self._admit()
        else:
            self._output.deliver(replies.NEEDS_PASSWORD)

    def handle(self, frame: Frame) -> None:
        if isinstance(frame, TooLong):
            self._output.deliver(replies.line_too_long(self._max_line))
            return
        command = parse(sanitize(frame))
        if command is None:
            return
        client = self._client
        if client is not None:
            line.execute(self._chat, client, command, self._gate is not None)
        else:
            self._knock(command)

    def timed_out(self) -> None:
        self._output.deliver(replies.IDLE_TIMEOUT)

    def shut_down(self) -> None:
        """For a client still outside the hub (no password yet): the hub tells the others."""
        if self._client is None:
            self._output.deliver(replies.SHUTTING_DOWN)
            self._connection.close()

    def banned(self, address: str) -> None:
        """A ban (an address or a network: gchat.bans) reaches a client still at the password prompt.

        Clients in the chat are kicked by the hub; this one is known to no one but its session.
        """
        if (
            self._client is None
            and self._gate is not None
            and self._connection.state is OPEN
            and covers(address, self._connection.host)
        ):
            self._turn_away(replies.BANNED, BANNED)

    def leave(self, cause: str) -> str:
        return leave_chat(self._chat, self._client, cause, self._connection.peer, "(no password)")

    def _admit(self) -> None:
        host = self._connection.host
        if self._chat.banned(host):
            # Every way into the chat checks the bans here, whatever was checked at accept.
            self._turn_away(replies.BANNED, BANNED)
            return
        client = self._client = self._chat.connect(self._output, host, replies.LINES)
        assert client is not None  # a guest nick is never taken
        if log.isEnabledFor(logging.INFO):
            log.info("%s connected as %s", self._connection.peer, client.nick)

    def _knock(self, command: Command) -> None:
        """A line before the password: the gate answers; the right password admits."""
        gate = self._gate
        assert gate is not None
        if isinstance(command, Pass) and not gate.opens(command):
            # Wrong tries from this address, on any connection, delay the answer to its
            # next wrong one (a right one is let in at once, even from a guesser's address,
            # behind a NAT); the reader reads nothing meanwhile, so one connection has one
            # guess in flight. The wait is a hold like the rate limit's: a hangup ends it.
            while (pause := gate.turn(time.monotonic())) > 0:
                if not self._connection.reader.hold(pause):
                    return
        reply, verdict = gate.knock(command, time.monotonic())
        if verdict is Verdict.WRONG or verdict is Verdict.LAST:
            log.warning(
                "%s wrong password; next try from %s checked in %.1f s",
                self._connection.peer,
                self._connection.host,
                gate.turn(time.monotonic()),
            )
        if verdict is Verdict.ADMIT:
            self._admit()
        elif verdict is Verdict.QUIT or verdict is Verdict.LAST:
            self._turn_away(reply, QUIT if verdict is Verdict.QUIT else WRONG_PASSWORD)
        elif reply is not None:
            self._output.deliver(reply)

    def _turn_away(self, line: Optional[bytes], reason: str) -> None:
        """Close a connection that never got into the chat, ``line`` its last."""
        if line is not None:
            self._output.deliver(line)
        self._connection.close(reason)


def leave_chat(chat: Chat, client: Optional[Client], cause: str, peer: str, outside: str) -> str:
    """A connection is over: its client (None: never got in, ``outside`` in the log) leaves the chat.

    The cause returned is the server's word, never a quit's reason, which is
    free text: a client the chat let go already left by QUIT, or was KICKED
    (by an operator's kick or ban). Every front-end ends its clients this way.
    """
    if client is not None:
        if not client.connected:
            cause = KICKED if client.kicked else QUIT
        chat.leave(client, cause)
    if log.isEnabledFor(logging.INFO):
        who = client.nick if client is not None else outside
        why = client.quit_reason if client is not None else cause
        log.info("%s %s disconnected (%s)", peer, who, why)
    return cause
