"""A bus that delivers what a recorded choreography delivered, in the order it did.

Replaying a choreographed run needs the recorded schedule, not a new one: which
message reached which group, in what order, at which attempt, with which
injected fault, and when the bus gave up on one by itself. A
:class:`ScriptedBus` takes that script (the run's ``process`` spans, oldest
first) and follows it, whatever the delivery policies say, so a redelivery
after an ack timeout or a lost ack happens where it happened even when the
replayed choreography was built without that timeout:

- messages published in the replay are matched to recorded ones by topic and
  their order on it (message ids are new in a replay);
- each recorded delivery is handed to its group's handler, with the recorded
  ``fault`` (the consumer applies ``drop``, ``crash``, ``ack_lost`` as it did);
- a ``nack`` is answered as the recording says (requeued or dead-lettered);
  a message the bus dead-lettered on its own is dead-lettered at that point;
- the clock is moved forward to each delivery's recorded time when the replay
  is early (virtual time: instant).

What does not line up is reported to ``diverge``: a recorded delivery of a
message the replay never published, a message the replay published that the
recording does not have, a handler that settled a delivery otherwise.

Async rules: as :class:`~engine.Bus`; one bus per replayed run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..choreography._bus import (
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
from ..core._time import TimeSource
from ._recording import RecordedDelivery, Recording

_NS = 1_000_000_000
Diverge = Callable[..., None]


@dataclass(slots=True)
class _Group:
    handler: Handler
    consumer: str
    policy: DeliveryPolicy
    on_dead_letter: DeadLetterListener | None


@dataclass(slots=True)
class _Entry:
    message: Message
    group: str
    attempts: int = 0
    settled: bool = False
    calls: list[str] = field(default_factory=list)


def _expected_call(d: RecordedDelivery) -> str | None:
    """What the consumer did with a recorded delivery: ``ack``, ``nack`` or nothing."""
    if d.outcome in ("acked", "duplicate"):
        return None if d.fault == "ack_lost" else "ack"
    if d.outcome in ("nacked", "dead_lettered"):
        return "nack"
    return None  # dropped, or the consumer died before settling


class ScriptedBus(Bus):
    """Delivers ``recording``'s deliveries in their recorded order (see the module docstring)."""

    def __init__(
        self,
        time: TimeSource,
        recording: Recording,
        diverge: Diverge,
        *,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.time = time
        self.script: Sequence[RecordedDelivery] = recording.deliveries
        self.diverge = diverge
        self.policy = policy or DeliveryPolicy()
        self._recorded = {(m.topic, m.ordinal) for m in recording.messages}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._topics: dict[str, list[str]] = {}
        self._published: dict[str, int] = {}
        self._by_ordinal: dict[tuple[str, int], Message] = {}
        self._entries: dict[tuple[str, str], _Entry] = {}  # (message id, group)
        self._order: list[tuple[str, str]] = []
        self._processed: dict[tuple[str, str], Processed] = {}
        self._current: RecordedDelivery | None = None
        self.dead_letters: list[DeadLetter] = []
        self._running = False

    # -- the interface ------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, group: str, handler: Handler, *, consumer: str | None = None,
        policy: DeliveryPolicy | None = None, on_dead_letter: DeadLetterListener | None = None,
    ) -> None:  # fmt: skip
        if (topic, group) in self._groups:
            raise BusError(f"group {group!r} is already subscribed to {topic!r}")
        self._groups[(topic, group)] = _Group(
            handler, consumer or group, policy or self.policy, on_dead_letter
        )
        self._topics.setdefault(topic, []).append(group)

    async def publish(self, message: Message) -> None:
        n = self._published.get(message.topic, 0)
        self._published[message.topic] = n + 1
        self._by_ordinal[(message.topic, n)] = message
        if (message.topic, n) not in self._recorded:
            self.diverge(
                "delivery", None, message.publisher, None, {"topic": message.topic, "payload": message.payload},
                detail=f"the replay published message #{n + 1} on {message.topic!r}; the recording has no such message",
            )  # fmt: skip
        for g in self._topics.get(message.topic, ()):
            key = (message.id, g)
            self._entries[key] = _Entry(message, g)
            self._order.append(key)

    async def ack(self, delivery: Delivery) -> bool:
        e = self._entries.get((delivery.message.id, delivery.group))
        if e is None:
            return False
        e.calls.append("ack")
        if e.settled:
            return False
        e.settled = True
        return True

    async def nack(
        self, delivery: Delivery, *, requeue: bool = True, reason: str = ""
    ) -> Disposition:
        e = self._entries.get((delivery.message.id, delivery.group))
        if e is None:
            return "settled"
        e.calls.append("nack")
        if e.settled:
            return "settled"
        d = self._current
        if d is not None and d.outcome in ("nacked", "dead_lettered"):
            dead = d.outcome == "dead_lettered"
        else:  # the recording settled it otherwise (a divergence): the policy decides
            policy = self._groups[(delivery.message.topic, delivery.group)].policy
            dead = not requeue or e.attempts >= policy.max_attempts
        if not dead:
            return "requeued"
        self._dead(e, "rejected" if not requeue else "nacked")
        return "dead_lettered"

    async def seen(self, group: str, message_id: str) -> Processed | None:
        return self._processed.get((group, message_id))

    async def remember(self, group: str, message_id: str, outbox: Sequence[Message] = ()) -> None:
        self._processed[(group, message_id)] = Processed(tuple(outbox))

    async def unsettled(self) -> list[Unsettled]:
        return [
            Unsettled(e.message, e.group, e.attempts, "in_flight" if e.attempts else "pending")
            for e in (self._entries[k] for k in self._order)
            if not e.settled
        ]

    # -- the script ---------------------------------------------------------------------------

    async def run_until_idle(self) -> None:
        if self._running:
            raise BusError("run_until_idle is already running on this bus")
        self._running = True
        try:
            for d in self.script:
                await self._play(d)
        finally:
            self._running = False

    async def _play(self, d: RecordedDelivery) -> None:
        await self._catch_up(d.time_ns)
        message = self._by_ordinal.get((d.topic, d.ordinal)) if d.ordinal is not None else None
        group = self._groups.get((d.topic, d.group))
        if message is None or group is None:
            why = "never published" if message is None else f"group {d.group!r} never subscribed"
            self.diverge(
                "delivery", None, d.consumer, _describe(d), None,
                detail=f"recorded delivery of message #{(d.ordinal or 0) + 1} on {d.topic!r} to "
                f"{d.group!r} (attempt {d.attempt}): {why} in the replay",
            )  # fmt: skip
            return
        e = self._entries[(message.id, d.group)]
        if d.kind == "dead_letter":
            if not e.settled:
                e.attempts = max(e.attempts, d.attempt)
                self._dead(e, "ack_timeout")
                if group.on_dead_letter is not None:
                    await group.on_dead_letter(self.dead_letters[-1])
            return
        e.attempts = max(e.attempts, d.attempt)
        before = len(e.calls)
        delivery = Delivery(
            message, d.group, group.consumer, d.attempt, f"{message.id}/{d.group}", d.fault,
            self.time.now_ns(),
        )  # fmt: skip
        self._current = d
        try:
            await group.handler(delivery)
        except Exception as exc:  # a handler that raises gives the delivery back
            await self.nack(delivery, reason=f"{type(exc).__name__}: {exc}")
        finally:
            self._current = None
        want = _expected_call(d)
        got = e.calls[before] if len(e.calls) > before else None
        if want != got:
            self.diverge(
                "delivery", None, d.consumer, d.outcome or "no ack (the consumer died)",
                _CALLS.get(got or "", "no ack"),
                detail=f"delivery of {d.topic!r} to {d.group!r} (attempt {d.attempt}) was settled otherwise",
            )  # fmt: skip

    async def _catch_up(self, when_ns: int) -> None:
        wait = when_ns - self.time.now_ns()
        if wait > 0:
            await self.time.sleep(wait / _NS)

    def _dead(self, e: _Entry, reason: str) -> None:
        e.settled = True
        g = self._groups[(e.message.topic, e.group)]
        self.dead_letters.append(DeadLetter(e.message, e.group, g.consumer, e.attempts, reason))
        # The copy to the dead-letter topic matters only to a group that listens there.
        if g.policy.dead_letter and dead_letter_topic(e.message.topic) in self._topics:
            for other in self._topics[dead_letter_topic(e.message.topic)]:
                key = (e.message.id, other)
                if key not in self._entries:
                    self._entries[key] = _Entry(e.message, other)
                    self._order.append(key)


_CALLS = {"ack": "acked", "nack": "nacked"}


def _describe(d: RecordedDelivery) -> dict[str, Any]:
    return {"topic": d.topic, "group": d.group, "attempt": d.attempt, "outcome": d.outcome}
