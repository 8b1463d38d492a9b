"""Redis Streams as the bus needs them: the atomic steps under :class:`~engine.RedisBus`.

Keys, in one namespace ``ns`` (``agentrace`` by default); ``T`` and ``G`` below are
a topic and a group written with their byte lengths (``5:order``) so no name can
collide with another:

==================================  ===============================================
``{ns}:stream:{topic}``             one stream per topic; an entry is one message
``{ns}:keyq:T:G:{key}``             a group's unsettled entries of one ordering key,
                                    head first (the head alone may be delivered)
``{ns}:attempts:T:G``               hash: entry id -> deliveries to the group's handlers
``{ns}:running``                    hash: T:G:{entry} -> ``instance attempt time_us``
                                    while a handler holds the entry
``{ns}:alive:{instance}``           set, with a short expiry, while a bus process lives
``{ns}:policy``                     hash: T:G -> the group's ack timeout in ms ("" none)
``{ns}:published:T:{run}:{id}``     the entry a message was added as (publish once)
``{ns}:done:G:{run}:{id}``          what an idempotent consumer remembered (its outbox)
==================================  ===============================================

An entry's fields: ``id`` (``messaging.message.id``), ``traceparent`` (the W3C
context of its ``send`` span), ``key`` when it has one, and ``message`` (the whole
:class:`~engine.Message` as JSON, headers included).

Each step that must not interleave with another consumer's is one Lua script
(a script runs atomically on the server):

- ``publish``: XADD once per (topic, run, message id), and append the entry to the
  key queue of every group the stream has at that moment (groups start at ``$``,
  so a later group never sees it, consistently);
- ``take``: XREADGROUP ``>`` (new entries) or XAUTOCLAIM (entries idle past the ack
  timeout, or nacked), then for each entry: deliver it if it is its key's head and
  still ours, count the attempt, and mark it running; or report it parked behind
  its key's head, or out of attempts. Marking in the same script leaves no moment
  when an entry is handed out but not visibly held;
- ``settle``: XACK (with a dead-letter copy published in the same script), pop the
  key queue, and hand the key's next entry, if some consumer read it already, to
  the settling consumer (XCLAIM JUSTID). The running mark stays until the handler
  returns (``unmark``): a handler that acked may still be publishing;
- ``release``: a nack, making the entry claimable by the group after a delay by
  setting its idle time (XCLAIM IDLE JUSTID keeps Redis' own delivery count);
- ``live``: how many unsettled entries can still make something happen (see
  :meth:`RedisStreams.live`).

Thread and async rules: coroutines of the event loop that owns ``client`` (a
``redis.asyncio.Redis`` with ``decode_responses=True``). Connection errors
propagate; every script is safe to run again after a lost reply (publish is once
per id, XACK and the marks are idempotent), so the bus may retry them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

F_ID: Final = "id"
F_TRACEPARENT: Final = "traceparent"
F_KEY: Final = "key"
F_MESSAGE: Final = "message"

DAY_S: Final = 86_400
# A nacked entry's idle time is set near this mark (about 35 years in ms), which no entry
# reaches by waiting: a claim with this minimum idle time takes nacked entries only.
# It must stay below the milliseconds since 1970, as Redis computes now - idle.
NACK_MARK_MS: Final = 1 << 40
MAX_NACK_DELAY_MS: Final = DAY_S * 1000

TakeStatus = Literal["deliver", "parked", "exhausted", "gone"]
_STATUS: Final[dict[int, TakeStatus]] = {0: "gone", 1: "parked", 2: "exhausted", 3: "deliver"}


def lp(name: str) -> str:
    """``name`` with its byte length in front (``5:order``): unambiguous inside a key."""
    return f"{len(name.encode())}:{name}"


# Shared Lua: publish once, with key queues for the stream's groups.
#   tp: the topic prefix "T:" of the keys; key: "" for none, "=" .. key otherwise.
_LUA_PUBLISH_INTO = """
local function publish_into(ns, stream, tp, pubkey, ttl, key, fields)
  local first = redis.call('GET', pubkey)
  if first then return first end
  local id = redis.call('XADD', stream, '*', unpack(fields))
  redis.call('SET', pubkey, id, 'EX', ttl)
  if key ~= '' then
    local k = string.sub(key, 2)
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local name = g[2]
      redis.call('RPUSH', ns .. ':keyq:' .. tp .. #name .. ':' .. name .. ':' .. k, id)
    end
  end
  return id
end
"""

# KEYS: stream, pubkey. ARGV: ns, tp, ttl, key, fields...
_PUBLISH = (
    _LUA_PUBLISH_INTO
    + """
return publish_into(ARGV[1], KEYS[1], ARGV[2], KEYS[2], ARGV[3], ARGV[4], {unpack(ARGV, 5)})
"""
)

# KEYS: stream, attempts hash, running hash.
# ARGV: ns, gp ("T:G:"), group, consumer, instance, max_attempts, mode, count, min_idle_ms, start.
# mode "new": XREADGROUP >; mode "claim": XAUTOCLAIM from start.
# Returns {next_start, {entry_id, status, attempts, fields...}...}
_TAKE = """
local ns, gp, group, consumer, instance = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', t[2])
local items, nxt = {}, '0-0'
if ARGV[7] == 'new' then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', ARGV[8], 'STREAMS', KEYS[1], '>')
  if r then items = r[1][2] end
else
  local r = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[9], ARGV[10], 'COUNT', ARGV[8])
  nxt, items = r[1], r[2]
