"""One client's output (the design card's per-client queue) and the shared once-per-turn flush.

``Output`` is the hub's ``Mailbox`` for one connection: ``deliver`` only
appends to a list, so a sender never waits on a recipient's socket, and it
never re-enters the hub. Everything delivered during one loop iteration goes
out with one non-blocking ``send`` per client when the shared ``Flusher``
runs. What the kernel does not take is the backlog; only then does the output
get a writer greenlet, which waits on the socket, pushes the backlog out and
exits. A line to a client that keeps up costs no greenlet switch at all.

A room's lines reach its clients through a ``Chorus`` (the chat's audience of
one style in one room). The first line of a loop turn is a ``Broadcast``:
the clients with nothing pending (the common case) are listed, not
delivered it one by one, and the flush sends it to all of them in one
C-level loop of ``send`` calls, ahead of everything else of that turn (see
``Broadcast`` for why each client's order still holds); the others get it
delivered as above. At 1,000 lines/s into 100 clients, where nothing
batches, a ``deliver`` and a ``flush`` per recipient were most of gchat's
CPU beyond the kernel's (tests/perf/flush_cost.py: 0.86 µs of user CPU a
delivery, 0.26 with the broadcast). From the turn's second line on, the
lone line becomes an ordinary delivery again, and the turn's lines go into
one shared ``Turn``; each client holds a share of it (a range of its lines):
the turn itself in its pending list as a placeholder, in order with
everything else delivered to it, and the range in the turn's own lists.
When the turn closes (the flush), the lines are joined once, every client
that sent none of them is sent that one ``bytes`` object, and each
placeholder becomes its bytes: a burst of lines costs each recipient one
share a turn, not one delivery a line, which is what a fan-out spent most of
its time on (see tests/perf/README.md).

A share is no object of its own, on purpose: it lives until the flush, so
one object per recipient of every shared turn outlived the collector's young
generations and was promoted to the oldest, and each time such survivors
added up to a quarter of the heap CPython ran a full collection, which walks
every client's objects (at 5,000 clients, 45 to 70 ms of CPU every 3 s at
100 lines/s: the capacity scenario's erratic reach times, tests/perf/README.md).

A client that reads too slowly is cut off (``SLOW_CONSUMER``) as soon as more
than ``--max-backlog`` bytes wait for it; the connection's lifecycle (see
``gchat.lifecycle``) decides whether output is accepted and whether a FIN
follows it.
"""

import _socket
import logging
import socket
from itertools import repeat
from typing import TYPE_CHECKING, Any, Optional, Union, cast

import gevent
from gevent.socket import socket as GreenSocket
from gevent.socket import wait_write

from gchat.lifecycle import FIN_AFTER_OUTPUT, GONE, OPEN
from gchat.reasons import CLOSED, SERVER_ERROR, SLOW_CONSUMER

if TYPE_CHECKING:
    from gchat.chat import Client
    from gchat.connection import Connection

log = logging.getLogger("gchat")


