"""The cluster bus: nodes of one chat meet in Redis pub/sub.

Every event goes through one Lua script that updates the shared state (who
is where, each room's history) and publishes the event with a sequence
number, atomically. Redis runs scripts one at a time and pushes messages to
every subscriber in the order published, so every node applies the same
sequence, and a snapshot of the state taken with the sequence number tells
a (re)connecting node exactly which messages it already reflects.

State in the selected database, all under ``gchat:``: ``users`` (a hash,
nick key -> ``ROOM NUL NODE NUL NICK NUL ADDRESS``, room empty while a nick
is claimed but not yet in a room), ``rooms`` (member counts, so a room's
history and topic can be forgotten with its last member), ``history:ROOM``
(lists), ``topics``, ``bans``, ``seq``, ``guests`` (the guest counter),
``nodes`` and ``node:ID`` (heartbeats that expire). Pub/sub channels are
not per database, so the channel is named after the database.

All network I/O happens in this module's greenlets: one worker sends
everything queued in one pipeline per round trip, one subscriber applies
what comes back, one heartbeat keeps this node alive and reaps dead ones.
A client's greenlet waits only for its own nick claims. When Redis goes
away the node says so, serves its own clients alone, and reconnects with
backoff.
"""

import logging
import random
from typing import Any, Optional

import gevent
import redis
from gevent.event import AsyncResult, Event

from gchat.bus import BusError, Listener, Snapshot, new_node_id
from gchat.commands import nick_key
from gchat.events import (
    Banned,
    Joined,
    Kicked,
    NodeLost,
    Quit,
    Renamed,
    Said,
    TopicSet,
    Unbanned,
    decode,
    encode,
)
from gchat.events import Event as ChatEvent

log = logging.getLogger("gchat")

PREFIX = "gchat:"
# Any Redis failure sends the node local and retrying: a refused connection, a
# timeout, or a reply such as "DB index is out of range" or "NOAUTH".
LINK_ERRORS = (redis.RedisError, OSError)
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
CLOSE_TIMEOUT = 2.0

_LUA_HELPERS = """
local prefix = ARGV[1]
local users, rooms = prefix .. 'users', prefix .. 'rooms'
-- A registry value's fields: room, node, nick, address.
local function parse(value)
  local fields, start = {}, 1
  while true do
    local stop = string.find(value, '\\0', start, true)
    if not stop then
      fields[#fields + 1] = string.sub(value, start)
      return fields
    end
    fields[#fields + 1] = string.sub(value, start, stop - 1)
    start = stop + 1
  end
end
local function left(room)
  if room ~= '' and redis.call('HINCRBY', rooms, room, -1) <= 0 then
    redis.call('HDEL', rooms, room)
    if room ~= '#lobby' then
      redis.call('DEL', prefix .. 'history:' .. room)
      redis.call('HDEL', prefix .. 'topics', room)
    end
  end
end
-- Delete every user for whom keep(fields) is false; how many went.
local function purge(keep)
  local entries = redis.call('HGETALL', users)
  local count = 0
  for i = 1, #entries, 2 do
    local fields = parse(entries[i + 1])
    if not keep(fields) then
      redis.call('HDEL', users, entries[i])
      left(fields[1])
      count = count + 1
    end
  end
  return count
end
local function publish(channel, payload)
  local seq = redis.call('INCR', prefix .. 'seq')
  redis.call('PUBLISH', channel, seq .. '\\0' .. payload)
end
"""

