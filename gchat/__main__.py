# gevent's patches first, before gchat's modules import socket or threading: the
# Redis client (with --bus) then waits in greenlets, never blocking the server.
import functools
import importlib.metadata
from typing import Any

from gevent import monkey

# patch_all offers each of its 25 or so steps to gevent plugins, and each offer reads
# every installed package's metadata again (importlib.metadata.entry_points): about a
# fifth of the server's start-up. What is installed cannot change meanwhile, so it is
# read once; plugins are still offered every step.
_entry_points = importlib.metadata.entry_points
_every_entry_point = functools.lru_cache(maxsize=None)(_entry_points)


def _entry_points_read_once(**selection: str) -> Any:
    every = _every_entry_point()
    return every.select(**selection) if selection else every


importlib.metadata.entry_points = _entry_points_read_once  # type: ignore[assignment]  # for patch_all only
try:
    monkey.patch_all()
finally:
    importlib.metadata.entry_points = _entry_points

import sys  # noqa: E402

from gchat.cli import main  # noqa: E402

try:
    sys.exit(main())
except KeyboardInterrupt:
    # Only reachable before the signal handlers are installed (e.g. during import).
    sys.exit(130)
