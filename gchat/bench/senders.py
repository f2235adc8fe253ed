"""Sending connections: flat out within a window, or paced on an absolute schedule.

A sender never has more than ``window`` lines that its worker's probe has not
seen: without the bound a fast generator fills every buffer on the way with
lines that cannot be checked before the run ends, and measures queueing instead
of the server. Refilling only once half the window is free sends lines in
batches, one ``sendall`` each.
"""

import socket
import time
from typing import Optional

import gevent
from gevent.lock import Semaphore

from gchat.bench.clients import Protocol
from gchat.bench.message import format_payload
from gchat.bench.receivers import Window
from gchat.bench.stats import Histogram


class Sender:
    """One sender id on one connection."""

    def __init__(
        self,
        sock: socket.socket,
        proto: Protocol,
        ident: int,
        token: bytes,
        size: int,
        window: int,
        timeout: float,
        writing: Semaphore,
    ) -> None:
        self.sock = sock
        # Held for each batch: an IRC receiver answers PINGs on the same socket.
        self.writing = writing
        self.proto = proto
        self.ident = ident
        self.token = token
        self.size = size
        self.window = window
        self.acks = Window()
        self.stall_ns = int(timeout * 1e9)
        self.sent = 0
        self.sent_measured = 0
        self.lag = Histogram()
        self.error: Optional[str] = None

    def _send(self, count: int, now: int) -> bool:
        token, ident, size, first = self.token, self.ident, self.size, self.sent
        payloads = [format_payload(token, ident, seq, now, size) for seq in range(first, first + count)]
        try:
            with self.writing:
                self.sock.sendall(self.proto.frame(payloads))
        except socket.timeout:
            self.error = f"sender {ident}: the server took no data for {self.stall_ns / 1e9:g} s"
            return False
        except OSError as error:
            self.error = f"sender {ident}: send failed: {error}"
            return False
        self.sent += count
        return True

    def _wait_for_window(self, low: int, until: int, state: "list[int]") -> bool:
        """Wait for the probe to see lines until at most ``low`` are in flight, or ``until``.

        ``state`` is [acked at the last progress, time of the last progress];
        False when nothing has been acknowledged for the stall timeout.
        """
        acks = self.acks
        if acks.acked != state[0]:
            state[0], state[1] = acks.acked, time.monotonic_ns()
        acks.wake.clear()
        if self.sent - acks.acked <= low:
            return True
        now = time.monotonic_ns()
        stalled_at = state[1] + self.stall_ns
        if now >= stalled_at:
            self.error = (
                f"sender {self.ident}: none of its last {self.sent - acks.acked} lines reached the probe "
                f"within {self.stall_ns / 1e9:g} s"
            )
            return False
        acks.wake.wait(max(min(until, stalled_at) - now, 0) / 1e9)
        return True

    def flat_out(self, start_ns: int, measure_from: int, measure_to: int) -> None:
        """As fast as the window allows from ``start_ns`` until ``measure_to``."""
        _sleep_until(start_ns)
        window = self.window
        low = window // 2
        state = [0, time.monotonic_ns()]
        while True:
            now = time.monotonic_ns()
            if now >= measure_to:
                return
            in_flight = self.sent - self.acks.acked
            if in_flight > low:
                if not self._wait_for_window(low, measure_to, state):
                    return
                continue
            count = window - in_flight
            if not self._send(count, now):
                return
            if now >= measure_from:
                self.sent_measured += count

    def paced(self, first_ns: int, interval_ns: int, measure_from: int, measure_to: int) -> None:
        """Line k at ``first_ns + k * interval_ns`` until ``measure_to``, on an absolute schedule.

        Sleeping after each send would drift by the time sending takes; a
        schedule does not, and a sender that falls behind (window full, server
        pushing back) catches up in one batch, its lateness recorded as lag.
        """
        window = self.window
        state = [0, time.monotonic_ns()]
        due_ns = first_ns
        while due_ns < measure_to:
            now = time.monotonic_ns()
            if now >= measure_to:
                return
            if now < due_ns:
                gevent.sleep((due_ns - now) / 1e9)
                continue
            room = window - (self.sent - self.acks.acked)
            if room <= 0:
                if not self._wait_for_window(window - 1, measure_to, state):
                    return
                continue
            last_due = min(now, measure_to - 1)
            count = min((last_due - due_ns) // interval_ns + 1, room)
            if not self._send(count, now):
                return
            if now >= measure_from:
                self.sent_measured += count
                for line in range(count):
                    self.lag.record(now - (due_ns + line * interval_ns))
            due_ns += count * interval_ns

    def one(self, seq: int) -> Optional[int]:
        """Send line ``seq`` alone; its send time, or None when the send failed."""
        now = time.monotonic_ns()
        self.sent = seq
        return now if self._send(1, now) else None


def _sleep_until(when_ns: int) -> None:
    delay = when_ns - time.monotonic_ns()
    if delay > 0:
        gevent.sleep(delay / 1e9)
