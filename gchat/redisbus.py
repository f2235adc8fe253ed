"""The cluster bus: nodes of one chat meet in Redis pub/sub.

Every event goes through one Lua script that updates the shared state (who
is where, each room's history) and publishes the event with a sequence
number, atomically. Redis runs scripts one at a time and pushes messages to
every subscriber in the order published, so every node applies the same
sequence, and a snapshot of the state taken with the sequence number tells
a (re)connecting node exactly which messages it already reflects. Events are
small (one chat line at most): a room's history stays in Redis and in each
node's replica, and is read with a snapshot, never pushed to every node.

A subscription Redis closed (its output buffer limit, a restart) or a gap in
the sequence numbers means this node missed events, and what its clients did
meanwhile never reached Redis. The node does not replay anything: it resyncs.
One script replaces all of its users in Redis with its clients as they are
now and returns the whole state; the node installs it as its replica, and
every other node, told by a small ``Resynced`` event, reads the node's new
user list and replaces that node's users in its own replica.

State in the selected database, all under ``gchat:``: ``users`` (a hash,
nick key -> ``ROOM NUL NODE NUL NICK NUL ADDRESS NUL CID``, room and client
id empty while a nick is claimed but not yet in a room), ``rooms`` (member
counts, so a room's history and topic can be forgotten with its last member),
``history:ROOM`` (lists), ``topics``, ``bans``, ``seq``, ``guests`` (the
guest counter), ``nodes`` and ``node:ID`` (heartbeats that expire),
``sync:ID`` (a node's users as of its last resync). Pub/sub channels are not
per database, so the channel is named after the database.

All network I/O happens in this module's greenlets: one worker sends
everything queued in one pipeline per round trip, one subscriber applies
what comes back, one heartbeat keeps this node alive and reaps dead ones.
A client's greenlet waits only for its own renames and guest nick. When Redis goes
away the node says so, serves its own clients alone, and reconnects with
backoff.
"""

import logging
import random
from dataclasses import replace
from typing import Any, Optional, cast

import gevent
import redis
from gevent.event import AsyncResult, Event
from redis.backoff import NoBackoff
from redis.retry import Retry

