"""gevent's floor for a line: the least a gevent server can do to relay one line to a room.

A benchmark peer for ``per_line.py`` only, not a server anyone should run: a
``StreamServer`` greenlet per connection blocks in gevent's ``recv``, splits
lines and formats them as ``<guestN> TEXT`` (as the card peer does), and sends
each to every other client at once, in one C-level loop of the C sockets'
``send`` (as gchat's broadcast does). No queue, no writer, no limits, no
commands: what the kernel does not take is lost, so it is only measured one
line at a time. What gchat costs a line beyond this is its own (framing,
sanitizing, the rate limiter, the chat, the once-per-turn flush); what this
costs beyond Redis is gevent's and CPython's.

Usage: ``python tests/perf/relay_server.py --port 0``, as ``card_server.py``,
whose ``serve`` it shares.
"""

from __future__ import annotations

import itertools
import socket
import sys

from card_server import RECV_SIZE, WELCOME, serve
from gevent.socket import socket as GeventSocket

SEND = socket.socket.send

# Every client's C socket, by its gevent socket.
clients: dict[GeventSocket, socket.socket] = {}
guest_numbers = itertools.count(1)


def handle(sock: GeventSocket, _address: object) -> None:
    """The connection's greenlet: greet, then relay each line to the others until EOF."""
    nick = f"guest{next(guest_numbers)}".encode()
    sock.sendall(WELCOME)
    clients[sock] = sock._sock
    pending = b""
    try:
        while chunk := sock.recv(RECV_SIZE):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                others = [raw for peer, raw in clients.items() if peer is not sock]
                list(map(SEND, others, itertools.repeat(b"<%s> %s\n" % (nick, line.rstrip(b"\r")))))
    except OSError:
        pass
    finally:
        del clients[sock]
        sock.close()


def main(argv: list[str] | None = None) -> int:
    return serve(handle, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
