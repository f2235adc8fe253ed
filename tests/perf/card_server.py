"""The design card's chat server: gevent, a queue and a writer greenlet per client.

This is a benchmark peer, the design gchat's README departs from, built as the
card describes it so that the departure is measured, not argued:

* a gevent ``StreamServer``, whose handler greenlet per connection reads lines
  (``recv`` 64 KiB, split on LF) for the connection's whole life, idle or not;
* a broadcast hub: ``deliver`` is ``queue.put`` on each other client's gevent
  ``Queue``, the line formatted once as ``<guestN> TEXT``;
* a writer greenlet per client that loops ``queue.get`` → ``sendall``, one
  ``sendall`` per line.

So every connection holds two parked greenlets and a queue (memory per idle
connection), and every delivery costs a greenlet switch and a system call (CPU
at low load, where nothing batches). gchat instead parks idle connections on an
io watcher with no greenlet and sends each client's lines of one loop turn with
one ``send``. No commands, nicks, rooms or limits: a floor for the transport and
fan-out. Listen backlog 4096 like gchat, so a connect storm measures the design.

Usage: ``python tests/perf/card_server.py --port 0``; the real address goes to
stderr as ``listening on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from typing import Any, Callable

import gevent
from gevent.queue import Queue
from gevent.server import StreamServer
from gevent.socket import socket as GeventSocket

HOST = "127.0.0.1"
BACKLOG = 4096
WELCOME = b"Welcome to the chatroom!\n"
RECV_SIZE = 65536
# Ends a writer: the client is gone.
CLOSE = b""


class Hub:
    """Every client's queue; a broadcast puts the line on each other one."""

    def __init__(self) -> None:
        self.queues: dict[GeventSocket, Queue[bytes]] = {}

    def broadcast(self, line: bytes, sender: GeventSocket) -> None:
        for sock, queue in self.queues.items():
            if sock is not sender:
                queue.put(line)


hub = Hub()
guest_numbers = itertools.count(1)


def writer(sock: GeventSocket, queue: Queue[bytes]) -> None:
    """The card's writer greenlet: one ``sendall`` per queued line until told to stop."""
    try:
        while True:
            line = queue.get()
            if line is CLOSE:
                return
            sock.sendall(line)
    except OSError:
        return


def handle(sock: GeventSocket, _address: object) -> None:
    """The connection's greenlet: greet, start its writer, read lines until EOF."""
    nick = f"guest{next(guest_numbers)}".encode()
    queue: Queue[bytes] = Queue()
    queue.put(WELCOME)
    hub.queues[sock] = queue
    sender = gevent.spawn(writer, sock, queue)
    pending = b""
    try:
        while True:
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = line.rstrip(b"\r")
                if text.strip():
                    hub.broadcast(b"<%s> %s\n" % (nick, text), sock)
    except OSError:
        pass
    finally:
        del hub.queues[sock]
        queue.put(CLOSE)
        sender.join()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    return serve(handle, __doc__, argv)


def serve(handler: Callable[[GeventSocket, Any], None], doc: str | None, argv: list[str] | None) -> int:
    """Run a peer's ``handler`` per connection on ``--port``, until interrupted."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = StreamServer((HOST, args.port), handler, backlog=BACKLOG)
    server.start()
    print(f"listening on {HOST}:{server.server_port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