class Flusher:
    """Outputs with something pending, flushed together once per loop iteration.

    The flush is a loop callback scheduled by the first delivery, so it runs
    after every greenlet that was ready in this iteration (readers with a
    chunk of input, handlers of connections just accepted) has had its turn:
    a burst of lines or of join notices costs one ``send`` per recipient, not
    one per line, as in Redis's event loop. It first sends the iteration's
    broadcasts, then closes its shared turns, then flushes. One output whose flush fails (a bug, never a
    socket error: those abort in ``Output.flush``) is aborted alone; the
    others flush all the same, or they would never be marked again.
    """

    __slots__ = ("_broadcasts", "_dirty", "_dropped", "_scheduled", "_turns", "generation")

    def __init__(self) -> None:
        self._dirty: list[Output] = []
        self._turns: list[Turn] = []
        self._broadcasts: list[Broadcast] = []
        # Outputs dropped while broadcasts were owed to them (or being sent): they are sent none.
        self._dropped: set[Output] = set()
        self._scheduled = False
        # Counts flushes: an audience tells by it whether it sent a line in this loop turn.
        self.generation = 0

    def mark(self, output: "Output") -> None:
        # Once per recipient of every line: the flush is already scheduled but for the first.
        if not self._scheduled:
            self._schedule()
        self._dirty.append(output)

    def turn(self) -> "Turn":
        """A new shared turn, closed at the next flush."""
        self._schedule()
        turn = Turn()
        self._turns.append(turn)
        return turn

    def broadcast(self, data: bytes, outputs: "list[Output]") -> "Broadcast":
        """``data`` to ``outputs`` (none of which has anything pending) at the flush, before all else."""
        self._schedule()
        broadcast = Broadcast(data, outputs)
        self._broadcasts.append(broadcast)
        return broadcast

    @property
    def owing(self) -> bool:
        """Whether broadcasts wait for the flush: an output may then owe more than it holds."""
        return bool(self._broadcasts)

    def materialize(self, first: "Broadcast") -> None:
        """``first`` and every later broadcast become ordinary pending bytes, first in each output.

        For the lone line's chorus opened a shared turn: the line then goes
        out in the same ``send`` as the turn's (one per client a turn, as a
        burst needs). Later broadcasts follow it because an output in both
        owes them in that order ahead of anything it holds; earlier ones are
        still sent first, at the flush.
        """
        broadcasts = self._broadcasts
        try:
            index = broadcasts.index(first)
        except ValueError:
            return  # already sent
        later = broadcasts[index:]
        del broadcasts[index:]
        ahead: dict[Output, int] = {}
        for broadcast in later:
            data = broadcast.data
            for output in broadcast.outputs:
                position = ahead.get(output, 0)
                output.precede(data, position)
                ahead[output] = position + 1

    def forget(self, output: "Output") -> None:
        """``output`` was dropped: a broadcast owed to it is not sent."""
        if self._broadcasts:  # still set while they are being sent (see flush)
            self._dropped.add(output)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self.generation += 1
        broadcasts = self._broadcasts
        if broadcasts:
            try:
                self._send(broadcasts)
            except Exception:
                log.exception("broadcast: internal error")
            finally:
                # Only now: an output dropped while sending (a failed send) is forgotten too.
                self._broadcasts = []
                self._dropped = set()
        turns = self._turns
        if turns:
            self._turns = []
            for turn in turns:
                turn.close()
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for output in dirty:
                try:
                    output.flush()
                except Exception:
                    output.failed()

    def _send(self, broadcasts: "list[Broadcast]") -> None:
        """Each broadcast to its outputs, in order, one C-level loop of ``send`` calls each.

        An output the kernel did not take a whole broadcast from holds the
        rest of it, and of every later one, ahead of its pending bytes, and
        gets a writer.
        """
        dropped = self._dropped
        stalled: dict[Output, list[bytes]] = {}
        for broadcast in broadcasts:
            data = broadcast.data
            outputs = broadcast.outputs
            broadcast.outputs = []
            if dropped or stalled:
                for output in outputs:
                    if output in stalled:
                        stalled[output].append(data)
                outputs = [o for o in outputs if o not in dropped and o not in stalled]
            # A fit output's socket is a plain one (see Output._fit).
            raws = cast("list[_socket.socket]", [output._raw for output in outputs])
            sends = map(_SEND, raws, repeat(data))
            sent: list[int] = []
            while True:
                try:
                    sent.extend(sends)
                    break
                except BlockingIOError:
                    sent.append(0)
                except OSError:
                    sent.append(-1)
            size = len(data)
            if sent.count(size) == len(sent):
                continue
            for output, count in zip(outputs, sent):
                if count < 0:
                    output._connection.abort(CLOSED)
                elif count < size:
                    stalled[output] = [data[count:]]
        for output, parts in stalled.items():
            if output not in dropped:
                output.stall(b"".join(parts))


class Broadcast:
    """A line alone in its loop turn, owed to the outputs of its chorus that had nothing pending.

    Sending it at the flush, before every output's pending bytes, keeps each
    client's order: an output is listed only if nothing was pending for it
    (nor a writer busy, nor its connection closing) when the line was said,
    so whatever it holds at the flush came later. What could break that is
    handled where it happens: a dropped output is sent nothing
    (``Flusher.forget``), a closing one waits for the flush to send its FIN
    (``Output.stop``), the reader's own flush waits for it (``Output.flush_now``),
    and a chorus that opens a shared turn makes its broadcast ordinary bytes
    again (``Flusher.materialize``). One object a line, not one a recipient.
    """

    __slots__ = ("data", "outputs")

    def __init__(self, data: bytes, outputs: "list[Output]") -> None:
        self.data = data
        self.outputs = outputs


