"""A connection's lifecycle as named states, one field instead of a handful of flags.

::

    OPEN ──close()──▶ CLOSING ──┐
      │                         ├── the reader ends ──▶ LINGERING ──▶ CLOSED
      └─────────────────────────┘    (left the chat)
    OPEN, CLOSING, LINGERING ──abort(reason)──▶ ABORTED ── the reader ends ──▶ CLOSED
    any ──terminate() (end of a shutdown's grace)──▶ CLOSED

Only OPEN accepts output and handles input. CLOSING is Redis's
CLIENT_CLOSE_AFTER_REPLY: what is queued goes out, then a FIN; the reader
notices at once (it is woken) and ends the connection. LINGERING is the
graceful end after the client left the chat: its last lines and a FIN go out
while its input is read and dropped, so the kernel does not answer it with a
reset. ABORTED is Redis's CLIENT_CLOSE_ASAP: nothing more is owed, what was
queued is dropped. CLOSED: socket, watchers and greenlets are released.

A password gate's "knocking" is not a state of the connection: the connection
is OPEN either way, and only its front-end knows whether the client is in the
chat yet (see ``gchat.session``).
"""

import enum
from typing import Final


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    LINGERING = "lingering"
    ABORTED = "aborted"
    CLOSED = "closed"


# The members as plain names: looking a member up on its Enum class costs about 150 ns on
# CPython 3.11, a global 10, and the hot paths (every delivery, every frame read) check the state.
OPEN: Final = State.OPEN
CLOSING: Final = State.CLOSING
LINGERING: Final = State.LINGERING
ABORTED: Final = State.ABORTED
CLOSED: Final = State.CLOSED

# The states in which the output ends with a FIN once everything queued is in the kernel.
FIN_AFTER_OUTPUT = frozenset({CLOSING, LINGERING})
# Nothing more is owed: the output was dropped.
GONE = frozenset({ABORTED, CLOSED})
