"""The bus on Redis Streams: the same :class:`~engine.Bus`, across processes and machines.

One stream per topic, one consumer group per subscribing group, each process of a
group a consumer of its own (``{consumer}@{instance}``), so the workers of one agent
share its messages and Redis keeps what each holds. What the in-process bus does
in memory happens in Redis, atomically per step (see ``engine/_redis_streams.py``):

- **publish**: XADD with the message id and ``traceparent`` in the fields, once per
  message (a publish retried after a lost reply adds nothing twice);
- **deliver**: XREADGROUP for new entries; XAUTOCLAIM for entries unacked past the
  group's ``ack_timeout`` (a consumer that died, or hangs) and for nacked ones;
  ``attempt`` counts the group's deliveries of the message, kept in Redis;
- **ack / nack**: XACK; a nack makes the entry claimable after the policy's delay;
  after ``max_attempts`` it is dead-lettered (the ack and the copy to
  :func:`~engine.dead_letter_topic` are one script);
- **ordering per key**: the head of a key's queue alone is delivered; whoever
  settles it hands the next one on;
- **idempotent consumers**: ``remember``/``seen`` live in Redis, so a message one
  process applied is seen as applied by every other;
- **faults**: an injector, per process (its coins are drawn in this process's
  delivery order, which across processes is not repeatable).

The recording is not here: :class:`~engine.BusTracer` records the spans of every bus
the same way. What only a networked bus knows, a delivery abandoned by a process that
died (kill -9) before acking, is reported to ``on_abandoned`` when another consumer
claims the message, so the run can record it (:class:`Abandoned`).

Delivering happens while :meth:`RedisBus.run_until_idle` or :meth:`RedisBus.serve`
runs (once started, the consumer loops go on until :meth:`RedisBus.close`).
``run_until_idle`` returns when nothing more can happen anywhere in the namespace:
no entry is undelivered, held by a live process's handler, nacked, or waiting for
an ack timeout (see :meth:`~engine.distributed._streams.RedisStreams.live`). Other
processes' progress cannot be awaited, so it polls Redis for that
(``poll_interval``).

Connections: a command that fails for a lost connection (Redis restarted, a network
blip) is retried with backoff until ``reconnect_timeout``; then
:class:`RedisBusError`. Everything Redis acknowledged survives a restart when Redis
persists it (``appendonly yes``, ``appendfsync always``); un-acked deliveries are
delivered again. Groups lost with a Redis that kept nothing are created again.

Async rules: as every bus's: one event loop owns it; handlers run on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
import time as _time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..choreography._bus import (
    RUN_CONTEXT,
    TRACEPARENT,
    Bus,
    BusError,
    DeadLetter,
    DeadLetterListener,
    Delivery,
    DeliveryPolicy,
    Disposition,
    Handler,
    Message,
    Processed,
    Unsettled,
    dead_letter_topic,
)
from ..choreography._bus_tracer import context_of
from ..choreography._faults import Fault, FaultInjector, Faults
from ..choreography._memory_bus import BusStats
from ..core._time import RealTime, TimeSource
from ._streams import (
    F_ID,
    F_KEY,
    F_MESSAGE,
    F_TRACEPARENT,
    MAX_NACK_DELAY_MS,
    NACK_MARK_MS,
    Entry,
    RedisStreams,
)

T = TypeVar("T")
_NS: Final = 1_000_000_000
_RETRYABLE: Final = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# The run a handler is working for: its message's agentrace-run header. Idempotency marks
# are kept per run, so two runs of one seed (same message ids) do not see each other, and a
# message published without the header gets it, so the run's context always travels.
_current_run: contextvars.ContextVar[str] = contextvars.ContextVar("redis_bus_run", default="")


@contextlib.contextmanager
def run_context(header: str) -> Iterator[None]:
    """Publish (and remember, and check ``seen``) as part of the run whose root context is
    ``header`` (a W3C traceparent): what a handler does on its own."""
    token = _current_run.set(header)
    try:
        yield
    finally:
        _current_run.reset(token)


def _current_run_id() -> str:
    ctx = context_of(_current_run.get())
    return ctx.trace_id_hex if ctx is not None else ""


class RedisBusError(BusError):
    """Redis could not be reached within the reconnect timeout, or answered with an error."""


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A delivery whose process died before settling it (found when another consumer claimed
    the message): ``attempt`` to ``consumer`` of ``group``, by process ``instance``, at
    ``delivered_ns`` (0 when unknown)."""

    message: Message
    group: str
    consumer: str
    attempt: int
    instance: str
    delivered_ns: int = 0