# ARGV: prefix, channel, op, payload, then per op (see RedisBus._event_args).
_EVENT = (
    _LUA_HELPERS
    + """
local op, payload = ARGV[3], ARGV[4]
if op == 'S' then
  local limit = tonumber(ARGV[7])
  if limit > 0 then
    local history = prefix .. 'history:' .. ARGV[5]
    redis.call('RPUSH', history, ARGV[6])
    redis.call('LTRIM', history, -limit, -1)
  end
elseif op == 'J' then  -- key, node, nick, room, address
  local old = redis.call('HGET', users, ARGV[5])
  if old then left(parse(old)[1]) end
  redis.call('HSET', users, ARGV[5], table.concat({ARGV[8], ARGV[6], ARGV[7], ARGV[9]}, '\\0'))
  redis.call('HINCRBY', rooms, ARGV[8], 1)
  payload = payload .. table.concat(redis.call('LRANGE', prefix .. 'history:' .. ARGV[8], 0, -1))
elseif op == 'R' then  -- old key, new key, node, new nick
  local old = redis.call('HGET', users, ARGV[5])
  local fields = {'', ARGV[7], ARGV[8], ''}
  if old then
    local was = parse(old)
    fields[1], fields[4] = was[1], was[4] or ''
  end
  redis.call('HDEL', users, ARGV[5])
  redis.call('HSET', users, ARGV[6], table.concat(fields, '\\0'))
elseif op == 'Q' then  -- key, node: only this node's user (the nick may be someone else's by now)
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    local fields = parse(old)
    if fields[2] == ARGV[6] then
      redis.call('HDEL', users, ARGV[5])
      left(fields[1])
    end
  end
elseif op == 'K' then  -- key
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    redis.call('HDEL', users, ARGV[5])
    left(parse(old)[1])
  end
elseif op == 'B' then  -- address
  redis.call('SADD', prefix .. 'bans', ARGV[5])
  purge(function(fields) return fields[4] ~= ARGV[5] end)
elseif op == 'U' then  -- address
  redis.call('SREM', prefix .. 'bans', ARGV[5])
elseif op == 'T' then  -- room, text: only while the room exists
  if ARGV[5] == '#lobby' or redis.call('HEXISTS', rooms, ARGV[5]) == 1 then
    redis.call('HSET', prefix .. 'topics', ARGV[5], ARGV[6])
  end
end
publish(ARGV[2], payload)
"""
)

# ARGV: prefix, key, node, nick. 1 if the nick is (now) this node's.
_CLAIM = (
    _LUA_HELPERS
    + """
local old = redis.call('HGET', users, ARGV[2])
if not old then
  redis.call('HSET', users, ARGV[2], table.concat({'', ARGV[3], ARGV[4], ''}, '\\0'))
  return 1
end
if parse(old)[2] == ARGV[3] then return 1 end
return 0
"""
)

# ARGV: prefix, node. The number N of a fresh guestN now held by the node.
_GUEST = (
    _LUA_HELPERS
    + """
while true do
  local n = redis.call('INCR', prefix .. 'guests')
  local nick = 'guest' .. n
  if redis.call('HSETNX', users, nick, table.concat({'', ARGV[2], nick, ''}, '\\0')) == 1 then return n end
end
"""
)

# ARGV: prefix, channel, node, lifetime in ms. Renews this node's heartbeat,
# then reaps every node whose heartbeat has expired: its users are deleted
# and one NodeLost event tells every node, whichever node's call got there first.
_HEARTBEAT = (
    _LUA_HELPERS
    + """
local nodes = prefix .. 'nodes'
redis.call('SET', prefix .. 'node:' .. ARGV[3], '1', 'PX', ARGV[4])
redis.call('SADD', nodes, ARGV[3])
for _, lost in ipairs(redis.call('SMEMBERS', nodes)) do
  if redis.call('EXISTS', prefix .. 'node:' .. lost) == 0 then
    redis.call('SREM', nodes, lost)
    if purge(function(fields) return fields[2] ~= lost end) > 0 then
      publish(ARGV[2], 'L\\0' .. lost)
    end
  end
end
"""
)

# ARGV: prefix, node. Leaving for good: no heartbeat to wait for.
_GOODBYE = """
redis.call('DEL', ARGV[1] .. 'node:' .. ARGV[2])
redis.call('SREM', ARGV[1] .. 'nodes', ARGV[2])
"""


class _Op:
    """One script call queued for the worker; ``event`` is applied here if Redis fails."""

    __slots__ = ("args", "event", "result", "script")

    def __init__(
        self,
        script: Any,
        args: "tuple[Any, ...]",
        event: Optional[ChatEvent] = None,
        result: Optional[AsyncResult] = None,
    ) -> None:
        self.script = script
        self.args = args
        self.event = event
        self.result = result