from gchat.bus import BusError, Entry, Replica, Snapshot, new_node_id
from gchat.commands import nick_key
from gchat.events import (
    Away,
    Banned,
    DecodeError,
    Joined,
    Kicked,
    Left,
    NodeLost,
    Opered,
    Parted,
    Renamed,
    Resynced,
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
# Resync attempts while this node's clients keep changing what is being published.
RESYNC_TRIES = 10


class LinkBroken(redis.RedisError):
    """The link is up but this node cannot trust what it applied: resync."""


_LUA_HELPERS = """
local prefix = ARGV[1]
local users, rooms = prefix .. 'users', prefix .. 'rooms'
-- A registry value's fields: rooms (space-separated), node, nick, address, client id, host,
-- operator ('1' or ''), away text ('' when back).
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
local function split(rooms)
  local found = {}
  for room in string.gmatch(rooms, '[^ ]+') do found[#found + 1] = room end
  return found
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
local function left_all(rooms)
  for _, room in ipairs(split(rooms)) do left(room) end
end
-- Delete every user for whom keep(fields) is false; how many went.
local function purge(keep)
  local entries = redis.call('HGETALL', users)
  local count = 0
  for i = 1, #entries, 2 do
    local fields = parse(entries[i + 1])
    if not keep(fields) then
      redis.call('HDEL', users, entries[i])
      left_all(fields[1])
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
local sep = '\\0'
if op == 'S' then  -- room, history length: the event itself is the history entry
  local limit = tonumber(ARGV[6])
  if limit > 0 then
    local history = prefix .. 'history:' .. ARGV[5]
    redis.call('RPUSH', history, payload)
    redis.call('LTRIM', history, -limit, -1)
  end
elseif op == 'J' then  -- key, node, nick, room (or none), address, client id, host, switch
  local room, current, oper, away = ARGV[8], {}, '', ''
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    local fields = parse(old)
    if fields[5] ~= '' then current = split(fields[1]) end  -- else a nick claimed, in no room
    oper, away = fields[7] or '', fields[8] or ''
  end
  local member = false
  for _, name in ipairs(current) do member = member or name == room end
  if room ~= '' and not member then
    redis.call('HINCRBY', rooms, room, 1)
    if ARGV[12] ~= '' then
      for _, name in ipairs(current) do left(name) end
      current = {}
    end
    current[#current + 1] = room
  end
  local value = {table.concat(current, ' '), ARGV[6], ARGV[7], ARGV[9], ARGV[10], ARGV[11], oper, away}
  redis.call('HSET', users, ARGV[5], table.concat(value, sep))
elseif op == 'E' then  -- key, room: a part
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    local fields, kept = parse(old), {}
    for _, name in ipairs(split(fields[1])) do
      if name == ARGV[6] then left(name) else kept[#kept + 1] = name end
    end
    fields[1] = table.concat(kept, ' ')
    redis.call('HSET', users, ARGV[5], table.concat(fields, sep))
  end
elseif op == 'R' then  -- old key, new key, node, new nick: 0 if another node holds the new nick
  local new = redis.call('HGET', users, ARGV[6])
  if new and parse(new)[2] ~= ARGV[7] then return 0 end
  local old = redis.call('HGET', users, ARGV[5])
  local fields = {'', ARGV[7], ARGV[8], '', '', ''}
  if old and parse(old)[2] == ARGV[7] then  -- the old nick may be another node's since a resync
    fields = parse(old)
    fields[3] = ARGV[8]
    redis.call('HDEL', users, ARGV[5])
  end
  redis.call('HSET', users, ARGV[6], table.concat(fields, sep))
elseif op == 'Q' then  -- key, node: only this node's user (the nick may be someone else's by now)
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    local fields = parse(old)
    if fields[2] == ARGV[6] then
      redis.call('HDEL', users, ARGV[5])
      left_all(fields[1])
    end
  end
elseif op == 'K' then  -- key
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    redis.call('HDEL', users, ARGV[5])
    left_all(parse(old)[1])
  end
elseif op == 'O' or op == 'A' then  -- key, then for A the away text: a flag on the user
  local old = redis.call('HGET', users, ARGV[5])
  if old then
    local fields = parse(old)
    fields[7], fields[8] = fields[7] or '', fields[8] or ''
    if op == 'O' then fields[7] = '1' else fields[8] = ARGV[6] end
    redis.call('HSET', users, ARGV[5], table.concat(fields, sep))
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
return 1
"""
)

# ARGV: prefix, node. The number N of a fresh guestN now held by the node.
_GUEST = (
    _LUA_HELPERS
    + """
while true do
  local n = redis.call('INCR', prefix .. 'guests')
  local nick = 'guest' .. n
  local value = table.concat({'', ARGV[2], nick, '', '', ''}, '\\0')
  if redis.call('HSETNX', users, nick, value) == 1 then return n end
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
    redis.call('DEL', prefix .. 'sync:' .. lost)
    if purge(function(fields) return fields[2] ~= lost end) > 0 then
      publish(ARGV[2], 'L\\0' .. lost)
    end
  end
end
"""
)

# ARGV: prefix, node. Leaving for good: no heartbeat to wait for.
_GOODBYE = """
redis.call('DEL', ARGV[1] .. 'node:' .. ARGV[2], ARGV[1] .. 'sync:' .. ARGV[2])
redis.call('SREM', ARGV[1] .. 'nodes', ARGV[2])
"""

