"""What a run was asked to do, and how it is split between worker processes (pure)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

MODES = ("throughput", "latency", "fanout", "slow", "capacity")
PROTOCOLS = ("line", "redis", "irc", "ws")
# Where senders are ordinary room members (clients), not extra publishing connections.
MEMBER_SENDERS = ("line", "irc", "ws")
# IRC: a relayed line is ``:NICK!USER@HOST PRIVMSG ROOM :PAYLOAD`` CRLF in 512
# bytes at most (RFC 2812); this much is kept for the prefix (a nick and a user
# of 16 bytes, a 63-byte host name), so the payload is never cut.
IRC_MESSAGE = 512
IRC_PREFIX = 1 + 16 + 1 + 16 + 1 + 63 + len(" PRIVMSG ") + len(" :") + len("\r\n")


def irc_max_size(room: str) -> int:
    """The largest --size (payload plus its LF) whose PRIVMSG no IRC server has to cut."""
    return IRC_MESSAGE - IRC_PREFIX - len(room.encode()) + 1


@dataclass(frozen=True)
class Options:
    """The command line, resolved: every default filled in for the chosen mode."""

    mode: str
    host: str = "127.0.0.1"
    # Several ports are the nodes of one cluster: connections go round-robin over them.
    ports: tuple[int, ...] = (5000,)
    proto: str = "line"
    room: str = "#lobby"
    size: int = 64
    clients: int = 100
    senders: int = 10
    duration: float = 10.0
    warmup: float = 2.0
    rate: float = 1000.0
    window: int = 64
    sample: int = 8
    procs: int = 1
    timeout: float = 10.0
    batch: int = 500
    messages: int = 20
    # The server's processes (a cluster: every node and its Redis); CPU and memory are their sums.
    pids: tuple[int, ...] = ()
    step: int = 1000
    max_clients: int = 10000
    echo: bool = False
    await_join: bool = False
    json: bool = False
    strict: bool = False


@dataclass(frozen=True)
class Receiver:
    """One receiving connection: its global index and the sender id it sends as, if any."""

    index: int
    own: Optional[int] = None
    sampled: bool = False
    probe: bool = False


@dataclass(frozen=True)
class Plan:
    """One worker process's share of a run (picklable: it is sent to spawned workers)."""

    options: Options
    worker: int
    workers: int
    tokens: tuple[bytes, ...]
    receivers: tuple[Receiver, ...] = ()
    # Senders with a connection of their own (Redis publishers, fan-out and
    # capacity senders); line-protocol stream senders use their receiver's.
    senders: tuple[int, ...] = ()
    # In the whole run, over all workers.
    total_senders: int = 0
    slow_client: bool = False


def port_for(options: Options, index: int) -> int:
    """The port of connection ``index`` (a receiver's index, a sender's id): round-robin over the nodes.

    Line senders are the receivers numbered 0 to senders - 1, so they are
    spread over the nodes like everyone else.
    """
    return options.ports[index % len(options.ports)]


def sender_count(options: Options) -> int:
    return 1 if options.mode == "fanout" else options.senders


def _quota(total: int, worker: int, workers: int) -> int:
    return total // workers + (1 if worker < total % workers else 0)


def _spread(owns: Sequence[Optional[int]], count: int) -> list[int]:
    """``count`` positions to sample, the probe first: spread evenly over the non-senders in join order.

    Non-senders hear everyone, so the probe (the last of them) is one. A server
    fans a line out in some order of its own: samples bunched at one end of the
    room would credit or charge that order, not the server (the compiled load
    generator picks the same positions). Senders make up a sample larger than
    the non-senders.
    """
    hearers = [position for position, own in enumerate(owns) if own is None]
    speakers = [position for position, own in enumerate(owns) if own is not None]
    if count >= len(hearers):
        return hearers[::-1] + speakers[: count - len(hearers)]
    if count == 1:
        return [hearers[-1]]
    last = len(hearers) - 1
    return [hearers[last - j * last // (count - 1)] for j in range(count)]


def make_plans(options: Options, tokens: tuple[bytes, ...]) -> list[Plan]:
    """Spread clients round-robin over the workers; each worker samples its own receivers.

    Every worker gets a probe: a sampled receiver that hears every sender (a
    non-sender where there is one), against which that worker's senders keep
    their window, so no acknowledgement ever crosses processes.
    """
    workers = options.procs
    total_senders = sender_count(options)
    stream = options.mode in ("throughput", "latency", "slow")
    senders_are_clients = stream and options.proto in MEMBER_SENDERS
    plans = []
    for worker in range(workers):
        indices = range(worker, options.clients, workers)
        owns = [index if senders_are_clients and index < total_senders else None for index in indices]
        if senders_are_clients:
            senders: tuple[int, ...] = ()
        elif stream:
            senders = tuple(range(worker, total_senders, workers))
        else:
            senders = tuple(range(total_senders)) if worker == 0 else ()
        sampled = _spread(owns, max(_quota(options.sample, worker, workers), 1))
        probe = sampled[0]
        receivers = tuple(
            Receiver(index, own, sampled=position in sampled, probe=position == probe)
            for position, (index, own) in enumerate(zip(indices, owns))
        )
        plans.append(
            Plan(
                options=options,
                worker=worker,
                workers=workers,
                tokens=tokens,
                receivers=receivers,
                senders=senders,
                total_senders=total_senders,
                slow_client=options.mode == "slow" and worker == 0,
            )
        )
    return plans
