"""The seed's thread-per-client chat server, with its broadcast actually called.

This is a benchmark peer, not a fix of the seed: it is what the project would be
if the seed's one bug (``broadcasr`` defined but never called) were patched and
nothing else changed. Each client gets an OS thread that loops on
``recv(1024)`` and hands every chunk, exactly as received, to a broadcast that
sends it to every other client under one global lock.

Two naive properties are kept on purpose, because they are what the comparison
is about:

* Raw chunks are relayed, not lines. A line whose bytes straddle a 1024-byte
  ``recv`` boundary, or two senders' chunks interleaving, reach readers spliced
  or split; the load generator's correctness check must catch that and report
  this server INVALID for the mode, never as a speed.
* The broadcast holds the lock while it does blocking ``sendall`` calls, so one
  reader that stops reading stalls every sender (the ``slow`` mode shows it).

Two things differ from the seed's text, neither about its design: the welcome is
sent before the client joins the broadcast list (so a reader never sees relayed
bytes before the greeting, which the load generator's handshake relies on), and
the listen backlog is the same 4096 gchat uses, so a 10,000-client connect storm
measures the threading model instead of SYN retries off a 5-slot queue.

Usage: ``python tests/perf/thread_server.py --port 0``; the real address goes to
stderr as ``listening on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading

HOST = "127.0.0.1"
BACKLOG = 4096
WELCOME = b"Welcome to the chatroom!\n"

clients: list[socket.socket] = []
clients_lock = threading.Lock()


def broadcast(msg: bytes, sender: socket.socket) -> None:
    """Send ``msg`` to everyone but ``sender``; a failed client is dropped, as in the seed."""
    with clients_lock:
        for client in list(clients):
            if client is not sender:
                try:
                    client.sendall(msg)
                except OSError:
                    client.close()
                    clients.remove(client)


def handle_client(conn: socket.socket) -> None:
    """The seed's loop: ``recv(1024)`` until EOF, now relaying every chunk as it came."""
    try:
        while True:
            try:
                msg = conn.recv(1024)
            except OSError:
                break
            if not msg:
                break
            broadcast(msg, conn)
    finally:
        with clients_lock:
            if conn in clients:
                clients.remove(conn)
        conn.close()


def serve(port: int) -> None:
    """Accept forever, one daemon thread per client."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen(BACKLOG)
        print(f"listening on {HOST}:{s.getsockname()[1]}", file=sys.stderr, flush=True)
        while True:
            conn, _addr = s.accept()
            try:
                conn.sendall(WELCOME)
            except OSError:
                conn.close()
                continue
            with clients_lock:
                clients.append(conn)
            threading.Thread(target=handle_client, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
