"""With ``--bus`` the chat's state lives in Redis: a Redis with AOF on keeps it through its own restart."""

import signal

from conftest import Cluster


def test_a_redis_restarted_with_aof_gives_restarted_nodes_their_history(start_server, aof_redis):
    cluster = Cluster(start_server, aof_redis.url(0), "--history", "3")
    node = cluster.node()
    a, b = cluster.join(node), cluster.join(node)
    a.say("one", "two", "three")
    lines = tuple(f"<{a.nick}> {text}" for text in ("one", "two", "three"))
    b.expect(*lines)  # back from Redis: its scripts ran, and with AOF they are in the file
    for client in (a, b):
        client.close()
    node.signal(signal.SIGTERM)
    assert node.wait() == 0
    aof_redis.stop(signal.SIGKILL)  # a crash, not a clean shutdown
    assert aof_redis.start(), f"redis-server did not come back on port {aof_redis.port}"
    fresh = cluster.node()
    cluster.join(fresh, history=lines)
