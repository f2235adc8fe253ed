# gevent's patches first, before anything imports socket or threading: the
# Redis client (with --bus) then waits in greenlets, never blocking the server.
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from gchat.cli import main  # noqa: E402

try:
    sys.exit(main())
except KeyboardInterrupt:
    # Only reachable before the signal handlers are installed (e.g. during import).
    sys.exit(130)