class Turn:
    """One loop turn's lines to one audience, rendered once and shared by its clients.

    Lines are added as the chat sends them; share ``i`` (a number, see the
    module's docstring) is lines ``starts[i]`` to ``ends[i]`` (None: to the
    close) for ``outputs[i]``, whose placeholder is at its pending position
    ``slots[i]``. Closing the turn makes each share bytes: the whole turn,
    joined once, for every client that sent none of its lines; the share's
    range without the client's own lines for the others.
    """

    __slots__ = ("ends", "lines", "open", "outputs", "senders", "slots", "starts")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        # Who sent each line (it is not sent its own), None for news from no client.
        self.senders: list[Optional[Output]] = []
        self.outputs: list[Output] = []
        self.starts: list[int] = []
        self.ends: list[Optional[int]] = []
        self.slots: list[int] = []
        self.open = True

    def add(self, data: bytes, sender: "Optional[Output]") -> None:
        self.lines.append(data)
        self.senders.append(sender)

    def share(self, output: "Output", slot: int) -> int:
        """A new share for ``output`` from the next line on, its placeholder at ``slot``: its number."""
        self.outputs.append(output)
        self.starts.append(len(self.lines))
        self.ends.append(None)
        self.slots.append(slot)
        return len(self.outputs) - 1

    def end(self, share: int) -> None:
        """Share ``share`` takes no later line."""
        self.ends[share] = len(self.lines)

    def close(self) -> None:
        self.open = False
        lines, senders = self.lines, self.senders
        count = len(lines)
        own = set(senders)
        whole: Optional[bytes] = None
        for output, start, end, slot in zip(self.outputs, self.starts, self.ends, self.slots):
            if end is None:
                end = count
            if start == 0 and end == count and output not in own:
                if whole is None:
                    whole = b"".join(lines)
                output.owe(self, slot, whole, count)
                continue
            picked = lines[start:end]
            if output in own:
                picked = [line for line, sender in zip(picked, senders[start:end]) if sender is not output]
            output.owe(self, slot, b"".join(picked), len(picked))
        self.lines, self.senders = [], []
        self.outputs, self.starts, self.ends, self.slots = [], [], [], []


class Chorus:
    """The clients of one style in one room (the chat's ``Audience``), sharing each loop turn's lines.

    A line alone in its loop turn is a ``Broadcast`` to the clients with
    nothing pending, and delivered to the others; from a turn's second line
    on, the lines go into a shared ``Turn``.
    """

    __slots__ = ("_flusher", "_generation", "_lone", "_turn", "clients")

    def __init__(self, flusher: Flusher) -> None:
        # Each client's output, for one pass over them without a lookup a client.
        self.clients: dict[Client, Output] = {}
        self._flusher = flusher
        self._turn: Optional[Turn] = None
        # The broadcast of the line alone in its turn so far, until the flush sends it.
        self._lone: Optional[Broadcast] = None
        # The flush generation in which a line was last sent alone.
        self._generation = -1

    def add(self, client: "Client") -> None:
        output = self.clients[client] = _output(client)
        turn = self._turn
        if turn is not None and turn.open:
            output.subscribe(turn)

    def discard(self, client: "Client") -> None:
        output = self.clients.pop(client)
        turn = self._turn
        if turn is not None and turn.open:
            output.unsubscribe(turn)

    def send(self, data: bytes, sender: "Optional[Client]") -> None:
        turn = self._turn
        if turn is None or not turn.open:
            flusher = self._flusher
            generation = flusher.generation
            if self._generation != generation:
                self._generation = generation
                self._lone = self._alone(data, sender)
                return
            turn = self._turn = flusher.turn()
            lone = self._lone
            if lone is not None:
                self._lone = None
                flusher.materialize(lone)
            for output in self.clients.values():
                output.subscribe(turn)
        turn.add(data, None if sender is None else _output(sender))

    def _alone(self, data: bytes, sender: "Optional[Client]") -> "Optional[Broadcast]":
        """The turn's first line: a broadcast to every client with nothing pending, delivered to the rest."""
        outputs = self.clients.values()
        own = None if sender is None else self.clients.get(sender)
        # By identity: list.remove compared outputs one by one, about 2 µs a line in a room of 100.
        fit = [output for output in outputs if output._fit and output is not own]
        if len(fit) + (own is not None) < len(outputs):
            for output in outputs:
                if not output._fit and output is not own:
                    output.deliver(data)
        return self._flusher.broadcast(data, fit) if fit else None