# ARGV: prefix, channel, node, lifetime in ms, then for each of this node's
# clients: key, nick, rooms, address, client id, host, operator, away. Makes this node's users in
# Redis exactly these (a nick another node took meanwhile becomes a fresh
# guest nick), keeps a copy for the other nodes (sync:NODE), publishes
# Resynced, and returns the whole state: seq, renames (client id, nick, ...),
# every user, bans, topics, and each room's history as room, lines, ...
_RESYNC = (
    _LUA_HELPERS
    + """
local node, sep = ARGV[3], '\\0'
redis.call('SET', prefix .. 'node:' .. node, '1', 'PX', ARGV[4])
redis.call('SADD', prefix .. 'nodes', node)
local mine, values, renames = {}, {}, {}
for i = 5, #ARGV, 8 do mine[ARGV[i]] = true end
for i = 5, #ARGV, 8 do
  local key, nick, names = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = redis.call('HGET', users, key)
  if held and parse(held)[2] ~= node then
    repeat
      nick = 'guest' .. redis.call('INCR', prefix .. 'guests')
      key = nick
    until not mine[key] and redis.call('HEXISTS', users, key) == 0
    mine[key] = true
    renames[#renames + 1] = ARGV[i + 4]
    renames[#renames + 1] = nick
  end
  local fields = {names, node, nick}
  for j = 3, 7 do fields[#fields + 1] = ARGV[i + j] end  -- address, client id, host, operator, away
  values[key] = table.concat(fields, sep)
  -- Counted before the purge below uncounts this node's old entries, so a
  -- room the node stays in never drops to zero and keeps its history.
  for _, room in ipairs(split(names)) do redis.call('HINCRBY', rooms, room, 1) end
end
purge(function(fields) return fields[2] ~= node end)
local copy = prefix .. 'sync:' .. node
redis.call('DEL', copy)
for key, value in pairs(values) do
  redis.call('HSET', users, key, value)
  redis.call('RPUSH', copy, value)
end
publish(ARGV[2], 'Y' .. sep .. node)
local history = {}
local names = redis.call('HKEYS', rooms)
names[#names + 1] = '#lobby'
for _, room in ipairs(names) do
  history[#history + 1] = room
  history[#history + 1] = redis.call('LRANGE', prefix .. 'history:' .. room, 0, -1)
end
return {
  redis.call('GET', prefix .. 'seq'), renames, redis.call('HVALS', users),
  redis.call('SMEMBERS', prefix .. 'bans'), redis.call('HGETALL', prefix .. 'topics'), history,
}
"""
)


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
        wait = self._wait = max(node_timeout, 1.0)
        # No retries inside redis-py: a pipeline sent again may run its
        # scripts twice, and a subscription silently made anew has missed
        # events. A failure is a lost link, and the resync repairs it.
        once = Retry(NoBackoff(), 0)
        self._redis = redis.Redis.from_url(url, socket_timeout=wait, socket_connect_timeout=wait, retry=once)
        # The subscription may rightly be silent for any length of time, so its
        # reads have no timeout: a dead Redis closes it, a vanished one is found
        # by the heartbeat's timeout on the other connection.
        self._listen_redis = redis.Redis.from_url(
            url, socket_connect_timeout=wait, socket_keepalive=True, retry=once
        )
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self._channel = f"{PREFIX}{db}:events"
        self._event = self._redis.register_script(_EVENT)
        self._guest = self._redis.register_script(_GUEST)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._resync = self._redis.register_script(_RESYNC)
        self._replica: Optional[Replica] = None
        self._ops: list[_Op] = []
        self._wake = Event()
        # Set while no pipeline is on its way and no client waits for its
        # rename: a resync must not read the clients before those land.
        self._idle = Event()
        self._idle.set()
        self._renaming = 0
        self._renamed = Event()
        self._renamed.set()
        self._up = False
        self._closing = False
        self._seen = 0
        # Local changes while the link is down: counted, so a resync can tell
        # that its view of the clients went stale while it waited for Redis,
        # and operator acts (bans, unbans, topics) kept to publish once back.
        self._changes = 0
        self._deferred: list[ChatEvent] = []
        self._pubsub: Any = None
        self._greenlets: list[gevent.Greenlet] = []
        self._subscriber: Optional[gevent.Greenlet] = None

    def attach(self, replica: Replica) -> None:
        self._replica = replica

    def start(self) -> None:
        """Join the cluster now, or raise BusError: a node that starts alone would split the chat."""
        try:
            log.info("bus: %s", self._connect())
        except LINK_ERRORS as err:
            raise BusError(str(err)) from None
        self._greenlets = [gevent.spawn(self._work), gevent.spawn(self._beat)]

    def publish(self, event: ChatEvent) -> None:
        if not self._up:
            self._apply_here(event)
            return
        self._submit(_Op(self._event, self._event_args(event), event))

    def _apply_here(self, event: ChatEvent) -> None:
        """Apply an event of this node's while cut off; what Redis must still learn is kept."""
        assert self._replica is not None
        self._changes += 1
        if isinstance(event, (Banned, Unbanned)):
            # Published again once back, by no one: the operator has had the answer.
            self._deferred.append(replace(event, cid=0))
        elif isinstance(event, TopicSet):
            self._deferred.append(event)
        self._replica.apply(event)

    def rename(self, old: str, new: str) -> bool:
        event = Renamed(old, new)
        if not self._up:
            self._apply_here(event)
            return True
        result = AsyncResult()
        self._submit(_Op(self._event, self._event_args(event), event, result))
        self._renaming += 1
        self._renamed.clear()
        try:
            # None: the link went meanwhile, and the rename was applied here.
            answer = result.get()
        finally:
            # The hub renames its client as soon as this returns, before any
            # other greenlet runs: then a resync may read the clients.
            self._renaming -= 1
            if not self._renaming:
                self._renamed.set()
        return answer is None or bool(answer)

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
            return (*base, "S", payload, event.message.room, self._history)
        if isinstance(event, Joined):
            key, switch = nick_key(event.nick), "1" if event.switch else ""
            return (
                *base,
                "J",
                payload,
                key,
                event.node,
                event.nick,
                event.room,
                event.address,
                event.cid,
                event.host,
                switch,
            )
        if isinstance(event, Parted):
            return (*base, "E", payload, nick_key(event.nick), event.room)
        if isinstance(event, Renamed):
            return (*base, "R", payload, nick_key(event.old), nick_key(event.new), self.node, event.new)
        if isinstance(event, Left):
            return (*base, "Q", payload, nick_key(event.nick), self.node)
        if isinstance(event, Kicked):
            return (*base, "K", payload, nick_key(event.nick))
        if isinstance(event, Banned):
            return (*base, "B", payload, event.address)
        if isinstance(event, Unbanned):
            return (*base, "U", payload, event.address)
        if isinstance(event, TopicSet):
            return (*base, "T", payload, event.room, event.text)
        if isinstance(event, Opered):
            return (*base, "O", payload, nick_key(event.nick))
        if isinstance(event, Away):
            return (*base, "A", payload, nick_key(event.nick), event.text)
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
                self._idle.clear()
                try:
                    results = pipe.execute(raise_on_error=False)
                except LINK_ERRORS as err:
                    self._ops[:0] = batch
                    self._lost(err)
                    break
                finally:
                    self._idle.set()
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

    def _connect(self) -> str:
        """Subscribe, resync, install the state, then apply what follows it; a line for the log."""
        pubsub = self._listen_redis.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            # The confirmation proves the subscription is live before the
            # snapshot: nothing published after the snapshot can be missed.
            if pubsub.get_message(timeout=max(self._timeout, 1.0)) is None:
                raise redis.TimeoutError("no reply to SUBSCRIBE")
            seq, renames, snapshot = self._republish()
        except BaseException:
            pubsub.close()
            raise
        self._seen = seq
        self._pubsub = pubsub
        self._up = True
        assert self._replica is not None
        self._replica.resync(renames, snapshot)
        deferred, self._deferred = self._deferred, []
        for event in deferred:
            self.publish(event)
        self._subscriber = gevent.spawn(self._subscribe, pubsub)
        rooms = {room for entry in snapshot.users for room in entry.rooms}
        return f"in step with the cluster at event {seq}: {len(snapshot.users)} users in {len(rooms)} rooms"

    def _republish(self) -> "tuple[int, dict[int, str], Snapshot]":
        """Make this node's users in Redis its clients as they are now; the state that results.

        The clients may change while the script is on its way (they are
        served locally meanwhile); then what it wrote is stale, and it runs again.
        """
        assert self._replica is not None
        for _ in range(RESYNC_TRIES):
            # A pipeline still on its way would land after the resync, and a
            # client still waiting for its rename is about to change its nick.
            if not (self._idle.wait(self._wait) and self._renamed.wait(self._wait)):
                raise LinkBroken("requests sent before the link was lost are still unanswered")
            changes = self._changes
            args: list[Any] = [PREFIX, self._channel, self.node, int(self._timeout * 1000)]
            for user in self._replica.local_users():
                args += [
                    nick_key(user.nick),
                    user.nick,
                    " ".join(user.rooms),
                    user.address,
                    user.cid,
                    user.host,
                    "1" if user.oper else "",
                    user.away,
                ]
            reply = self._resync(args=args)
            if self._changes == changes:
                return _parse_state(reply)
        raise LinkBroken("this node's clients kept changing during the resync")

    def _subscribe(self, pubsub: Any) -> None:
        replica = self._replica
        assert replica is not None
        # Until the first event newer than the snapshot, older ones are already in it.
        fresh = True
        try:
            for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                number, _, payload = message["data"].partition(b"\0")
                seq = int(number)
                if fresh and seq <= self._seen:
                    continue
                fresh = False
                if seq != self._seen + 1:
                    # Skipped numbers, or numbers starting over (Redis lost its data).
                    raise LinkBroken(f"expected event {self._seen + 1}, got {seq}")
                self._seen = seq
                try:
                    event = decode(payload)
                except DecodeError:
                    log.exception("bus: cannot decode %r", payload[:80])
                    continue
                if isinstance(event, NodeLost) and event.node == self.node:
                    # Declared dead while alive (a stall longer than the node
                    # timeout): the others forgot our clients.
                    raise LinkBroken("the other nodes declared this node lost")
                try:
                    if isinstance(event, Resynced):
                        self._apply_resynced(event.node, seq)
                    else:
                        replica.apply(event)
                except LINK_ERRORS:
                    raise
                except Exception:
                    log.exception("bus: cannot apply %r", payload[:80])
        except LINK_ERRORS as err:
            self._lost(err)

    def _apply_resynced(self, node: str, seq: int) -> None:
        """Replace ``node``'s users with the list it left in Redis (a read: the subscriber waits)."""
        if node == self.node:
            return
        values = cast("list[bytes]", self._redis.lrange(PREFIX + "sync:" + node, 0, -1))
        users = [user for user in map(_entry, values) if user is not None]
        assert self._replica is not None
        self._replica.resynced(node, users)
        log.info("bus: node %s resynced at event %d: %d users", node, seq, len(users))

    def _lost(self, err: BaseException) -> None:
        """Serve locally from now on; apply what could not be sent; reconnect in the background."""
        if self._closing:
            return
        if not self._up:
            self._fail_queued()  # a pipeline that failed after the subscriber found out
            return
        self._up = False
        log.warning("cluster link lost (%s): serving local clients only", err)
        assert self._replica is not None
        self._replica.link_lost()
        self._fail_queued()
        subscriber = self._subscriber
        if subscriber is not None and subscriber is not gevent.getcurrent():
            subscriber.kill(block=False)
        self._pubsub.close()
        gevent.spawn(self._reconnect)

    def _fail_queued(self) -> None:
        """Apply here what could not be sent; whoever waits for an answer gets None."""
        ops, self._ops = self._ops, []
        for op in ops:
            if op.event is not None:
                self._apply_here(op.event)
            if op.result is not None:
                op.result.set(None)

    def _reconnect(self) -> None:
        delay = BACKOFF_MIN
        while not self._closing:
            gevent.sleep(random.uniform(delay / 2, delay))
            try:
                state = self._connect()
            except LINK_ERRORS as err:
                log.debug("cluster link: %s", err)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            log.warning("cluster link restored, %s", state)
            self._wake.set()
            return


