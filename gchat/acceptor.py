"""Listening when descriptors run out, and turning a connection away without keeping it.

Both ports (chat and metrics) accept with gevent's StreamServer, whose accept
loop (``BaseServer._do_read``) hands every failed ``accept`` to the hub: a
traceback on stderr, whatever ``--log-format`` says, once per failure. When
the process is out of descriptors that is dozens a second, for as long as
the shortage lasts. ``Acceptor`` catches the failure where it happens, in
``do_read``, and makes it a log record (at most one a second, counting the
rest, and one when accepting works again); a failure for want of resources
also pauses accepting for a moment, as gevent and nginx do, since trying
again at once would only fail again.
The connection that could not be accepted waits in the kernel's listen
backlog meanwhile, and is accepted once a descriptor is free.
"""

import contextlib
import errno
import logging
import socket
import time
from typing import Any, Optional

from gevent.server import StreamServer
from gevent.socket import socket as GreenSocket

from gchat.addresses import format_peer
from gchat.logs import Throttle
from gchat.reader import RECV_SIZE

log = logging.getLogger("gchat")

# accept() errors that say "not now": the process or the system is short of something.
SHORT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Seconds without accepting after such an error; connections wait in the backlog meanwhile.
ACCEPT_PAUSE = 0.1
# Seconds between two log records about failed accepts on one port.
REPORT_INTERVAL = 1.0


class Acceptor(StreamServer):  # type: ignore[misc]  # gevent is untyped
    """A StreamServer whose failed accepts cost a rate-limited log record, never a traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._throttle = Throttle(REPORT_INTERVAL)
        # Failed accepts since the last "again" record, and whether one was reported since.
        self._failures = 0
        self._reported = False

    def do_read(self) -> Optional[tuple[GreenSocket, Any]]:
        try:
            accepted: Optional[tuple[GreenSocket, Any]] = super().do_read()
        except OSError as err:
            if self.is_fatal_error(err):
                raise  # the listening socket itself is gone: gevent closes the server
            self._failed(err)
            return None  # ends this round of accepts
        if accepted is not None and self._reported:
            # Once per reported failure at most: a port that fails and recovers over and
            # over logs no more than one pair of records a second.
            log.warning("accepting on %s again after %d failed accepts", self._where, self._failures)
            self._failures = 0
            self._reported = False
        return accepted

    @property
    def _where(self) -> str:
        return format_peer(self.address)

    def _failed(self, err: OSError) -> None:
        self._failures += 1
        short = err.errno in SHORT_OF_RESOURCES
        if short:
            # What BaseServer._do_read does after a failure, minus the traceback.
            self.stop_accepting()
            self._timer = self.loop.timer(ACCEPT_PAUSE)
            self._timer.start(self._start_accepting_if_started)
        held = self._throttle.admit(time.monotonic())
        if held is None:
            return
        self._reported = True
        log.warning(
            "accept on %s failed: %s%s%s",
            self._where,
            err.strerror or err,
            f"; pausing accepts for {ACCEPT_PAUSE:g} s" if short else "",
            f" ({held} more failures since the last report)" if held else "",
        )


def refuse(sock: GreenSocket, data: bytes) -> None:
    """Send ``data`` if the kernel takes it at once, and close: the descriptor is kept for no time.

    No waiting, so refusals cost nothing however many arrive. What the client
    sent already is read and dropped first: closing a socket with unread input
    makes the kernel answer with a reset instead of the data and FIN. Input
    arriving later finds the socket closed and gets a reset; by then the line
    has normally reached the client, and Linux hands a reader its data before
    the reset.
    """
    sock.settimeout(0)
    with contextlib.suppress(OSError):
        sock.send(data)
        sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        sock.recv(RECV_SIZE)
    sock.close()
