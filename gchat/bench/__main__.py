import sys

from gchat.bench.cli import main

# Worker processes are spawned: they import this module again and must not run it.
if __name__ == "__main__":
    sys.exit(main())
