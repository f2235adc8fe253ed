"""Make room for as many connections as the process may have open files."""

import resource

# Descriptors that are not client connections: stdio, the listeners, the event
# loop's own, Redis, TLS handshakes that deliver a refusal (server.TLS_REFUSALS)
# and metrics connections (metrics.SCRAPERS).
RESERVED_FDS = 64


def raise_open_files(wanted: int = 0) -> int:
    """Raise the soft open-files limit to the hard one; return the soft limit now.

    Without a hard limit, raise it to ``wanted`` (unlimited is not a value the
    kernel accepts for open files). Children inherit the result.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted) if hard == resource.RLIM_INFINITY else hard
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fit_open_files(max_clients: int) -> int:
    """Raise the open-files limit; return how many clients fit under it.

    The result is ``max_clients`` when the limit allows it, else the largest
    number that leaves ``RESERVED_FDS`` descriptors spare (at least 1).
    """
    wanted = max_clients + RESERVED_FDS
    soft = raise_open_files(wanted)
    if soft == resource.RLIM_INFINITY or wanted <= soft:
        return max_clients
    return max(soft - RESERVED_FDS, 1)