end
local out = {nxt}
for _, e in ipairs(items) do
  local id, f = e[1], e[2]
  if f then
    local key = false
    for i = 1, #f, 2 do if f[i] == 'key' then key = f[i + 1] end end
    local status, n = 3, 0
    if key then
      local head = redis.call('LINDEX', ns .. ':keyq:' .. gp .. key, 0)
      if head and head ~= id then status = 1 end
    end
    -- A mark left by a process that is gone: its delivery was abandoned.
    local prev = false
    local mark = redis.call('HGET', KEYS[3], gp .. id)
    if mark then
      local holder = string.match(mark, '^(%S+)')
      if holder ~= instance and redis.call('EXISTS', ns .. ':alive:' .. holder) == 0 then prev = mark end
    end
    if status == 3 then
      local done = tonumber(redis.call('HGET', KEYS[2], id) or '0')
      if done >= max then
        status, n = 2, done
      else
        n = redis.call('HINCRBY', KEYS[2], id, 1)
        redis.call('HSET', KEYS[3], gp .. id, instance .. ' ' .. n .. ' ' .. now)
      end
    end
    table.insert(out, {id, status, n, f, prev})
  end
end
return out
"""

# KEYS: stream, attempts hash, running hash.
# ARGV: ns, gp, group, consumer, instance, entry, key ("" / "=k"), max_attempts,
#       dead ("0"/"1"), dead stream, dead tp, dead pubkey, ttl, dead fields...
# Returns {acked (0/1), next entry id or false, next attempts, next fields}.
_SETTLE = (
    _LUA_PUBLISH_INTO
    + """
local ns, gp, group, consumer, instance, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = ARGV[7]
if redis.call('XACK', KEYS[1], group, id) == 0 then return {0, false, 0, false} end
redis.call('HDEL', KEYS[2], id)
if ARGV[9] == '1' then
  publish_into(ns, ARGV[10], ARGV[11], ARGV[12], ARGV[13], key, {unpack(ARGV, 14)})
end
if key == '' then return {1, false, 0, false} end
local q = ns .. ':keyq:' .. gp .. string.sub(key, 2)
if redis.call('LINDEX', q, 0) ~= id then
  redis.call('LREM', q, 1, id)
  return {1, false, 0, false}
