"""``python -m gchat.bench``: flags in, a report out, and an exit status a script can trust.

0: the run completed (and with ``--strict``, every check passed); 1: an error
(no connection, the server closed or stalled, a worker died) or, with
``--strict``, a failed check; 2: bad arguments, in one line.
"""

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Callable, NoReturn, Optional

from gchat.bench.message import MIN_SIZE, new_token
from gchat.bench.options import MEMBER_SENDERS, MODES, PROTOCOLS, Options, irc_max_size, make_plans
from gchat.bench.report import build, to_json, to_text, warnings

EPILOG = """\
modes:
  throughput  --senders send as fast as --window allows to --clients in one room
  latency     the same at a fixed --rate (lines/s in all); latency percentiles
  fanout      --clients idle clients, then --messages lines one at a time,
              each once the last reached everyone; time-to-reach-all, RSS (--pid)
  slow        the latency workload without, then with, a client that never reads
  capacity    4 senders into a room growing by --step to --max-clients, until
              the p95 time-to-reach-all passes 500 ms

A cluster (gchat --bus): --port 5001,5002,5003 --await-join --pid NODE,NODE,NODE,REDIS
spreads clients and senders round-robin over the nodes, all in one room.
IRC (--proto irc): each client registers as benchN (a sender with a connection
of its own as benchNs), JOINs --room and answers PINGs; senders PRIVMSG the room.
A line is '~gb~TOKEN SENDER SEQ SENT_NS ....' padded to --size bytes.
Exit status: 0 done; 1 an error (no connection, server closed or stalled),
or with --strict a failed check; 2 bad arguments.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gchat.bench: error: {message}\n")


def _number(kind: Callable[[str], float], low: float, what: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (value >= low and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {what} of at least {low:g}")
        return value

    return convert


def _whole(low: int) -> Callable[[str], int]:
    convert = _number(int, low, "a whole number")
    return lambda text: int(convert(text))


def _seconds(low: float = 0.0) -> Callable[[str], float]:
    return _number(float, low, "a number")


def _wholes(low: int) -> Callable[[str], "tuple[int, ...]"]:
    """A comma-separated list of whole numbers, each at least ``low``."""
    convert = _whole(low)
    return lambda text: tuple(convert(item) for item in text.split(","))


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m gchat.bench",
        description="Load generator for line-based chat servers (and Redis pub/sub), checking every "
        "sampled line for loss, duplication, reordering and damage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", choices=MODES, help="the workload")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_wholes(1),
        default=(5000,),
        help="server port (default 5000); PORT,PORT,...: a cluster's nodes, clients spread round-robin",
    )
    p.add_argument(
        "--proto",
        choices=PROTOCOLS,
        default="line",
        help="line (default), redis pub/sub, or irc (clients register as benchN and JOIN --room)",
    )
    p.add_argument("--room", default="#lobby", help="room, Redis or IRC channel (default #lobby)")
    p.add_argument(
        "--size", type=_whole(MIN_SIZE), default=64, help="bytes per line, LF included (default 64)"
    )
    p.add_argument("--clients", type=_whole(1), help="receiving clients (default 100; fanout 1000)")
    p.add_argument(
        "--senders",
        type=_whole(1),
        help="senders (default 10; capacity 4). Line, irc: among the clients; redis: extra publishers",
    )
    p.add_argument("--duration", type=_seconds(0.1), default=10.0, help="measured seconds (default 10)")
    p.add_argument("--warmup", type=_seconds(), default=2.0, help="seconds before measuring (default 2)")
    p.add_argument(
        "--rate", type=_seconds(0.001), default=1000.0, help="latency, slow: lines/s in all (1000)"
    )
    p.add_argument("--window", type=_whole(1), default=64, help="lines a sender may have in flight (64)")
    p.add_argument("--sample", type=_whole(1), default=8, help="receivers whose every line is checked (8)")
    p.add_argument("--procs", type=_whole(1), default=1, help="generator processes (default 1)")
    p.add_argument("--timeout", type=_seconds(0.1), default=10.0, help="bound on every wait, seconds (10)")
    p.add_argument("--batch", type=_whole(1), default=500, help="connections opened at once (default 500)")
    p.add_argument("--messages", type=_whole(1), default=20, help="fanout, capacity: lines per sender (20)")
    p.add_argument(
        "--pid",
        type=_wholes(1),
        default=(),
        help="the server's pid: its CPU use, and in fanout its memory; PID,PID,...: their sums",
    )
    p.add_argument("--step", type=_whole(1), default=1000, help="capacity: clients added per step (1000)")
    p.add_argument("--max-clients", type=_whole(1), default=10000, help="capacity: largest room (10000)")
    p.add_argument("--echo", action="store_true", help="the server echoes a sender's lines to itself")
    p.add_argument(
        "--await-join",
        action="store_true",
        help="line protocol: a client is ready at the first line naming its room, not at the welcome "
        "(a gchat cluster node confirms a join once it is back from the bus)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check fails")
    return p


def parse(argv: Optional[Sequence[str]] = None) -> Options:
    p = parser()
    args = p.parse_args(argv)
    mode = args.mode
    clients = args.clients if args.clients is not None else (1000 if mode == "fanout" else 100)
    senders = args.senders if args.senders is not None else (4 if mode == "capacity" else 10)
    options = Options(
        mode=mode,
        host=args.host,
        ports=args.port,
        proto=args.proto,
        room=args.room,
        size=args.size,
        clients=clients,
        senders=senders if mode != "fanout" else 1,
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        window=args.window,
        sample=args.sample,
        procs=args.procs,
        timeout=args.timeout,
        batch=args.batch,
        messages=args.messages,
        pids=args.pid,
        step=args.step,
        max_clients=args.max_clients,
        echo=args.echo,
        await_join=args.await_join,
        json=args.json,
        strict=args.strict,
    )
    problem = _problem(options)
    if problem:
        p.error(problem)
    return options


def _problem(options: Options) -> Optional[str]:
    """What makes these options unrunnable, if anything."""
    stream = options.mode in ("throughput", "latency", "slow")
    if options.await_join and options.proto != "line":
        return "--await-join is for the line protocol (a SUBSCRIBE or an IRC JOIN is confirmed anyway)"
    if options.proto == "irc" and options.size > irc_max_size(options.room):
        return (
            f"--size {options.size} does not fit an IRC message with --room {options.room}:"
            f" at most {irc_max_size(options.room)}"
        )
    if options.mode == "capacity":
        if options.procs > 1:
            return "capacity runs in one process: drop --procs"
        if options.senders > 10:
            return "capacity takes at most 10 senders"
        return None
    if options.clients < options.procs:
        return f"--clients {options.clients} is fewer than --procs {options.procs}"
    if stream and options.proto in MEMBER_SENDERS:
        if options.senders > options.clients:
            return (
                f"--senders {options.senders} exceeds --clients {options.clients}"
                f" ({options.proto} senders are clients)"
            )
        if not options.echo and options.clients - options.senders < options.procs:
            return "each process needs a client that is not a sender (it hears every sender): add clients"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parse(argv)
    tokens = (new_token(), new_token())
    plans = make_plans(options, tokens)
    try:
        if options.procs == 1:
            from gchat.bench.modes import run_worker
            from gchat.bench.procs import Solo

            phases = run_worker(plans[0], Solo())
            errors: list[str] = []
        else:
            from gchat.bench.modes import run_worker
            from gchat.bench.procs import run_workers
            from gchat.bench.results import merge_phases

            budget = (
                options.warmup
                + options.duration
                + (2 * math.ceil(options.clients / options.batch) + 6) * (options.timeout)
            )
            finished, errors = run_workers(plans, run_worker, budget)
            phases = merge_phases(finished) if finished else []
            if finished and len(finished) < len(plans):
                errors.append(f"only {len(finished)} of {len(plans)} worker processes finished")
    except KeyboardInterrupt:
        print("gchat.bench: interrupted", file=sys.stderr)
        return 130
    report = build(options, phases, errors)
    if options.json:
        print(to_json(report))
        for line in warnings(report):
            print(f"gchat.bench: warning: {line}", file=sys.stderr)
        if report["failures"]:
            print("gchat.bench: CHECKS FAILED: " + "; ".join(report["failures"]), file=sys.stderr)
        for error in report["errors"]:
            print(f"gchat.bench: error: {error}", file=sys.stderr)
    else:
        print(to_text(report))
    sys.stdout.flush()
    if report["errors"] or (options.strict and report["failures"]):
        return 1
    return 0
