"""User CPU a delivery costs when a line is alone in its loop turn: the latency scenario's case.

At 1,000 lines/s into 100 clients nothing batches: every line is one
``Chorus.send`` to each member and one ``send`` per member at the flush, and the
kernel's part of each ``send`` is the same for every server. What gchat adds is
the Python around it, which this measures in-process over socketpairs, with no
load generator to share the core with: user CPU (getrusage) per delivery,
the peers' reading left out. Run it pinned, against two trees to compare:

    taskset -c 0 python tests/perf/flush_cost.py [--tree DIR] [--rounds N]
"""

import argparse
import resource
import socket
import sys

MEMBERS = 100
LINE = b"<guest1> " + b"x" * 54 + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=".", help="the gchat checkout to measure (default: .)")
    parser.add_argument("--rounds", type=int, default=5000, help="lines per repetition (5000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions; the median is printed last (5)")
    options = parser.parse_args()
    sys.path.insert(0, options.tree)

    import gevent.socket

    from gchat.lifecycle import OPEN
    from gchat.output import Chorus, Flusher, Output

    class Connection:
        """What an Output asks of its connection: its state, and an abort that must not come."""

        state = OPEN
        peer = "bench"

        def abort(self, reason: str) -> None:
            raise SystemExit(f"aborted: {reason}")

    class Member:
        __slots__ = ("mailbox",)

    flusher = Flusher()
    chorus = Chorus(flusher)
    peers = []
    for _ in range(MEMBERS):
        ours, theirs = gevent.socket.socketpair()
        ours.settimeout(0.0)
        theirs.settimeout(0.0)  # drain() reads until the kernel has nothing more
        member = Member()
        member.mailbox = Output(Connection(), ours, flusher, 1 << 30)  # type: ignore[arg-type]
        chorus.add(member)  # type: ignore[arg-type]
        peers.append(theirs)

    def drain() -> float:
        """Read what the members were sent; return the user CPU it took, to leave out."""
        before = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        for peer in peers:
            try:
                while peer.recv(1 << 20, socket.MSG_DONTWAIT):
                    pass
            except BlockingIOError:
                pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_utime - before

    figures = []
    for _ in range(options.repeat):
        reading = 0.0
        start = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        for line in range(options.rounds):
            chorus.send(LINE, None)
            flusher.flush()
            if line % 200 == 199:
                reading += drain()
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - start - reading
        figures.append(user / (options.rounds * MEMBERS) * 1e6)
        print(f"user CPU a delivery: {figures[-1]:.3f} us")
    print(f"median: {sorted(figures)[len(figures) // 2]:.3f} us")


if __name__ == "__main__":
    main()