def plain_socket(sock: Any) -> "Optional[_socket.socket]":
    """The C socket inside gevent's plain TCP socket, to send to without gevent's Python wrapper.

    gevent keeps that socket non-blocking, so its ``send`` takes what the
    kernel takes or raises ``BlockingIOError``, which is all a flush asks; the
    wrapper only adds a Python call to every delivery. With the lone line's
    shortcut in ``flush`` (and ``deliver`` marking with fewer calls), it took
    a line alone in its loop turn from 1.5 to 1.1 µs of user CPU a delivery
    (tests/perf/flush_cost.py). Anything else (a TLS socket, a metering
    wrapper) is sent to through its own ``send``. After gevent closes the socket the C
    socket is closed too (descriptor -1), so a stale send fails, never
    reaching a descriptor reused by another client.
    """
    raw = getattr(sock, "_sock", None)
    if type(sock) is GreenSocket and isinstance(raw, _socket.socket):
        return raw
    return None


_SEND = _socket.socket.send


def _output(client: "Client") -> "Output":
    return cast(Output, client.mailbox)


class Output:
    """The per-client queue; implements the hub's ``Mailbox``."""

    __slots__ = (
        "_backlog",
        "_base",
        "_connection",
        "_dirty",
        "_fit",
        "_flusher",
        "_max_backlog",
        "_open",
        "_pending",
        "_raw",
        "_sock",
        "_writer",
    )

    def __init__(self, connection: "Connection", sock: Any, flusher: Flusher, max_backlog: int) -> None:
        self._connection = connection
        self._sock = sock
        self._raw = plain_socket(sock)
        self._flusher = flusher
        self._max_backlog = max_backlog
        # What the client is owed, in order: bytes, and (placeholders of its shares) open turns.
        self._pending: list[Union[bytes, Turn]] = []
        # The position of _pending[0] among all items ever pending: a share's slot less this is its index.
        self._base = 0
        # The share of each open turn that its next lines go to.
        self._open: dict[Turn, int] = {}
        # Bytes delivered (shares once their turn closed) but not yet taken by the kernel.
        self._backlog = 0
        self._dirty = False
        self._writer: Optional[gevent.Greenlet] = None
        # Whether a broadcast may be sent to it at the flush, ahead of its pending bytes: open,
        # a plain socket, nothing pending, no writer (see Broadcast).
        self._fit = self._raw is not None

    def deliver(self, data: bytes) -> None:
        if self._connection.state is not OPEN:
            return
        backlog = self._backlog + len(data)
        self._backlog = backlog
        if backlog > self._max_backlog:
            self._connection.abort(SLOW_CONSUMER)
            return
        if not self._dirty and self._writer is None:
            self._mark()
        self._pending.append(data)
        if self._open:
            # Later lines of open turns come after these bytes: each share ends here, and goes on after.
            for turn, share in list(self._open.items()):
                turn.end(share)
                self._take_share(turn)

    def subscribe(self, turn: Turn) -> None:
        """From now until it closes, ``turn``'s lines are the client's (but its own)."""
        if self._connection.state is not OPEN:
            return
        if not self._dirty and self._writer is None:
            self._mark()
        self._take_share(turn)

    def unsubscribe(self, turn: Turn) -> None:
        """``turn``'s later lines are not the client's (it left the room or changed style)."""
        share = self._open.pop(turn, None)
        if share is not None:
            turn.end(share)

    def owe(self, turn: Turn, slot: int, data: bytes, lines: int) -> None:
        """``turn`` closed: the client is owed ``data``, ``lines`` lines, at its share's ``slot``."""
        self._open.pop(turn, None)
        if self._connection.state in GONE:
            return
        self._pending[slot - self._base] = data
        self._take(data)

    def _take(self, data: bytes) -> None:
        """``data`` is pending now: counted, and flushed."""
        backlog = self._backlog + len(data)
        self._backlog = backlog
        if backlog > self._max_backlog:
            self._connection.abort(SLOW_CONSUMER)
        elif not self._dirty and self._writer is None:
            self._mark()

    def stop(self) -> None:
        """No more lines of open turns: the connection is closing.

        A broadcast owed to it still goes out first: the FIN waits for the flush.
        """
        self._fit = False
        for turn, share in self._open.items():
            turn.end(share)
        self._open.clear()
        if self._flusher.owing and not self._dirty and self._writer is None:
            self._mark()

    def precede(self, data: bytes, position: int) -> None:
        """A broadcast owed to it becomes bytes at ``position`` (see ``Flusher.materialize``)."""
        if self._connection.state in GONE:
            return
        self._pending.insert(position, data)
        # Inserted ahead of every item already pending: their slots stay.
        self._base -= 1
        self._take(data)

    def stall(self, data: bytes) -> None:
        """The kernel did not take all its broadcasts: ``data`` is the rest, ahead of all else."""
        self.precede(data, 0)
        if self._connection.state not in GONE:
            self._fit = False
            self._writer = gevent.spawn(self._write_backlog)

    def _take_share(self, turn: Turn) -> None:
        pending = self._pending
        self._open[turn] = turn.share(self, self._base + len(pending))
        pending.append(turn)

    def _mark(self) -> None:
        self._dirty = True
        self._fit = False
        self._flusher.mark(self)

    def _ready(self) -> bytes:
        """Take what can be sent now: everything pending up to a share of a turn still open."""
        pending = self._pending
        taken = 0
        for item in pending:
            if type(item) is Turn:
                break
            taken += 1
        parts = pending[:taken]
        del pending[:taken]
        self._base += taken
        return b"".join(parts)  # type: ignore[arg-type]

    def close(self) -> None:
        """No more output after what is pending; then a FIN."""
        self._connection.close()

    @property
    def queued(self) -> int:
        """Bytes delivered for the client that the kernel has not taken yet."""
        return self._backlog

    def written(self) -> bool:
        """Whether every byte delivered is in the kernel (a broadcast waiting to be sent may be its)."""
        return self._writer is None and not self._pending and not self._flusher.owing

    def flush(self) -> None:
        """Try to hand everything pending to the kernel now, without waiting.

        Runs in the flusher, in the event loop's greenlet, so it must never
        block: the part the kernel refuses goes to a writer.
        """
        self._dirty = False
        if self._writer is not None:
            return
        pending = self._pending
        if not pending:
            self._settled()
            return
        data = pending[0]
        if len(pending) == 1 and type(data) is bytes:
            # A line alone in its loop turn, the common case, without _ready's scan and join.
            pending.clear()
            self._base += 1
        else:
            data = self._ready()
        sent = 0
        if data:
            try:
                raw = self._raw
                sent = raw.send(data) if raw is not None else self._sock.send(data, 0, timeout=0.0)
            except BlockingIOError:
                pass
            except OSError:
                self._connection.abort(CLOSED)
                return
            self._backlog -= sent
        if sent < len(data):
            pending.insert(0, data[sent:])
            self._base -= 1
            self._writer = gevent.spawn(self._write_backlog)
        elif not pending:
            self._settled()

    def flush_now(self) -> None:
        """``flush`` from outside the flusher (the reader, as it lingers).

        While broadcasts wait it leaves everything to the flusher instead: a
        broadcast owed to this client goes out first.
        """
        if not self._flusher.owing:
            self.flush()
        elif not self._dirty and self._writer is None:
            self._mark()

    def _settled(self) -> None:
        """Everything is in the kernel: a FIN if the connection is closing, else fit for broadcasts."""
        state = self._connection.state
        if state is OPEN:
            self._fit = self._raw is not None
        elif state in FIN_AFTER_OUTPUT:
            self.finish()

    def failed(self) -> None:
        """A flush raised: a bug, logged; this connection alone is dropped."""
        log.exception("%s: internal error", self._connection.peer)
        self._connection.abort(SERVER_ERROR)

    def finish(self) -> None:
        """The FIN after the last byte (call once ``written``)."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._connection.abort(CLOSED)

    def drop(self) -> None:
        """Forget everything queued and stop the writer: nothing more is owed."""
        self._fit = False
        self._flusher.forget(self)
        self._base += len(self._pending)
        self._pending.clear()
        self._open.clear()
        self._backlog = 0
        writer = self._writer
        if writer is not None:
            self._writer = None
            if writer is not gevent.getcurrent():
                writer.kill(block=False)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the writer, if any, to push the backlog out."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout)

    def _write_backlog(self) -> None:
        """Push the backlog out, waiting on the socket as long as it takes; then exit.

        What waits for a turn still open is left for the flush that closes it.
        """
        sock = self._sock
        fileno = sock.fileno()
        try:
            while True:
                data = memoryview(self._ready())
                if not data:
                    break
                while data:
                    # The socket is non-blocking (timeout 0) for the reader's
                    # sake, so wait for room explicitly, for as long as it takes.
                    wait_write(fileno)
                    try:
                        sent = sock.send(data, 0, timeout=0.0)
                    except BlockingIOError:
                        continue
                    self._backlog -= sent
                    data = data[sent:]
            self._writer = None
            if not self._pending and not self._dirty:
                self._settled()
        except OSError:
            self._connection.abort(CLOSED)
