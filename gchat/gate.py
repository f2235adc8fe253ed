"""The password gate: what a client may do before it is let into the chat.

Pure: a command in, a reply and a verdict out. Until the right ``/pass``,
the client is in no room and known to no one; it may only try the password
(three times) or leave.
"""

import hmac
from enum import Enum
from typing import Optional

from gchat import replies
from gchat.commands import USAGE, Command, Pass, Quit, Usage

TRIES = 3


class Verdict(Enum):
    WAIT = "wait"
    ADMIT = "admit"
    CLOSE = "close"


class PasswordGate:
    __slots__ = ("_failures", "_password")

    def __init__(self, password: str) -> None:
        self._password = password.encode()
        self._failures = 0

    def knock(self, command: Command) -> "tuple[Optional[bytes], Verdict]":
        if isinstance(command, Pass):
            # Constant time: how long a wrong guess takes says nothing about it.
            if hmac.compare_digest(command.secret.encode(), self._password):
                return None, Verdict.ADMIT
            self._failures += 1
            return replies.WRONG_PASSWORD, Verdict.CLOSE if self._failures >= TRIES else Verdict.WAIT
        if isinstance(command, Quit):
            return replies.BYE, Verdict.CLOSE
        if command == Usage(USAGE["pass"]):
            return replies.usage(USAGE["pass"]), Verdict.WAIT
        return replies.PASSWORD_REQUIRED, Verdict.WAIT
