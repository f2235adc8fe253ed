"""Make room for as many connections as the process may have open files."""

import resource

# Descriptors that are not client connections: stdio, the listener, the event
# loop's own, and connections being refused while the server is full.
RESERVED_FDS = 64


def fit_open_files(max_clients: int) -> int:
    """Raise the soft open-files limit to the hard one; return how many clients fit.

    The result is ``max_clients`` when the limit allows it, else the largest
    number that leaves ``RESERVED_FDS`` descriptors spare (at least 1).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_clients + RESERVED_FDS
    if hard == resource.RLIM_INFINITY:
        target = max(soft, wanted) if soft != resource.RLIM_INFINITY else soft
    else:
        target = hard
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or wanted <= soft:
        return max_clients
    return max(soft - RESERVED_FDS, 1)
