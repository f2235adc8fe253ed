"""``python -m gchat.bench``: a load generator for line-based chat servers and Redis pub/sub.

Like redis-benchmark next to Redis: it talks to any server on HOST:PORT, so the
same numbers can be taken for gchat, its peers and Redis itself. It checks
what it receives as it goes (loss, duplicates, reordering, mangled lines), so a
broken server is never reported as a fast one.
"""
