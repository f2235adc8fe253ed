import sys

from gchat.cli import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    # Only reachable before the signal handlers are installed (e.g. during import).
    sys.exit(130)