def _entry(value: bytes) -> Optional[Entry]:
    """A user from its registry value; None for a nick claimed but not yet in the chat.

    None too for a value an older gchat wrote that it cannot read, so a mixed
    cluster degrades (those users are missing from this node's replica)
    instead of failing; a value without flags (before operators and away
    users were kept) reads as neither.
    """
    fields = value.decode().split("\0")
    if len(fields) == 6:
        fields += ["", ""]
    if len(fields) != 8 or not fields[4].isdigit():
        return None
    rooms, node, nick, address, cid, host, oper, away = fields
    return Entry(node, int(cid), nick, tuple(rooms.split()), address, host, oper == "1", away)


def _parse_state(reply: "list[Any]") -> "tuple[int, dict[int, str], Snapshot]":
    """The resync script's answer: seq, renames by client id, and the snapshot."""
    seq, renames, values, bans, topics, history = reply
    snapshot = Snapshot(
        [user for user in map(_entry, values) if user is not None],
        [ban.decode() for ban in bans],
        {topics[i].decode(): topics[i + 1].decode() for i in range(0, len(topics), 2)},
        {history[i].decode(): history[i + 1] for i in range(0, len(history), 2)},
    )
    return int(seq), {int(renames[i]): renames[i + 1].decode() for i in range(0, len(renames), 2)}, snapshot
