"""The password gate: what a client may do before it is let into the chat.

Pure: a command and the time in, a reply and a verdict out. Until the right
``/pass``, the client is in no room and known to no one; it may only try the
password (three times per connection) or leave. Every connection's gate
shares the server's ``Door``, where each address's wrong tries are counted
(by source: an IPv6 client's /64, see ``gchat.addresses.sources``):
the session waits for ``PasswordGate.turn`` before a wrong ``/pass`` is
answered (and counted), while the right one is let in at once.
"""

import hmac
from enum import Enum
from typing import Callable, Optional

from gchat import replies
from gchat.addresses import sources
from gchat.commands import USAGE, Command, Pass, Quit, Usage
from gchat.throttle import Backoff

TRIES = 3


class Verdict(Enum):
    WAIT = "wait"
    ADMIT = "admit"
    # A wrong password; WRONG may try again, LAST was the connection's last try.
    WRONG = "wrong"
    LAST = "last"
    QUIT = "quit"


class Door:
    """What all connections' gates share: the password and every address's wrong tries."""

    __slots__ = ("backoff", "password", "source")

    def __init__(self, password: str, source: Optional[Callable[[str], str]] = None) -> None:
        self.password = password.encode()
        self.backoff = Backoff()
        self.source = source if source is not None else sources()


class PasswordGate:
    __slots__ = ("_address", "_door", "_failures")

    def __init__(self, door: Door, address: str) -> None:
        self._door = door
        self._address = door.source(address)
        self._failures = 0

    def turn(self, now: float) -> float:
        """Seconds before this connection's next wrong ``/pass`` may be answered (0: now)."""
        return self._door.backoff.wait(self._address, now)

    def opens(self, command: Pass) -> bool:
        """Whether ``command`` has the right password; constant time, so timing tells nothing."""
        return hmac.compare_digest(command.secret.encode(), self._door.password)

    def knock(self, command: Command, now: float) -> "tuple[Optional[bytes], Verdict]":
        if isinstance(command, Pass):
            if self.opens(command):
                return None, Verdict.ADMIT
            self._failures += 1
            self._door.backoff.failed(self._address, now)
            return replies.WRONG_PASSWORD, Verdict.LAST if self._failures >= TRIES else Verdict.WRONG
        if isinstance(command, Quit):
            return replies.BYE, Verdict.QUIT
        if command == Usage(USAGE["pass"]):
            return replies.usage(USAGE["pass"]), Verdict.WAIT
        return replies.PASSWORD_REQUIRED, Verdict.WAIT
