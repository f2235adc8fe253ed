"""The heap trimmer gives freed memory back to the system (glibc, as on the CI's Debian)."""

import os
import time

import gevent
from conftest import TIMEOUT

from gchat.bench.procs import read_rss_kb
from gchat.heap import HeapTrimmer

MIB = 1024


def fragmented_heap(mib: int) -> "list[bytes]":
    """Free ``mib`` MiB of short-lived buffers held between long-lived ones: what a join storm leaves.

    Both sizes are above CPython's small-object limit (512 bytes), so both come
    from malloc's heap; the long-lived ones keep the freed stretches from being
    the heap's top, the only part malloc gives back by itself.
    """
    kept, passing = [], []
    for _ in range(mib * 32):
        passing.append(os.urandom(32 * 1024))
        kept.append(os.urandom(600))
    del passing
    return kept


def test_freed_heap_goes_back_to_the_system_while_the_trimmer_runs():
    trimmer = HeapTrimmer()
    assert trimmer.available
    kept = fragmented_heap(64)
    held = read_rss_kb(os.getpid())
    trimmer.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while read_rss_kb(os.getpid()) > held - 32 * MIB:
            assert time.monotonic() < deadline, "the freed 64 MiB stayed resident"
            gevent.sleep(0.05)
    finally:
        trimmer.stop()
    assert kept
