"""Redis Streams, as the bus needs them: the primitives under :class:`~engine.RedisBus`.

Keys (``ns`` is the namespace, ``agentrace`` by default):

- ``{ns}:stream:{topic}``: one stream per topic; an entry's fields are the
  message (id, key, payload, publisher, W3C ``traceparent`` of its ``send``
  span, the run's root context, ...), see :data:`FIELDS`.
- one consumer group per subscribing group on that stream (XGROUP CREATE ...
  MKSTREAM); Redis keeps each group's pending entries list (PEL): delivered,
  not yet acknowledged, with a delivery count and an idle time.
- ``{ns}:dead:{topic}``: the dead-letter stream; an entry moves there (XADD +
  XACK in one MULTI) after the maximum attempts.
- ``{ns}:done:{group}:{message_id}``: set (SET NX, with a TTL) when a group has
  handled a message; what an idempotent consumer checks, so the check holds
  across processes and machines.
- ``{ns}:published:{message_id}``: the stream entry id a message was added as,
  so a publish retried after a lost reply adds nothing twice (one Lua script).

Delivery: XREADGROUP ``>`` hands out new entries (delivery count 1); an entry
not acknowledged within the ack timeout is taken over by XAUTOCLAIM (count + 1)
by any consumer of the group, itself included. A nack makes an entry claimable
at once, or after a delay, by setting its idle time (XCLAIM ... IDLE ... JUSTID,
which leaves the delivery count alone).

Thread and async rules: every method is a coroutine for the event loop that
owns ``client`` (a ``redis.asyncio.Redis``); one :class:`RedisStreams` may be
shared by the coroutines of that loop. Connection errors propagate
(``redis.exceptions.ConnectionError``): retrying is the bus's business, and every
write here is safe to retry (publish is deduplicated, XACK and SET NX are
idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

# The fields of a stream entry (all strings).
F_ID: Final = "id"  # messaging.message.id
F_TOPIC: Final = "topic"
F_KEY: Final = "key"  # ordering key ("" for none)
F_PAYLOAD: Final = "payload"  # canonical JSON
F_PUBLISHER: Final = "publisher"  # the publishing agent
F_TRACEPARENT: Final = "traceparent"  # W3C context of the send span
F_RUN: Final = "run"  # W3C context of the run's root span: process spans are its children
F_HEADERS: Final = "headers"  # JSON object of other headers the bus carries
FIELDS: Final = (F_ID, F_TOPIC, F_KEY, F_PAYLOAD, F_PUBLISHER, F_TRACEPARENT, F_RUN, F_HEADERS)

# Dead-letter entries carry the original fields plus these.
F_DEAD_GROUP: Final = "dead.group"
F_DEAD_ATTEMPTS: Final = "dead.attempts"
F_DEAD_REASON: Final = "dead.reason"
F_DEAD_SOURCE: Final = "dead.source"  # the entry id in the topic's stream

DAY_S: Final = 86_400

# XADD once per message id: a publish retried after a lost reply returns the first entry's id.
_PUBLISH_ONCE = """
local first = redis.call('GET', KEYS[2])
if first then return first end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return id
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as a consumer got it. ``deliveries`` counts this delivery (1 = first)."""

    topic: str
    entry_id: str
    fields: Mapping[str, str]
    deliveries: int = 1

    @property
    def message_id(self) -> str:
        return self.fields.get(F_ID, "")


@dataclass(slots=True)
class _Cursor:
    """Where the next XAUTOCLAIM scan of one (topic, group) starts."""

    start: str = "0-0"
    deleted: list[str] = field(default_factory=list)


class RedisStreams:
    """Streams, groups, claims, dead letters and the idempotency keys of one namespace."""

    def __init__(
        self, client: aioredis.Redis, *, namespace: str = "agentrace", done_ttl_s: int = 7 * DAY_S
    ) -> None:
        if not namespace or ":" in namespace:
            raise ValueError(f"namespace {namespace!r}: a non-empty name without ':'")
        self.client = client
        self.namespace = namespace
        self.done_ttl_s = done_ttl_s
        self._publish_once = client.register_script(_PUBLISH_ONCE)
        self._cursors: dict[tuple[str, str], _Cursor] = {}

    # -- names ---------------------------------------------------------------------------------

    def stream(self, topic: str) -> str:
        return f"{self.namespace}:stream:{topic}"

    def dead_stream(self, topic: str) -> str:
        return f"{self.namespace}:dead:{topic}"

    def done_key(self, group: str, message_id: str) -> str:
        return f"{self.namespace}:done:{group}:{message_id}"

    def published_key(self, message_id: str) -> str:
        return f"{self.namespace}:published:{message_id}"

    def topic_of(self, stream: str) -> str:
        return stream.removeprefix(f"{self.namespace}:stream:")

    # -- groups --------------------------------------------------------------------------------

    async def ensure_group(self, topic: str, group: str, *, start: str = "$") -> bool:
        """Create ``group`` on ``topic``'s stream (and the stream) unless it exists; True if created.

        ``start="$"``: the group gets what is published from now on (``"0"``: the whole stream).
        """
        try:
            await self.client.xgroup_create(self.stream(topic), group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def groups(self, topic: str) -> list[dict[str, Any]]:
        """XINFO GROUPS of the topic's stream ([] when there is no stream)."""
        try:
            return list(await self.client.xinfo_groups(self.stream(topic)))
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise

    # -- publish -------------------------------------------------------------------------------

    async def publish(self, topic: str, fields: Mapping[str, str]) -> str:
        """XADD ``fields`` to ``topic`` once per ``fields["id"]``; the entry id."""
        message_id = fields.get(F_ID)
        if not message_id:
            raise ValueError("a message needs an id field")
        argv: list[str] = [str(self.done_ttl_s)]
        for k, v in fields.items():
            argv += [k, v]
        entry_id = await self._publish_once(
            keys=[self.stream(topic), self.published_key(message_id)], args=argv
        )
        return _text(entry_id)

    # -- consume -------------------------------------------------------------------------------

    async def read_new(
        self,
        topics: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int = 64,
        block_ms: int | None = None,
    ) -> list[Entry]:
        """XREADGROUP ``>``: entries never delivered to ``group`` (waiting up to ``block_ms``)."""
        if not topics:
            return []
        reply = await self.client.xreadgroup(
            group, consumer, {self.stream(t): ">" for t in topics}, count=count, block=block_ms
        )
        return [
            Entry(self.topic_of(_text(stream)), _text(eid), _fields(raw))
            for stream, entries in _stream_items(reply)
            for eid, raw in entries
            if raw is not None
        ]

    async def read_own_pending(
        self, topic: str, group: str, consumer: str, *, count: int = 64
    ) -> list[Entry]:
        """XREADGROUP from ``0``: what ``consumer`` was handed and has not acknowledged (after a restart
        of a consumer that keeps its name). Redis counts this read as a delivery."""
        reply = await self.client.xreadgroup(
            group, consumer, {self.stream(topic): "0"}, count=count
        )
        entries = [
            (_text(eid), _fields(raw))
            for _, items in _stream_items(reply)
            for eid, raw in items
            if raw is not None
        ]
        counts = await self._delivery_counts(topic, group, consumer, [e for e, _ in entries])
        return [Entry(topic, eid, f, counts.get(eid, 1)) for eid, f in entries]

    async def claim_stuck(
        self, topic: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 64
    ) -> list[Entry]:
        """XAUTOCLAIM for ``consumer`` entries of ``group`` idle for ``min_idle_ms`` or more.

        Each call continues the previous scan of this (topic, group) where it stopped
        and starts over once it reached the end. The entries come with their delivery
        count (this claim included).
        """
        cursor = self._cursors.setdefault((topic, group), _Cursor())
        reply = await self.client.xautoclaim(
            self.stream(topic), group, consumer, min_idle_ms, start_id=cursor.start, count=count
        )
        cursor.start = _text(reply[0])
        if len(reply) > 2 and reply[2]:
            # Entries deleted from the stream (trimmed) while pending: Redis drops them from the PEL.
            cursor.deleted.extend(_text(d) for d in reply[2])
        entries = [(_text(eid), _fields(raw)) for eid, raw in reply[1] if raw is not None]
        counts = await self._delivery_counts(topic, group, consumer, [e for e, _ in entries])
        return [Entry(topic, eid, f, counts.get(eid, 1)) for eid, f in entries]

    async def _delivery_counts(
        self, topic: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> dict[str, int]:
        if not entry_ids:
            return {}
        ordered = sorted(entry_ids, key=_id_key)
        rows = await self.client.xpending_range(
            self.stream(topic), group, ordered[0], ordered[-1], len(ordered) * 4 + 16, consumer
        )
        wanted = set(entry_ids)
        return {
            _text(r["message_id"]): int(r["times_delivered"])
            for r in rows
            if _text(r["message_id"]) in wanted
        }

    async def pending(self, topic: str, group: str) -> int:
        """How many entries ``group`` has been handed and not acknowledged."""
        try:
            info = await self.client.xpending(self.stream(topic), group)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(info["pending"])

    async def pending_entries(
        self, topic: str, group: str, *, count: int = 1000
    ) -> list[dict[str, Any]]:
        """The group's PEL: ``message_id``, ``consumer``, ``time_since_delivered``, ``times_delivered``."""
        rows = await self.client.xpending_range(self.stream(topic), group, "-", "+", count)
        return [
            {
                "message_id": _text(r["message_id"]),
                "consumer": _text(r["consumer"]),
                "time_since_delivered": int(r["time_since_delivered"]),
                "times_delivered": int(r["times_delivered"]),
            }
            for r in rows
        ]

    # -- settle --------------------------------------------------------------------------------

    async def ack(self, entry: Entry, group: str, *, mark_done: bool = False) -> bool:
        """XACK the entry; with ``mark_done`` also note the message as handled by ``group``
        (one MULTI). True when the entry was still pending (this ack settled it)."""
        if not mark_done:
            return bool(await self.client.xack(self.stream(entry.topic), group, entry.entry_id))
        async with self.client.pipeline(transaction=True) as p:
            p.set(
                self.done_key(group, entry.message_id), entry.entry_id, nx=True, ex=self.done_ttl_s
            )
            p.xack(self.stream(entry.topic), group, entry.entry_id)
            _, acked = await p.execute()
        return bool(acked)

    async def is_done(self, group: str, message_id: str) -> bool:
        """Whether ``group`` has handled ``message_id`` (by any consumer, in any process)."""
        return bool(await self.client.exists(self.done_key(group, message_id)))

    async def release(
        self, entry: Entry, group: str, consumer: str, *, ack_timeout_ms: int, delay_ms: int = 0
    ) -> None:
        """A nack: make the entry claimable ``delay_ms`` from now rather than after the ack timeout.

        Sets its idle time to ``ack_timeout_ms - delay_ms`` (XCLAIM ... IDLE ... JUSTID keeps
        the delivery count), so the next XAUTOCLAIM with ``min_idle_ms=ack_timeout_ms``
        after ``delay_ms`` takes it, by whichever consumer of the group asks first.
        """
        idle = max(ack_timeout_ms - delay_ms, 0)
        await self.client.xclaim(
            self.stream(entry.topic), group, consumer, 0, [entry.entry_id], idle=idle, justid=True
        )

    async def dead_letter(self, entry: Entry, group: str, *, attempts: int, reason: str) -> str:
        """Move the entry to the topic's dead-letter stream for ``group`` (XADD + XACK in one
        MULTI); the dead-letter entry's id."""
        fields = dict(entry.fields)
        fields.update(
            {
                F_DEAD_GROUP: group,
                F_DEAD_ATTEMPTS: str(attempts),
                F_DEAD_REASON: reason,
                F_DEAD_SOURCE: entry.entry_id,
            }
        )
        async with self.client.pipeline(transaction=True) as p:
            p.xadd(self.dead_stream(entry.topic), fields)  # type: ignore[arg-type]  # str fields
            p.xack(self.stream(entry.topic), group, entry.entry_id)
            dead_id, _ = await p.execute()
        return _text(dead_id)

    async def dead_letters(self, topic: str, *, count: int = 1000) -> list[Entry]:
        """The dead-letter stream of ``topic``, oldest first."""
        rows: Any = await self.client.xrange(self.dead_stream(topic), count=count)
        return [Entry(topic, _text(eid), _fields(raw)) for eid, raw in rows]

    async def entries(self, topic: str, *, count: int = 10_000) -> list[Entry]:
        """The topic's stream, oldest first (for tools and tests)."""
        rows: Any = await self.client.xrange(self.stream(topic), count=count)
        return [Entry(topic, _text(eid), _fields(raw)) for eid, raw in rows]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _stream_items(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREADGROUP's reply as (stream, entries) pairs (RESP2, redis-py's default protocol)."""
    return [(item[0], item[1]) for item in reply or ()]