class RedisBus:
    def __init__(self, url: str, history: int, node_timeout: float) -> None:
        self.node = new_node_id()
        self.url = url
        self._history = history
        self._timeout = node_timeout
        wait = max(node_timeout, 1.0)
        self._redis = redis.Redis.from_url(url, socket_timeout=wait, socket_connect_timeout=wait)
        # The subscription may rightly be silent for any length of time, so its
        # reads have no timeout: a dead Redis closes it, a vanished one is found
        # by the heartbeat's timeout on the other connection.
        self._listen_redis = redis.Redis.from_url(url, socket_connect_timeout=wait, socket_keepalive=True)
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self._channel = f"{PREFIX}{db}:events"
        self._event = self._redis.register_script(_EVENT)
        self._claim = self._redis.register_script(_CLAIM)
        self._guest = self._redis.register_script(_GUEST)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._listener: Optional[Listener] = None
        self._ops: list[_Op] = []
        self._wake = Event()
        self._up = False
        self._closing = False
        self._seen = 0
        self._pubsub: Any = None
        self._greenlets: list[gevent.Greenlet] = []
        self._subscriber: Optional[gevent.Greenlet] = None

    def attach(self, listener: Listener) -> None:
        self._listener = listener

    def start(self) -> None:
        """Join the cluster now, or raise BusError: a node that starts alone would split the chat."""
        try:
            self._connect()
        except LINK_ERRORS as err:
            raise BusError(str(err)) from None
        self._greenlets = [gevent.spawn(self._work), gevent.spawn(self._beat)]

    def publish(self, event: ChatEvent) -> None:
        if not self._up:
            assert self._listener is not None
            self._listener.apply(event)
            return
        self._submit(_Op(self._event, self._event_args(event), event))

    def claim(self, nick: str) -> bool:
        result = self._call(self._claim, (PREFIX, nick_key(nick), self.node, nick))
        return result is None or bool(result)

    def claim_guest(self) -> Optional[str]:
        number = self._call(self._guest, (PREFIX, self.node))
        return None if number is None else f"guest{int(number)}"

    def close(self) -> None:
        """Flush what is queued (the node's last quits), then leave without a heartbeat to expire."""
        self._closing = True
        if self._up:
            done = AsyncResult()
            self._submit(_Op(self._redis.register_script(_GOODBYE), (PREFIX, self.node), result=done))
            done.wait(CLOSE_TIMEOUT)
        gevent.killall(self._greenlets + [g for g in (self._subscriber,) if g is not None], block=False)
        self._redis.close()
        self._listen_redis.close()

    def _call(self, script: Any, args: "tuple[Any, ...]") -> Any:
        """Run a script in turn with everything queued before it; None if the link is down."""
        if not self._up:
            return None
        result = AsyncResult()
        self._submit(_Op(script, args, result=result))
        return result.get()

    def _submit(self, op: _Op) -> None:
        self._ops.append(op)
        self._wake.set()

    def _event_args(self, event: ChatEvent) -> "tuple[Any, ...]":
        payload = encode(event)
        base: tuple[Any, ...] = (PREFIX, self._channel)
        if isinstance(event, Said):
            return (*base, "S", payload, event.room, event.line, self._history)
        if isinstance(event, Joined):
            return (
                *base,
                "J",
                payload,
                nick_key(event.nick),
                event.node,
                event.nick,
                event.room,
                event.address,
            )
        if isinstance(event, Renamed):
            return (*base, "R", payload, nick_key(event.old), nick_key(event.new), self.node, event.new)
        if isinstance(event, Quit):
            return (*base, "Q", payload, nick_key(event.nick), self.node)
        if isinstance(event, Kicked):
            return (*base, "K", payload, nick_key(event.nick))
        if isinstance(event, Banned):
            return (*base, "B", payload, event.address)
        if isinstance(event, Unbanned):
            return (*base, "U", payload, event.address)
        if isinstance(event, TopicSet):
            return (*base, "T", payload, event.room, event.text)
        return (*base, "-", payload)

    def _work(self) -> None:
        """Send everything queued, one pipeline per round trip, in order."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._ops and self._up:
                batch, self._ops = self._ops, []
                pipe = self._redis.pipeline(transaction=False)
                for op in batch:
                    op.script(args=op.args, client=pipe)
                try:
                    results = pipe.execute(raise_on_error=False)
                except LINK_ERRORS as err:
                    self._ops[:0] = batch
                    self._lost(err)
                    break
                for op, result in zip(batch, results):
                    if isinstance(result, Exception):
                        log.error("bus: %s", result)
                        result = None
                    if op.result is not None:
                        op.result.set(result)

    def _beat(self) -> None:
        lifetime = int(self._timeout * 1000)
        while True:
            gevent.sleep(self._timeout / 4)
            if self._up:
                self._submit(_Op(self._heartbeat, (PREFIX, self._channel, self.node, lifetime)))

    def _connect(self) -> None:
        """Subscribe, snapshot, claim our clients' nicks again, then apply what follows."""
        pubsub = self._listen_redis.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            # The confirmation proves the subscription is live before the
            # snapshot: nothing published after the snapshot can be missed.
            if pubsub.get_message(timeout=max(self._timeout, 1.0)) is None:
                raise redis.TimeoutError("no reply to SUBSCRIBE")
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(PREFIX + "seq")
            pipe.hgetall(PREFIX + "users")
            pipe.smembers(PREFIX + "bans")
            pipe.hgetall(PREFIX + "topics")
            seq, entries, bans, topics = pipe.execute()
            self._heartbeat(args=(PREFIX, self._channel, self.node, int(self._timeout * 1000)))
            renames = self._reclaim()
        except BaseException:
            pubsub.close()
            raise
        self._seen = int(seq or 0)
        self._pubsub = pubsub
        self._up = True
        users = []
        for value in entries.values():
            room, node, nick, address = value.decode().split("\0")
            if room and node != self.node:
                users.append((node, nick, room, address))
        snapshot = Snapshot(
            users,
            [ban.decode() for ban in bans],
            {room.decode(): text.decode() for room, text in topics.items()},
        )
        assert self._listener is not None
        self._listener.rejoin(renames, snapshot)
        self._subscriber = gevent.spawn(self._subscribe, pubsub)

    def _reclaim(self) -> "dict[str, str]":
        """Claim every local nick again; the ones taken meanwhile get fresh guest nicks."""
        assert self._listener is not None
        nicks = self._listener.local_nicks()
        if not nicks:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for nick in nicks:
            self._claim(args=(PREFIX, nick_key(nick), self.node, nick), client=pipe)
        taken = [nick for nick, ok in zip(nicks, pipe.execute()) if not ok]
        renames = {}
        for nick in taken:
            renames[nick] = f"guest{int(self._guest(args=(PREFIX, self.node)))}"
        return renames

    def _subscribe(self, pubsub: Any) -> None:
        listener = self._listener
        assert listener is not None
        try:
            for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                seq, _, payload = message["data"].partition(b"\0")
                if int(seq) <= self._seen:
                    continue
                try:
                    event = decode(payload)
                    if isinstance(event, NodeLost) and event.node == self.node:
                        # Declared dead while alive (a stall longer than the
                        # node timeout): the others forgot our clients.
                        gevent.spawn(self._rejoin)
                    listener.apply(event)
                except Exception:
                    log.exception("bus: cannot apply %r", payload[:80])
        except LINK_ERRORS as err:
            self._lost(err)

    def _rejoin(self) -> None:
        try:
            renames = self._reclaim()
        except LINK_ERRORS as err:
            self._lost(err)
            return
        assert self._listener is not None
        self._listener.rejoin(renames, None)

    def _lost(self, err: BaseException) -> None:
        """Serve locally from now on; apply what could not be sent; reconnect in the background."""
        if not self._up or self._closing:
            return
        self._up = False
        log.warning("cluster link lost (%s): serving local clients only", err)
        assert self._listener is not None
        self._listener.link_lost()
        ops, self._ops = self._ops, []
        for op in ops:
            if op.event is not None:
                self._listener.apply(op.event)
            if op.result is not None:
                op.result.set(None)
        subscriber = self._subscriber
        if subscriber is not None and subscriber is not gevent.getcurrent():
            subscriber.kill(block=False)
        self._pubsub.close()
        gevent.spawn(self._reconnect)

    def _reconnect(self) -> None:
        delay = BACKOFF_MIN
        while not self._closing:
            gevent.sleep(random.uniform(delay / 2, delay))
            try:
                self._connect()
            except LINK_ERRORS as err:
                log.debug("cluster link: %s", err)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            log.warning("cluster link restored")
            self._wake.set()
            return
