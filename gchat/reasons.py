"""Why a connection ended or was turned away, in the server's words: each defined once.

The same words are the ``reason`` label of ``gchat_disconnects``, the cause
in the log's "disconnected (...)" line, and what a room is told in
"*** NICK quit (...)": a client that is cut off never chooses its own reason
(a ``/quit``'s free text reaches the room but is counted and logged as QUIT).
"""

from typing import Final

# A client's connection ended.
CLOSED: Final = "connection closed"
QUIT: Final = "quit"
SLOW_CONSUMER: Final = "slow consumer"
IDLE_TIMEOUT: Final = "idle timeout"
SHUTDOWN: Final = "server shutdown"
SERVER_ERROR: Final = "server error"
KICKED: Final = "kicked"
# A WebSocket that answered no ping for --web-ping seconds (the browser is gone).
NO_PONG: Final = "no pong"
# The password gate closed the connection after the last wrong try.
WRONG_PASSWORD: Final = "wrong password"
# A connection turned away at accept (BANNED and SHUTDOWN too).
FULL: Final = "server full"
TOO_MANY: Final = "too many from address"
# More connections from the address than --connect-rate lets it open.
TOO_FAST: Final = "connecting too fast"
BANNED: Final = "banned"

# Every reason a connection of this node ends or is refused: the metric's labels, each shown
# from the start (at 0) so that rate() works on each.
COUNTED: Final = (
    CLOSED,
    QUIT,
    SLOW_CONSUMER,
    IDLE_TIMEOUT,
    SHUTDOWN,
    SERVER_ERROR,
    KICKED,
    NO_PONG,
    WRONG_PASSWORD,
    FULL,
    TOO_MANY,
    TOO_FAST,
    BANNED,
)

# Why a user of another node is gone, as its rooms are told: its node was declared lost, or
# the node resynced without it (it left while this node was cut off; how is lost with the
# events that never came).
NODE_LOST: Final = "node lost"
LEFT_UNSEEN: Final = "left while the link was down"