end
redis.call('LPOP', q)
local n = redis.call('LINDEX', q, 0)
if not n or #redis.call('XPENDING', KEYS[1], group, n, n, 1) == 0 then return {1, false, 0, false} end
-- Read by some consumer already and parked there: this consumer delivers it now.
redis.call('XCLAIM', KEYS[1], group, consumer, 0, n, 'JUSTID')
local r = redis.call('XRANGE', KEYS[1], n, n)
if #r == 0 then return {1, false, 0, false} end
local done = tonumber(redis.call('HGET', KEYS[2], n) or '0')
if done >= tonumber(ARGV[8]) then return {1, n, -done, r[1][2]} end
local a = redis.call('HINCRBY', KEYS[2], n, 1)
local t = redis.call('TIME')
redis.call('HSET', KEYS[3], gp .. n, instance .. ' ' .. a .. ' ' .. t[1] .. string.format('%06d', t[2]))
return {1, n, a, r[1][2]}
"""
)

# KEYS: stream, attempts hash, running hash. ARGV: gp, group, consumer, entry, idle_ms, max_attempts.
# Returns {state, attempts}: state 0 settled already, 1 held by another consumer, 2 released,
# 3 out of attempts (the caller dead-letters it).
_RELEASE = """
local p = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[4], ARGV[4], 1)
if #p == 0 then return {0, 0} end
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if p[1][2] ~= ARGV[3] then return {1, n} end
if n >= tonumber(ARGV[6]) then return {3, n} end
redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[4], 'IDLE', ARGV[5], 'JUSTID')
return {2, n}
"""

# KEYS: running hash. ARGV: (field, "instance attempt ") pairs. Delete a mark only if it is still
# this delivery's (the same process may hold a later attempt of the entry by now).
_UNMARK = """
local n = 0
for i = 1, #ARGV, 2 do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, #ARGV[i + 1]) == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
"""

# KEYS: attempts hash. ARGV: entry. One more attempt, if the entry is still unsettled.
_COUNT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end
return 0
"""

# ARGV: ns, nack threshold ms. Counts what can still make something happen.
_LIVE = """
local ns, nack = ARGV[1], tonumber(ARGV[2])
local prefix = ns .. ':stream:'
local policy = ns .. ':policy'
local running = ns .. ':running'
-- Whether anything can still happen is all a caller needs: stop at the first sign of it,
-- so a busy namespace costs a few commands, however long its pending lists.
-- Handlers still running in live processes (they may publish, ack or nack yet).
local marks = redis.call('HGETALL', running)
local dead = {}
for i = 1, #marks, 2 do
  local holder = string.match(marks[i + 1], '^(%S+)')
  if holder and redis.call('EXISTS', ns .. ':alive:' .. holder) == 1 then return {1, 0} end
  table.insert(dead, marks[i])
end
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', prefix .. '*', 'COUNT', 1000)
  cursor = r[1]
  for _, stream in ipairs(r[2]) do
    if redis.call('TYPE', stream)['ok'] == 'stream' then
      local topic = string.sub(stream, #prefix + 1)
      local tp = #topic .. ':' .. topic .. ':'
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        local info = {}
        for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
        local name = info['name']
        local gp = tp .. #name .. ':' .. name .. ':'
        -- Not yet delivered to the group.
        if #redis.call('XRANGE', stream, '(' .. info['last-delivered-id'], '+', 'COUNT', 1) > 0 then
          return {1, 0}
        end
        if info['pending'] > 0 then
          local timeout = redis.call('HGET', policy, gp) or ''
          for _, p in ipairs(redis.call('XPENDING', stream, name, '-', '+', 100000)) do
            local id, idle = p[1], p[3]
            if idle >= nack then return {1, 0} end  -- nacked: it will be delivered again
            if timeout ~= '' then
              -- Unacked where an ack timeout will deliver it again, unless it waits behind its key.
              local e = redis.call('XRANGE', stream, id, id)
              local key = false
              if #e > 0 then
                local f = e[1][2]
                for i = 1, #f, 2 do if f[i] == 'key' then key = f[i + 1] end end
              end
              local head = key and redis.call('LINDEX', ns .. ':keyq:' .. gp .. key, 0)
              if not head or head == id then return {1, 0} end
            end
          end
        end
      end
    end
  end
until cursor == '0'
-- Nothing live. A mark of a process that looks dead is a suspect while its entry is pending
-- (the process may be cut off from Redis for a moment, or dead), garbage once it is settled.
local suspects = 0
for _, field in ipairs(dead) do
  local tl = tonumber(string.match(field, '^(%d+):'))
  local p = #tostring(tl) + 2
  local topic = string.sub(field, p, p + tl - 1)
  p = p + tl + 1
  local gls = string.match(field, '^(%d+):', p)
  local gl = tonumber(gls)
  p = p + #gls + 1
  local group = string.sub(field, p, p + gl - 1)
  local id = string.sub(field, p + gl + 1)
  local ok, pend = pcall(redis.call, 'XPENDING', prefix .. topic, group, id, id, 1)
  if ok and #pend > 0 then
    suspects = suspects + 1
  else
    redis.call('HDEL', running, field)
  end
end
return {0, suspects}
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry a consumer took: ``status`` says what to do with it.

    ``deliver``: hand it to the handler as attempt ``attempts`` (it is marked running);
    ``parked``: an earlier entry of its key is unsettled, do nothing (whoever settles
    that one delivers this); ``exhausted``: it used up its attempts (``attempts``),
    dead-letter it; ``gone``: settled or taken by another consumer meanwhile.
    """

    topic: str
    entry_id: str
    fields: Mapping[str, str]
    status: TakeStatus = "deliver"
    attempts: int = 1
    abandoned: str | None = None  # "instance attempt delivered_us" of a dead process's delivery

    @property
    def message_id(self) -> str:
        return self.fields.get(F_ID, "")


