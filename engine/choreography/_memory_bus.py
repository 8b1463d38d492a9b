"""The in-process bus: asyncio, deterministic, the engine's default.

One dispatcher (:meth:`InProcessBus.run_until_idle`) decides what is delivered
next: messages become *ready* in publish order (per group, a keyed message only
once its key's predecessors are settled), and ready deliveries go out first in,
first out. Timers (fault delays, redelivery after a nack, ack timeouts) run on
the bus's :class:`~engine.TimeSource`: when nothing is ready and no handler is
running, the dispatcher sleeps until the next one is due, which under
:class:`~engine.VirtualTime` is instant and exact. Nothing depends on the wall
clock or on which coroutine happens to wake first, so a run is repeatable; the
fault injector's coins are drawn in this same order.

With ``concurrency=1`` (the default) handlers run one at a time, awaited by the
dispatcher, which is also the fastest way through. With more, up to that many
run as tasks at once (their interleaving is then asyncio's, still repeatable for
a given program); under real time an ack timeout then fires while a slow handler
is still running, as on a networked broker. With one at a time it is noticed
when the handler returns.

A handler must not wait for another delivery of the same bus (with
``concurrency=1`` that would wait forever).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..core._time import RealTime, TimeSource
from ._bus import (
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
from ._faults import Fault, FaultInjector, Faults

_NS: Final = 1_000_000_000
PENDING, IN_FLIGHT, ACKED, DEAD = 0, 1, 2, 3
_NO_FAULT: Final = Fault("drop", rule=-1)  # "decided: no fault" (never handed out)
_TIMER_READY, _TIMER_ACK = 0, 1


class _Group:
    __slots__ = ("consumer", "handler", "keys", "name", "on_dead_letter", "policy", "topic")

    def __init__(
        self, topic: str, name: str, handler: Handler, consumer: str, policy: DeliveryPolicy,
        on_dead_letter: DeadLetterListener | None,
    ) -> None:  # fmt: skip
        self.topic = topic
        self.name = name
        self.handler = handler
        self.consumer = consumer
        self.policy = policy
        self.on_dead_letter = on_dead_letter
        self.keys: dict[str, deque[_Entry]] = {}  # unsettled keyed entries, head first


class _Entry:
    """One message for one group."""

    __slots__ = ("attempts", "decided", "deferred", "group", "message", "receipt", "state")

    def __init__(self, message: Message, group: _Group, receipt: str) -> None:
        self.message = message
        self.group = group
        self.receipt = receipt
        self.attempts = 0
        self.state = PENDING
        self.decided: Fault | None = None  # the fault chosen for the next attempt, once chosen
        self.deferred = False  # that fault (delay, reorder) has held the attempt back already


@dataclass(slots=True)
class BusStats:
    """Counters of one bus: what was published and what became of the deliveries."""

    published: int = 0
    deliveries: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    redelivered: int = 0  # deliveries after the first of a message to a group
    ack_timeouts: int = 0
    unrouted: int = 0  # messages published on a topic no group subscribes to


class InProcessBus(Bus):
    """An asyncio bus in this process (see the module docstring).

    ``faults`` (a plan or an injector) injects faults; ``policy`` is the default
    delivery policy of groups that subscribe without one. Use from one event loop.
    """

    def __init__(
        self,
        time: TimeSource | None = None,
        *,
        faults: Faults | FaultInjector | None = None,
        policy: DeliveryPolicy | None = None,
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.time: TimeSource = time or RealTime()
        self.faults: FaultInjector | None = (
            faults.injector() if isinstance(faults, Faults) else faults
        )
        self.policy = policy or DeliveryPolicy()
        self.concurrency = concurrency
        self.stats = BusStats()
        self.dead_letters: list[DeadLetter] = []
        self._topics: dict[str, list[_Group]] = {}
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._ready: deque[_Entry | Delivery] = deque()
        self._timers: list[tuple[int, int, int, _Entry, int]] = []  # due, seq, kind, entry, token
        self._timer_seq = itertools.count()
        self._receipts = itertools.count(1)
        self._open: dict[str, _Entry] = {}  # receipt -> unsettled entry
        self._processed: dict[tuple[str, str], Processed] = {}
        self._active = 0
        self._wake = asyncio.Event()
        self._running = False
        self._closed = False

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
        if not topic or not group:
            raise BusError("subscribe needs a topic and a group")
        groups = self._topics.setdefault(topic, [])
        if any(g.name == group for g in groups):
            raise BusError(f"group {group!r} is already subscribed to {topic!r}")
        groups.append(
            _Group(topic, group, handler, consumer or group, policy or self.policy, on_dead_letter)
        )
        self._handlers[(topic, group)] = handler

    async def publish(self, message: Message) -> None:
        self._route(message)

    def _route(self, message: Message) -> None:
        if self._closed:
            raise BusError("the bus is closed")
        self.stats.published += 1
        groups = self._topics.get(message.topic)
        if not groups:
            self.stats.unrouted += 1
            return
        key = message.key
        ready = self._ready
        for g in groups:
            receipt = str(next(self._receipts))
            e = _Entry(message, g, receipt)
            self._open[receipt] = e
            if key is None:
                ready.append(e)
            else:
                q = g.keys.get(key)
                if q is None:
                    g.keys[key] = deque((e,))
                    ready.append(e)
                else:
                    q.append(e)  # ready once the entries before it are settled
        if self._active:
            self._wake.set()

    async def ack(self, delivery: Delivery) -> bool:
        e = self._open.get(delivery.receipt)
        if e is None:
            return False
        self.stats.acked += 1
        self._settle(e, ACKED)
        return True

    async def nack(
        self, delivery: Delivery, *, requeue: bool = True, reason: str = ""
    ) -> Disposition:
        e = self._open.get(delivery.receipt)
        if e is None:
            return "settled"
        self.stats.nacked += 1
        if e.state == PENDING:
            return "requeued"  # already due for another delivery (an earlier one timed out)
        policy = e.group.policy
        if not requeue or e.attempts >= policy.max_attempts:
            await self._dead_letter(e, "rejected" if not requeue else "nacked", listener=False)
            return "dead_lettered"
        e.state = PENDING
        wait = policy.delay(e.attempts)
        if wait > 0:
            self._timer(self.time.now_ns() + int(wait * _NS), _TIMER_READY, e, e.attempts)
        else:
            self._ready.append(e)
        if self._active:
            self._wake.set()
        return "requeued"

    async def seen(self, group: str, message_id: str) -> Processed | None:
        return self._processed.get((group, message_id))

    async def remember(self, group: str, message_id: str, outbox: Sequence[Message] = ()) -> None:
        self._processed[(group, message_id)] = Processed(tuple(outbox))

    async def unsettled(self) -> list[Unsettled]:
        return [
            Unsettled(
                e.message,
                e.group.name,
                e.attempts,
                "in_flight" if e.state == IN_FLIGHT else "pending",
            )
            for e in self._open.values()
        ]

    async def close(self) -> None:
        self._closed = True

    # -- dispatch -----------------------------------------------------------------------------

    async def run_until_idle(self) -> None:
        if self._running:
            raise BusError("run_until_idle is already running on this bus")
        self._running = True
        try:
            await self._loop()
        finally:
            self._running = False

    async def _loop(self) -> None:
        ready = self._ready
        timers = self._timers
        inline = self.concurrency == 1
        tasks: set[asyncio.Task[None]] = set()
        while True:
            if timers:
                await self._fire_due()
            if ready and self._active < self.concurrency:
                item = ready.popleft()
                delivery = item if isinstance(item, Delivery) else self._take(item)
                if delivery is None:
                    continue
                if inline:
                    await self._handle(delivery)
                else:
                    self._active += 1
                    task = asyncio.get_running_loop().create_task(self._handle_task(delivery))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                continue
            if self._active:
                due = self._next_due()
                self._wake.clear()
                if due is None:
                    await self._wake.wait()
                else:
                    # Under real time a due timer must fire while handlers still run; virtual
                    # time passes only in sleeps, so there the wait simply ends on a wake-up.
                    try:
                        async with self.time.timeout(max(0, due - self.time.now_ns()) / _NS):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                continue
            due = self._next_due()
            if due is None:
                return
            wait = due - self.time.now_ns()
            if wait > 0:
                await self.time.sleep(wait / _NS)

    async def _handle_task(self, delivery: Delivery) -> None:
        try:
            await self._handle(delivery)
        finally:
            self._active -= 1
            self._wake.set()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            await self._handler_of(delivery)(delivery)
        except Exception as exc:  # a handler that raises gives the delivery back
            await self.nack(delivery, reason=f"{type(exc).__name__}: {exc}")

    def _handler_of(self, delivery: Delivery) -> Handler:
        return self._handlers[(delivery.message.topic, delivery.group)]

    def _take(self, e: _Entry) -> Delivery | None:
        """The delivery of a ready entry now, or None (settled meanwhile, or held back by a fault)."""
        if e.state != PENDING:
            return None
        g = e.group
        fault: Fault | None = None
        injector = self.faults
        if injector is not None:
            decided = e.decided
            if decided is None:
                decided = e.decided = (
                    injector.decide(e.message, g.name, e.attempts + 1) or _NO_FAULT
                )
            if decided is not _NO_FAULT:
                fault = decided
                if not e.deferred:
                    if fault.kind == "delay":
                        e.deferred = True
                        self._timer(
                            self.time.now_ns() + int(fault.delay * _NS), _TIMER_READY, e, e.attempts
                        )
                        return None
                    if fault.kind == "reorder":
                        e.deferred = True
                        if self._overtake(e):
                            return None
                        fault = None  # nothing to overtake it: not applied
        e.decided = None
        e.deferred = False
        e.attempts += 1
        e.state = IN_FLIGHT
        stats = self.stats
        stats.deliveries += 1
        if e.attempts > 1:
            stats.redelivered += 1
        now = self.time.now_ns()
        delivery = Delivery(
            e.message, g.name, g.consumer, e.attempts, e.receipt,
            fault.kind if fault is not None else None, now,
        )  # fmt: skip
        if fault is not None and fault.kind == "duplicate":
            e.attempts += 1
            stats.deliveries += 1
            stats.redelivered += 1
            twin = Delivery(e.message, g.name, g.consumer, e.attempts, e.receipt, "duplicate", now)
            self._ready.appendleft(twin)  # right after this one
            delivery = Delivery(e.message, g.name, g.consumer, e.attempts - 1, e.receipt, None, now)
        if g.policy.ack_timeout is not None:
            self._timer(now + int(g.policy.ack_timeout * _NS), _TIMER_ACK, e, e.attempts)
        return delivery

    def _overtake(self, e: _Entry) -> bool:
        """Put ``e`` behind the next live ready item; False when there is none."""
        ready = self._ready
        while ready:
            nxt = ready.popleft()
            if isinstance(nxt, Delivery) or nxt.state == PENDING:
                ready.appendleft(e)
                ready.appendleft(nxt)
                return True
        ready.appendleft(e)
        return False

    # -- timers -------------------------------------------------------------------------------

    def _timer(self, due: int, kind: int, e: _Entry, token: int) -> None:
        heapq.heappush(self._timers, (due, next(self._timer_seq), kind, e, token))

    def _live(self, kind: int, e: _Entry, token: int) -> bool:
        if kind == _TIMER_ACK:
            return e.state == IN_FLIGHT and e.attempts == token
        return e.state == PENDING and e.attempts == token

    def _next_due(self) -> int | None:
        timers = self._timers
        while timers:
            due, _, kind, e, token = timers[0]
            if self._live(kind, e, token):
                return due
            heapq.heappop(timers)
        return None

    async def _fire_due(self) -> None:
        timers = self._timers
        now = self.time.now_ns()
        while timers and timers[0][0] <= now:
            _, _, kind, e, token = heapq.heappop(timers)
            if not self._live(kind, e, token):
                continue
            if kind == _TIMER_READY:
                self._ready.append(e)
                continue
            self.stats.ack_timeouts += 1
            if e.attempts >= e.group.policy.max_attempts:
                await self._dead_letter(e, "ack_timeout", listener=True)
            else:
                e.state = PENDING
                self._ready.append(e)

    # -- settling -----------------------------------------------------------------------------

    def _settle(self, e: _Entry, state: int) -> None:
        e.state = state
        del self._open[e.receipt]
        key = e.message.key
        if key is None:
            return
        g = e.group
        q = g.keys[key]
        if q[0] is e:
            q.popleft()
            if q:
                self._ready.append(q[0])
            else:
                del g.keys[key]
        else:  # pragma: no cover  # only the head of a key is ever delivered
            q.remove(e)
        if self._active:
            self._wake.set()

    async def _dead_letter(self, e: _Entry, reason: str, *, listener: bool) -> None:
        g = e.group
        self._settle(e, DEAD)
        self.stats.dead_lettered += 1
        dl = DeadLetter(e.message, g.name, g.consumer, e.attempts, reason)
        self.dead_letters.append(dl)
        if g.policy.dead_letter:
            m = e.message
            headers = {
                "agentrace-dead-group": g.name, "agentrace-dead-attempts": str(e.attempts),
                "agentrace-dead-reason": reason, "agentrace-dead-topic": m.topic,
            }  # fmt: skip
            self._route(
                Message(
                    m.id,
                    dead_letter_topic(m.topic),
                    m.payload,
                    m.key,
                    m.publisher,
                    {**m.headers, **headers},
                )
            )
        if listener and g.on_dead_letter is not None:
            await g.on_dead_letter(dl)