AbandonedListener = Callable[[Abandoned], Awaitable[None]]


@dataclass(slots=True)
class RedisBusStats(BusStats):
    """:class:`~engine.BusStats` plus what only a networked bus has."""

    reconnects: int = 0  # commands retried after a lost connection
    claimed: int = 0  # entries taken over from other consumers (ack timeout or nack)
    abandoned: int = 0  # deliveries found abandoned by a process that died
    parked: int = 0  # entries read while an earlier one of their key was unsettled


@dataclass(slots=True, eq=False)
class _Sub:
    topic: str
    group: str
    handler: Handler
    consumer: str  # the name recorded (agentrace.message.consumer)
    redis_consumer: str  # the name Redis knows: one per process
    policy: DeliveryPolicy
    on_dead_letter: DeadLetterListener | None
    claim_start: str = "0-0"
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def claim_idle_ms(self) -> int:
        t = self.policy.ack_timeout
        return NACK_MARK_MS - MAX_NACK_DELAY_MS if t is None else max(1, int(t * 1000))

    @property
    def claim_interval(self) -> float:
        """Seconds between claim passes: often enough to notice a timeout within a quarter of it."""
        t = self.policy.ack_timeout
        return 0.25 if t is None else min(0.25, max(t / 4, 0.005))


def default_instance() -> str:
    """This process's name for Redis: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisBus(Bus):
    """A :class:`~engine.Bus` on Redis Streams (see the module docstring).

    ``client`` is a ``redis.asyncio.Redis`` made with ``decode_responses=True`` (use
    :meth:`from_url` to have one made, and closed with the bus). ``namespace`` prefixes
    every key, so several deployments can share one Redis. ``concurrency`` bounds the
    handlers running at once in this process. ``instance`` names this process.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "agentrace",
        policy: DeliveryPolicy | None = None,
        faults: Faults | FaultInjector | None = None,
        concurrency: int = 1,
        time: TimeSource | None = None,
        instance: str | None = None,
        on_abandoned: AbandonedListener | None = None,
        reconnect_timeout: float = 30.0,
        poll_interval: float = 0.02,
        heartbeat: float = 1.0,
        block: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.client = client
        self.streams = RedisStreams(client, namespace=namespace)
        self.namespace = namespace
        self.policy = policy or DeliveryPolicy()
        self.faults: FaultInjector | None = (
            faults.injector() if isinstance(faults, Faults) else faults
        )
        self.concurrency = concurrency
        self.time: TimeSource = time or RealTime()
        self.instance = instance or default_instance()
        if " " in self.instance:
            raise ValueError(f"instance {self.instance!r}: no spaces")
        self.on_abandoned = on_abandoned
        self.reconnect_timeout = reconnect_timeout
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self.block = block
        self.stats = RedisBusStats()
        self.dead_letters: list[DeadLetter] = []
        self._owns_client = owns_client
        self._subs: dict[tuple[str, str], _Sub] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._loops: list[asyncio.Task[None]] = []  # one consumer loop per subscription
        self._service: list[asyncio.Task[None]] = []  # heartbeat and unmarking, until close
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._unmarks: list[tuple[str, str, str, int]] = []
        self._unmark_wake = asyncio.Event()
        self._started = False
        self._closing = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBus:
        """A bus on a new client for ``url`` (``redis://host:port/db``), closed with the bus."""
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            # Retries are the bus's (with its reconnect timeout), not the client's.
            retry=Retry(NoBackoff(), 0),
            socket_timeout=30.0,
            socket_connect_timeout=5.0,
        )
        return cls(client, owns_client=True, **options)

    # -- Redis calls, retried over lost connections ------------------------------------------

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        deadline = _time.monotonic() + self.reconnect_timeout
        wait = 0.02
        while True:
            try:
                result = await fn()
            except _RETRYABLE as exc:
                _raise_if_cancelled()
                self._check_retry(what, exc, deadline, wait)
                self.stats.reconnects += 1
                await asyncio.sleep(wait)
                wait = min(wait * 2, 0.5)
                continue
            except ResponseError as exc:
                _raise_if_cancelled()
                if "NOGROUP" in str(exc) and self._subs:
                    # Redis came back without its data: make our groups again and go on.
                    await self._ensure_groups()
                    continue
                raise RedisBusError(f"redis {self.namespace}: {what}: {exc}") from exc
            _raise_if_cancelled()
            return result

    def _check_retry(self, what: str, exc: BaseException, deadline: float, wait: float) -> None:
        if self._closed or _time.monotonic() + wait > deadline:
            raise RedisBusError(
                f"redis {self.namespace}: {what}: {type(exc).__name__}: {exc} "
                f"(gave up after {self.reconnect_timeout:g} s)"
            ) from exc

    async def _ensure_groups(self) -> None:
        for sub in self._subs.values():
            await self.streams.ensure_group(
                sub.topic, sub.group, ack_timeout_ms=_timeout_ms(sub.policy)
            )

    # -- the interface ----------------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        consumer: str | None = None,
        policy: DeliveryPolicy | None = None,
        on_dead_letter: DeadLetterListener | None = None,
    ) -> None:
        """Join (or create) ``group`` on ``topic`` as this process's consumer of it.

        Other processes may be consumers of the same group: they share its messages.
        BusError if this bus subscribed ``group`` to ``topic`` already.
        """
        if not topic or not group:
            raise BusError("subscribe needs a topic and a group")
        if self._closed:
            raise BusError("the bus is closed")
        if (topic, group) in self._subs:
            raise BusError(f"group {group!r} is already subscribed to {topic!r}")
        name = consumer or group
        sub = _Sub(
            topic, group, handler, name, f"{name}@{self.instance}", policy or self.policy,
            on_dead_letter,
        )  # fmt: skip
        await self._call(
            f"subscribe {group} to {topic}",
            lambda: self.streams.ensure_group(topic, group, ack_timeout_ms=_timeout_ms(sub.policy)),
        )
        self._subs[(topic, group)] = sub
        if self._started:
            self._loops.append(asyncio.get_running_loop().create_task(self._consume(sub)))

    async def declare(
        self, topic: str, group: str, *, policy: DeliveryPolicy | None = None
    ) -> None:
        """Create ``group`` on ``topic`` without consuming: messages published from now on
        wait for the group's consumers, wherever and whenever they start."""
        await self._call(
            f"declare {group} on {topic}",
            lambda: self.streams.ensure_group(
                topic, group, ack_timeout_ms=_timeout_ms(policy or self.policy)
            ),
        )

    async def publish(self, message: Message) -> None:
        if self._closed:
            raise BusError("the bus is closed")
        current = _current_run.get()
        if current and RUN_CONTEXT not in message.headers:
            message = message.with_headers({RUN_CONTEXT: current})
        fields = {F_ID: message.id, F_MESSAGE: message.to_json().decode()}
        tp = message.headers.get(TRACEPARENT)
        if tp:
            fields[F_TRACEPARENT] = tp
        if message.key is not None:
            fields[F_KEY] = message.key
        run = _run_of(message)
        await self._call(
            f"publish {message.id} on {message.topic}",
            lambda: self.streams.publish(message.topic, fields, run=run),
        )
        self.stats.published += 1

    async def ack(self, delivery: Delivery) -> bool:
        sub = self._sub_of(delivery)
        m = delivery.message
        settled = await self._call(
            f"ack {m.id} on {m.topic}",
            lambda: self.streams.settle(
                m.topic, sub.group, sub.redis_consumer, self.instance, delivery.receipt,
                key=m.key, max_attempts=sub.policy.max_attempts, run=_run_of(m),
            ),
        )  # fmt: skip
        if settled.acked:
            self.stats.acked += 1
        if settled.next is not None:
            self._spawn(self._dispatch(sub, settled.next))
        return settled.acked

    async def nack(
        self, delivery: Delivery, *, requeue: bool = True, reason: str = ""
    ) -> Disposition:
        sub = self._sub_of(delivery)
        m = delivery.message
        self.stats.nacked += 1
        if not requeue:
            done = await self._dead_letter(sub, delivery.receipt, m, delivery.attempt, "rejected")
            return "dead_lettered" if done else "settled"
        policy = sub.policy
        delay_ms = min(int(policy.delay(delivery.attempt) * 1000), MAX_NACK_DELAY_MS)
        base = NACK_MARK_MS if policy.ack_timeout is None else int(policy.ack_timeout * 1000)
        # With an ack timeout a claim takes entries idle that long, so the delay is counted
        # back from it (a redelivery delay longer than the ack timeout is cut to it).
        idle = max(base - delay_ms, 0)
        state, attempts = await self._call(
            f"nack {m.id} on {m.topic}",
            lambda: self.streams.release(
                m.topic, sub.group, sub.redis_consumer, delivery.receipt, idle_ms=idle,
                max_attempts=policy.max_attempts,
            ),
        )  # fmt: skip
        if state == "settled":
            return "settled"
        if state == "exhausted":
            done = await self._dead_letter(sub, delivery.receipt, m, attempts, "nacked")
            return "dead_lettered" if done else "settled"
        if state == "released":
            sub.wake.set()
        return "requeued"

    async def seen(self, group: str, message_id: str) -> Processed | None:
        raw = await self._call(
            f"seen {message_id}",
            lambda: self.streams.recall(group, _current_run_id(), message_id),
        )
        if raw is None:
            return None
        return Processed(tuple(Message.from_json(orjson.dumps(m)) for m in orjson.loads(raw)))

    async def remember(self, group: str, message_id: str, outbox: Sequence[Message] = ()) -> None:
        value = "[" + ",".join(m.to_json().decode() for m in outbox) + "]"
        await self._call(
            f"remember {message_id}",
            lambda: self.streams.remember(group, _current_run_id(), message_id, value),
        )

    async def unsettled(self) -> list[Unsettled]:
        """Every message some group of the namespace has neither acked nor dead-lettered: not
        yet delivered, nacked or parked (``pending``), or delivered and not acked (``in_flight``)."""
        return await self._call("unsettled", self._unsettled)

    async def _unsettled(self) -> list[Unsettled]:
        s = self.streams
        rows: list[tuple[tuple[int, int], str, Unsettled]] = []
        for topic in await s.topics():
            for g in await s.groups(topic):
                group = str(g["name"])
                for eid, fields in await s.entries(topic, after=str(g["last-delivered-id"])):
                    rows.append(
                        (_id_key(eid), group, Unsettled(_message(fields), group, 0, "pending"))
                    )
                pend = await s.pending(topic, group)
                counts = await s.attempts(topic, group, [p["message_id"] for p in pend])
                for p, n in zip(pend, counts, strict=True):
                    fields = await s.entry(topic, p["message_id"]) or {}
                    if F_MESSAGE not in fields:
                        continue
                    nacked = p["time_since_delivered"] >= NACK_MARK_MS - MAX_NACK_DELAY_MS
                    state: Literal["pending", "in_flight"] = (
                        "pending" if nacked or n == 0 else "in_flight"
                    )
                    u = Unsettled(_message(fields), group, n, state)
                    rows.append((_id_key(p["message_id"]), group, u))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [u for _, _, u in rows]

    async def run_until_idle(self) -> None:
        """Deliver until nothing more can happen anywhere in the namespace (see the module
        docstring); the consumer loops keep running after it returns."""
        if self._closed:
            raise BusError("the bus is closed")
        await self._start()
        quiet_since: float | None = None
        while True:
            live, suspects = (1, 0) if self._tasks else await self._call("live", self.streams.live)
            if live == 0 and not self._tasks:
                if not suspects:
                    return
                # Deliveries held by processes that look dead: believe it once they have
                # stayed so for a heartbeat's lapse (a process cut off by a Redis restart
                # marks itself alive again within one beat of getting back).
                now = _time.monotonic()
                quiet_since = quiet_since if quiet_since is not None else now
                if now - quiet_since >= self.heartbeat * 3:
                    return
            else:
                quiet_since = None
            self._raise_loop_errors()
            # Other processes' work cannot be awaited from here: poll Redis.
            await asyncio.sleep(self.poll_interval)

    async def serve(self) -> None:
        """Deliver until :meth:`stop` is called (or the task is cancelled): a worker's main loop."""
        if self._closed:
            raise BusError("the bus is closed")
        await self._start()
        waiter = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                await asyncio.wait(
                    [waiter, *self._loops, *self._service], return_when=asyncio.FIRST_COMPLETED
                )
                self._raise_loop_errors()
        finally:
            waiter.cancel()

    def stop(self) -> None:
        """Make :meth:`serve` return (from the bus's loop; deliveries under way go on)."""
        self._stop.set()

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop taking new deliveries and wait (up to ``timeout``) for the running ones to end;
        True when all ended. The process goes on marking itself alive meanwhile."""
        self._stop.set()
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self._flush_unmarks()
        return not self._tasks

    async def close(self) -> None:
        """Stop delivering, say this process is gone, and close the client if the bus made it.

        Deliveries still under way are cancelled: with an ack timeout another consumer
        takes them over (and records them abandoned); without, they stay in flight. Call
        :meth:`drain` first to let them finish."""
        if self._closed:
            return
        await self.drain(timeout=0)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisBusError):  # Redis is away: the marks lapse with us
            await self._flush_unmarks()
        self._closing = True  # the service loops end on this even if a cancel gets lost
        self._unmark_wake.set()
        for t in self._service:
            t.cancel()
        await asyncio.gather(*self._service, return_exceptions=True)
        self._closed = True
        with contextlib.suppress(*_RETRYABLE):  # Redis is away: the mark expires by itself
            await self.streams.gone(self.instance)
        if self._owns_client:
            await self.client.aclose()

    # -- delivering ---------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        # Alive before the first delivery is marked as this process's.
        await self._call("heartbeat", self._beat_once)
        loop = asyncio.get_running_loop()
        self._service.append(loop.create_task(self._beat()))
        self._service.append(loop.create_task(self._unmark_loop()))
        for sub in self._subs.values():
            self._loops.append(loop.create_task(self._consume(sub)))

    def _raise_loop_errors(self) -> None:
        for t in (*self._loops, *self._service):
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]  # checked just above

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unmark_loop(self) -> None:
        while not self._closing:
            await self._unmark_wake.wait()
            self._unmark_wake.clear()
            await self._flush_unmarks()

    async def _flush_unmarks(self) -> None:
        batch, self._unmarks = self._unmarks, []
        if batch:
            await self._call("unmark", lambda: self.streams.unmark_many(batch, self.instance))

    async def _beat_once(self) -> None:
        # Three missed beats and this process counts as dead.
        await self.streams.heartbeat(self.instance, int(self.heartbeat * 3000))

    async def _beat(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat)
            await self._call("heartbeat", self._beat_once)

    async def _consume(self, sub: _Sub) -> None:
        """One group's consumer loop in this process: claim, take, dispatch, wait."""
        s = self.streams
        next_claim = 0.0
        last: str | None = None  # the newest entry id seen before an empty take
        while not self._stop.is_set():
            await self._slots.acquire()
            self._slots.release()  # wait for a free slot before taking more work
            entries: list[Entry] = []
            now = _time.monotonic()
            if now >= next_claim or sub.wake.is_set():
                sub.wake.clear()
                start, claimed = await self._call(
                    f"claim {sub.topic}/{sub.group}",
                    lambda: s.take(
                        sub.topic, sub.group, sub.redis_consumer, self.instance,
                        max_attempts=sub.policy.max_attempts, count=16,
                        claim_idle_ms=sub.claim_idle_ms, start=sub.claim_start,
                    ),
                )  # fmt: skip
                sub.claim_start = start
                # "0-0": the scan reached the end; otherwise go on at once next time.
                next_claim = now + sub.claim_interval if start == "0-0" else now
                self.stats.claimed += sum(e.status == "deliver" for e in claimed)
                entries += claimed
            _, new = await self._call(
                f"read {sub.topic}/{sub.group}",
                lambda: s.take(
                    sub.topic, sub.group, sub.redis_consumer, self.instance,
                    max_attempts=sub.policy.max_attempts, count=self.concurrency,
                ),
            )  # fmt: skip
            entries += new
            if entries:
                await self._dispatch_batch(sub, entries)
                last = None
                continue
            if last is None:
                # Note the stream's end, then take once more before waiting from it: an entry
                # added in between is taken, one added after wakes the wait.
                last = await self._call(f"last id of {sub.topic}", lambda: s.last_id(sub.topic))
                continue
            wait = min(max(next_claim - _time.monotonic(), 0.0), self.block)
            await self._wait(sub, last, wait)
            last = None

    async def _wait(self, sub: _Sub, last: str, seconds: float) -> None:
        """Until an entry is added after ``last``, a nack of ours is to be claimed, or ``seconds``."""
        if seconds <= 0:
            return
        xread = asyncio.ensure_future(
            self.streams.wait_new({sub.topic: last}, block_ms=max(1, int(seconds * 1000)))
        )
        woken = asyncio.ensure_future(sub.wake.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([xread, woken, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (xread, woken, stopped):
                t.cancel()
            done = await asyncio.gather(xread, return_exceptions=True)
        _raise_if_cancelled()
        if isinstance(done[0], _RETRYABLE):
            self.stats.reconnects += 1
            await asyncio.sleep(min(seconds, 0.1))  # the next command's retries take over

    async def _dispatch_batch(self, sub: _Sub, entries: list[Entry]) -> None:
        ready: list[tuple[Entry, Fault | None]] = []
        for e in entries:
            if e.abandoned is not None:
                await self._abandoned(sub, e)
            if e.status == "deliver":
                fault = self._decide(sub, e)
                ready.append((e, fault))
            else:
                await self._dispatch(sub, e)
        # A reorder fault lets the next delivery of this batch overtake (not applied without one).
        i = 0
        while i < len(ready):
            e, fault = ready[i]
            if fault is not None and fault.kind == "reorder":
                if i + 1 < len(ready):
                    ready[i], ready[i + 1] = ready[i + 1], ready[i]
                    i += 2
                    continue
                ready[i] = (e, None)
            i += 1
        for e, fault in ready:
            await self._slots.acquire()
            self._spawn(self._deliver(sub, e, fault, slot=True))

    def _decide(self, sub: _Sub, e: Entry) -> Fault | None:
        injector = self.faults
        if injector is None:
            return None
        try:
            message = _message(e.fields)
        except BusError:
            return None
        return injector.decide(message, sub.group, e.attempts)

    async def _dispatch(self, sub: _Sub, e: Entry) -> None:
        """What to do with an entry taken outside a batch (a key's next, or not deliverable)."""
        if e.status == "parked":
            self.stats.parked += 1
        elif e.status == "exhausted":
            await self._dead_letter(
                sub, e.entry_id, _message(e.fields), e.attempts, "ack_timeout", listener=True
            )
        elif e.status == "deliver":
            fault = self._decide(sub, e)
            await self._slots.acquire()
            await self._deliver(
                sub, e, fault if fault is None or fault.kind != "reorder" else None, slot=True
            )

    async def _deliver(self, sub: _Sub, e: Entry, fault: Fault | None, *, slot: bool) -> None:
        try:
            try:
                message = _message(e.fields)
            except BusError as exc:
                # Not a message this bus wrote: give up on it at once, visibly.
                await self._dead_letter(
                    sub, e.entry_id, _unreadable(e), e.attempts, f"unreadable: {exc}"
                )
                return
            stats = self.stats
            stats.deliveries += 1
            if e.attempts > 1:
                stats.redelivered += 1
            if fault is not None and fault.kind == "delay":
                await self.time.sleep(fault.delay)
            kind = fault.kind if fault is not None and fault.kind != "duplicate" else None
            delivery = Delivery(
                message, sub.group, sub.consumer, e.attempts, e.entry_id, kind, self.time.now_ns()
            )
            token = _current_run.set(message.headers.get(RUN_CONTEXT, ""))
            try:
                await self._handle(sub, delivery)
                if fault is not None and fault.kind == "duplicate":
                    # The twin is the next attempt; counted in Redis unless the first settled it.
                    await self._call(
                        "count a duplicate",
                        lambda: self.streams.count_attempt(sub.topic, sub.group, e.entry_id),
                    )
                    stats.deliveries += 1
                    stats.redelivered += 1
                    twin = Delivery(
                        message, sub.group, sub.consumer, e.attempts + 1, e.entry_id,
                        "duplicate", self.time.now_ns(),
                    )  # fmt: skip
                    await self._handle(sub, twin)
            finally:
                _current_run.reset(token)
            # The mark goes in the next batch: until then the delivery still counts as running,
            # which only delays idleness, never hastens it.
            self._unmarks.append((sub.topic, sub.group, e.entry_id, e.attempts))
            self._unmark_wake.set()
        finally:
            if slot:
                self._slots.release()

    async def _abandoned(self, sub: _Sub, e: Entry) -> None:
        """Report the delivery a dead process left unsettled (its mark: instance, attempt, time)."""
        self.stats.abandoned += 1
        if self.on_abandoned is None:
            return
        instance, attempt, when_us = [*(e.abandoned or "").split(" "), "", "0", "0"][:3]
        try:
            message = _message(e.fields)
        except BusError:
            return
        await self.on_abandoned(
            Abandoned(
                message,
                sub.group,
                sub.consumer,
                int(attempt or 0),
                instance,
                int(when_us or 0) * 1000,
            )
        )

    async def _handle(self, sub: _Sub, delivery: Delivery) -> None:
        try:
            await sub.handler(delivery)
        except Exception as exc:  # a handler that raises gives the delivery back
            await self.nack(delivery, reason=f"{type(exc).__name__}: {exc}")

    async def _dead_letter(
        self, sub: _Sub, entry_id: str, message: Message, attempts: int, reason: str, *,
        listener: bool = False,
    ) -> bool:  # fmt: skip
        dead_topic = dead_fields = None
        if sub.policy.dead_letter:
            headers = {
                "agentrace-dead-group": sub.group, "agentrace-dead-attempts": str(attempts),
                "agentrace-dead-reason": reason, "agentrace-dead-topic": message.topic,
            }  # fmt: skip
            copy = Message(
                message.id, dead_letter_topic(message.topic), message.payload, message.key,
                message.publisher, {**message.headers, **headers},
            )  # fmt: skip
            dead_topic = copy.topic
            dead_fields = {F_ID: copy.id, F_MESSAGE: copy.to_json().decode()}
            if TRACEPARENT in copy.headers:
                dead_fields[F_TRACEPARENT] = copy.headers[TRACEPARENT]
            if copy.key is not None:
                dead_fields[F_KEY] = copy.key
        settled = await self._call(
            f"dead-letter {message.id} on {message.topic}",
            lambda: self.streams.settle(
                message.topic, sub.group, sub.redis_consumer, self.instance, entry_id,
                key=message.key, max_attempts=sub.policy.max_attempts, dead_topic=dead_topic,
                dead_fields=dead_fields, run=_run_of(message),
            ),
        )  # fmt: skip
        if not settled.acked:
            return False
        self.stats.dead_lettered += 1
        dl = DeadLetter(message, sub.group, sub.consumer, attempts, reason)
        self.dead_letters.append(dl)
        if settled.next is not None:
            self._spawn(self._dispatch(sub, settled.next))
        if listener and sub.on_dead_letter is not None:
            await sub.on_dead_letter(dl)
        return True

    def _sub_of(self, delivery: Delivery) -> _Sub:
        sub = self._subs.get((delivery.message.topic, delivery.group))
        if sub is None:
            raise BusError(
                f"group {delivery.group!r} on {delivery.message.topic!r} is not subscribed on this bus"
            )
        return sub


def _raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop.

    redis-py can swallow a cancellation that lands inside a command (the command then
    returns, or fails with a TimeoutError): the bus's loops would run on for ever. So
    after every Redis call the bus asks the task itself.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


def _timeout_ms(policy: DeliveryPolicy) -> int | None:
    return None if policy.ack_timeout is None else int(policy.ack_timeout * 1000)


def _run_of(message: Message) -> str:
    ctx = context_of(message.headers.get(RUN_CONTEXT))
    return ctx.trace_id_hex if ctx is not None else ""


def _message(fields: Any) -> Message:
    raw = fields.get(F_MESSAGE)
    if raw is None:
        raise BusError(f"stream entry without a {F_MESSAGE!r} field")
    return Message.from_json(raw)


def _unreadable(e: Entry) -> Message:
    return Message(e.message_id or e.entry_id, e.topic, None, None, None, {})


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
