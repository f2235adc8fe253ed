"""The asyncio-streams chat server a Python developer would write instead of gchat.

This is a benchmark peer: the idiomatic standard-library answer to "a chat server
in Python", so that gchat's numbers are compared with what one would get for free
without gevent. It is written the way the asyncio docs and most tutorials write
it, with their trade-offs left in:

* ``asyncio.start_server``, one coroutine per client, ``async for line in
  reader`` (``readline`` under the hood, 64 KiB line limit).
* Chat lines go to every other client as ``<guestN> TEXT``, no echo, like gchat's
  wire format, encoded once per message.
* The broadcast calls ``writer.write`` on every recipient and awaits nothing: a
  typical developer does not ``await drain()`` per recipient inside a loop (it
  would make one slow reader stall the sender), so a reader that stops reading
  makes the server buffer for it without bound (the ``slow`` mode shows it).

No commands, nicks, rooms or sanitizing: this is the floor for the transport
and fan-out, not a feature-equal server. The listen backlog is gchat's 4096 so
a connect storm measures the event loop, not SYN retries.

Usage: ``python tests/perf/asyncio_server.py --port 0``; the real address goes to
stderr as ``listening on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys

HOST = "127.0.0.1"
BACKLOG = 4096
WELCOME = b"Welcome to the chatroom!\n"

writers: set[asyncio.StreamWriter] = set()
guest_numbers = itertools.count(1)


def broadcast(msg: bytes, sender: asyncio.StreamWriter) -> None:
    """Queue ``msg`` on every other client's transport; never waits."""
    for writer in writers:
        if writer is not sender:
            writer.write(msg)


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet, then relay every line as ``<guestN> TEXT`` until the client goes."""
    nick = f"guest{next(guest_numbers)}"
    writer.write(WELCOME)
    writers.add(writer)
    try:
        async for line in reader:
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.strip():
                broadcast(f"<{nick}> {text}\n".encode(), writer)
    except (ConnectionError, ValueError):
        # A reset, or a line over the StreamReader limit: drop the client.
        pass
    finally:
        writers.discard(writer)
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(handle_client, HOST, port, backlog=BACKLOG)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {HOST}:{bound}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