@dataclass(frozen=True, slots=True)
class Settled:
    """What a settle did: ``acked`` (False: settled already) and the key's next entry, which
    the settling consumer now holds (status ``deliver`` or ``exhausted``), if any."""

    acked: bool
    next: Entry | None = None


class RedisStreams:
    """The keys and scripts of one namespace (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str = "agentrace", ttl_s: int = 7 * DAY_S
    ) -> None:
        if not namespace or ":" in namespace or " " in namespace:
            raise ValueError(f"namespace {namespace!r}: a non-empty name without ':' or spaces")
        self.client = client
        self.ns = namespace
        self.ttl_s = ttl_s
        self._publish = client.register_script(_PUBLISH)
        self._take = client.register_script(_TAKE)
        self._settle = client.register_script(_SETTLE)
        self._release = client.register_script(_RELEASE)
        self._unmark = client.register_script(_UNMARK)
        self._count = client.register_script(_COUNT)
        self._live = client.register_script(_LIVE)

    # -- names ---------------------------------------------------------------------------------

    def stream(self, topic: str) -> str:
        return f"{self.ns}:stream:{topic}"

    def topic_of(self, stream: str) -> str:
        return stream.removeprefix(f"{self.ns}:stream:")

    def gp(self, topic: str, group: str) -> str:
        """The ``T:G:`` prefix of one group's keys and marks."""
        return f"{lp(topic)}:{lp(group)}:"

    def attempts_key(self, topic: str, group: str) -> str:
        return f"{self.ns}:attempts:{self.gp(topic, group)}"

    @property
    def running_key(self) -> str:
        return f"{self.ns}:running"

    @property
    def policy_key(self) -> str:
        return f"{self.ns}:policy"

    def alive_key(self, instance: str) -> str:
        return f"{self.ns}:alive:{instance}"

    def published_key(self, topic: str, run: str, message_id: str) -> str:
        return f"{self.ns}:published:{lp(topic)}:{run}:{message_id}"

    def done_key(self, group: str, run: str, message_id: str) -> str:
        return f"{self.ns}:done:{lp(group)}:{run}:{message_id}"

    # -- groups --------------------------------------------------------------------------------

    async def ensure_group(
        self, topic: str, group: str, *, ack_timeout_ms: int | None = None, start: str = "$"
    ) -> bool:
        """Create ``group`` on ``topic`` (and the stream) unless it exists, and note its ack
        timeout for :meth:`live`; True when this call created it."""
        created = True
        try:
            await self.client.xgroup_create(self.stream(topic), group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            created = False
        timeout = "" if ack_timeout_ms is None else str(ack_timeout_ms)
        await self.client.hset(self.policy_key, self.gp(topic, group), timeout)
        return created

    async def topics(self) -> list[str]:
        """Every topic with a stream in this namespace, sorted."""
        out = [self.topic_of(s) async for s in self.client.scan_iter(match=f"{self.ns}:stream:*")]
        return sorted(out)

    async def groups(self, topic: str) -> list[dict[str, Any]]:
        """XINFO GROUPS of the topic's stream ([] when there is no stream)."""
        try:
            return list(await self.client.xinfo_groups(self.stream(topic)))
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise

    # -- publish -------------------------------------------------------------------------------

    async def publish(self, topic: str, fields: Mapping[str, str], *, run: str = "") -> str:
        """XADD ``fields`` to ``topic`` once per (topic, ``run``, ``fields["id"]``); the entry id."""
        message_id = fields.get(F_ID)
        if not message_id:
            raise ValueError("a message needs an id field")
        key = fields.get(F_KEY)
        argv: list[str] = [
            self.ns,
            f"{lp(topic)}:",
            str(self.ttl_s),
            "" if key is None else "=" + key,
        ]
        for k, v in fields.items():
            argv += [k, v]
        entry_id = await self._publish(
            keys=[self.stream(topic), self.published_key(topic, run, message_id)], args=argv
        )
        return str(entry_id)

    # -- take ----------------------------------------------------------------------------------

    async def take(
        self,
        topic: str,
        group: str,
        consumer: str,
        instance: str,
        *,
        max_attempts: int,
        count: int = 16,
        claim_idle_ms: int | None = None,
        start: str = "0-0",
    ) -> tuple[str, list[Entry]]:
        """New entries for ``group`` (``claim_idle_ms`` None), or entries idle at least
        ``claim_idle_ms`` claimed from other consumers, scanning from ``start``. Returns the
        scan's next start ("0-0": it reached the end) and the entries, each with its status."""
        mode = "new" if claim_idle_ms is None else "claim"
        reply = await self._take(
            keys=[self.stream(topic), self.attempts_key(topic, group), self.running_key],
            args=[
                self.ns, self.gp(topic, group), group, consumer, instance, max_attempts, mode,
                count, claim_idle_ms or 0, start,
            ],
        )  # fmt: skip
        nxt, rows = str(reply[0]), reply[1:]
        entries = [
            Entry(
                topic,
                str(row[0]),
                _pairs(row[3]),
                _STATUS[int(row[1])],
                int(row[2]),
                row[4] or None,
            )
            for row in rows
        ]
        return nxt, entries

    async def last_id(self, topic: str) -> str:
        """The id of the newest entry of ``topic`` ("0-0" when empty): where to wait from."""
        rows: Any = await self.client.xrevrange(self.stream(topic), count=1)
        return str(rows[0][0]) if rows else "0-0"

    async def wait_new(self, topics_after: Mapping[str, str], block_ms: int) -> dict[str, str]:
        """Block up to ``block_ms`` until some topic has an entry after the given id; the newest
        id seen per topic that has one."""
        reply: Any = await self.client.xread(
            {self.stream(t): after for t, after in topics_after.items()}, count=1, block=block_ms
        )
        return {self.topic_of(str(s)): str(items[-1][0]) for s, items in reply or () if items}

    # -- settle --------------------------------------------------------------------------------

    async def settle(
        self,
        topic: str,
        group: str,
        consumer: str,
        instance: str,
        entry_id: str,
        *,
        key: str | None,
        max_attempts: int,
        dead_topic: str | None = None,
        dead_fields: Mapping[str, str] | None = None,
        run: str = "",
    ) -> Settled:
        """XACK ``entry_id`` for ``group`` (with ``dead_topic``: also publish ``dead_fields``
        there, in the same script) and hand on its key's next entry."""
        dead_args: list[str] = ["0", "", "", "", str(self.ttl_s)]
        if dead_topic is not None:
            fields = dict(dead_fields or {})
            dead_args = [
                "1",
                self.stream(dead_topic),
                f"{lp(dead_topic)}:",
                self.published_key(dead_topic, run, fields.get(F_ID, entry_id)),
                str(self.ttl_s),
            ]
            for k, v in fields.items():
                dead_args += [k, v]
        reply = await self._settle(
            keys=[self.stream(topic), self.attempts_key(topic, group), self.running_key],
            args=[
                self.ns, self.gp(topic, group), group, consumer, instance, entry_id,
                "" if key is None else "=" + key, max_attempts, *dead_args,
            ],
        )  # fmt: skip
        acked, nxt, n, raw = reply
        if not int(acked):
            return Settled(False)
        if not nxt:
            return Settled(True)
        n = int(n)
        status: TakeStatus = "exhausted" if n <= 0 else "deliver"
        return Settled(True, Entry(topic, str(nxt), _pairs(raw), status, abs(n)))

    async def release(
        self,
        topic: str,
        group: str,
        consumer: str,
        entry_id: str,
        *,
        idle_ms: int,
        max_attempts: int,
    ) -> tuple[Literal["settled", "elsewhere", "released", "exhausted"], int]:
        """A nack: set the entry's idle time to ``idle_ms`` so a claim takes it (see the module
        docstring), unless it used up its attempts; with the attempts so far."""
        state, n = await self._release(
            keys=[self.stream(topic), self.attempts_key(topic, group), self.running_key],
            args=[self.gp(topic, group), group, consumer, entry_id, idle_ms, max_attempts],
        )
        names = ("settled", "elsewhere", "released", "exhausted")
        return names[int(state)], int(n)  # type: ignore[return-value]  # one of the four

    async def count_attempt(self, topic: str, group: str, entry_id: str) -> None:
        """One more delivery of a pending entry (a duplicate the bus made); nothing once settled."""
        await self._count(keys=[self.attempts_key(topic, group)], args=[entry_id])

    async def unmark_many(self, marks: Sequence[tuple[str, str, str, int]], instance: str) -> None:
        """:meth:`unmark` for many ``(topic, group, entry_id, attempt)`` at once (one script)."""
        args: list[str] = []
        for topic, group, entry_id, attempt in marks:
            args += [self.gp(topic, group) + entry_id, f"{instance} {attempt} "]
        await self._unmark(keys=[self.running_key], args=args)

    async def unmark(
        self, topic: str, group: str, entry_id: str, instance: str, attempt: int
    ) -> None:
        """Drop the running mark of ``entry_id`` if it is still that of ``attempt`` by ``instance``."""
        await self._unmark(
            keys=[self.running_key],
            args=[self.gp(topic, group) + entry_id, f"{instance} {attempt} "],
        )

    # -- liveness ------------------------------------------------------------------------------

    async def heartbeat(self, instance: str, ttl_ms: int) -> None:
        await self.client.set(self.alive_key(instance), "1", px=ttl_ms)

    async def gone(self, instance: str) -> None:
        await self.client.delete(self.alive_key(instance))

    async def live(self) -> tuple[int, int]:
        """``(live, suspects)``. ``live`` is 1 when something can still happen in the
        namespace, 0 when nothing can: it looks for a handler running in a live process, an
        entry not yet delivered to a group, a nacked entry, or an unacked entry (not parked
        behind its key) of a group with an ack timeout, and stops at the first. An entry
        unsettled otherwise is in flight for good: its consumer died or dropped it, and
        nothing will deliver it again. When ``live`` is 0, ``suspects`` counts pending
        entries marked by a process that looks dead: it may only be cut off from Redis for a
        moment (a restart), so a caller waits a heartbeat's lapse before it believes them.
        Marks of dead processes on settled entries are deleted then."""
        live, suspects = await self._live(keys=[], args=[self.ns, NACK_MARK_MS - MAX_NACK_DELAY_MS])
        return int(live), int(suspects)

    # -- reading back --------------------------------------------------------------------------

    async def pending(
        self, topic: str, group: str, *, count: int = 100_000
    ) -> list[dict[str, Any]]:
        """The group's pending entries: ``message_id``, ``consumer``, ``time_since_delivered``,
        ``times_delivered`` (Redis' count)."""
        try:
            rows = await self.client.xpending_range(self.stream(topic), group, "-", "+", count)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise
        return [
            {
                "message_id": str(r["message_id"]),
                "consumer": str(r["consumer"]),
                "time_since_delivered": int(r["time_since_delivered"]),
                "times_delivered": int(r["times_delivered"]),
            }
            for r in rows
        ]

    async def attempts(self, topic: str, group: str, entry_ids: Sequence[str]) -> list[int]:
        if not entry_ids:
            return []
        vals = await self.client.hmget(self.attempts_key(topic, group), list(entry_ids))
        return [int(v or 0) for v in vals]

    async def entries(
        self, topic: str, *, after: str | None = None, count: int = 100_000
    ) -> list[tuple[str, dict[str, str]]]:
        """The topic's entries, oldest first (after entry id ``after``, exclusive)."""
        start = "-" if after is None else f"({after}"
        rows: Any = await self.client.xrange(self.stream(topic), min=start, count=count)
        return [(str(eid), dict(raw)) for eid, raw in rows]

    async def entry(self, topic: str, entry_id: str) -> dict[str, str] | None:
        rows: Any = await self.client.xrange(self.stream(topic), min=entry_id, max=entry_id)
        return dict(rows[0][1]) if rows else None

    # -- idempotent consumers ------------------------------------------------------------------

    async def remember(self, group: str, run: str, message_id: str, value: str) -> None:
        await self.client.set(self.done_key(group, run, message_id), value, ex=self.ttl_s)

    async def recall(self, group: str, run: str, message_id: str) -> str | None:
        v = await self.client.get(self.done_key(group, run, message_id))
        return None if v is None else str(v)


def _pairs(raw: Any) -> dict[str, str]:
    """A Lua reply's flat field list (or a mapping) as a dict."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    items = list(raw or ())
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}
