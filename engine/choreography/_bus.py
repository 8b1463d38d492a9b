"""The event bus interface: what choreographed agents publish to and consume from.

A :class:`Bus` carries :class:`Message` s on topics to consumer groups:

- **Topics and groups.** ``subscribe(topic, group, handler)`` creates ``group`` on
  ``topic``; every group subscribed to a topic gets every message published on it
  from then on, and hands each one to its handler (one consumer per group here;
  several consumers of one group share its messages on a networked broker).
- **At least once.** A delivery stays *in flight* until the handler calls
  ``ack``. A ``nack``, or no ack within the policy's ``ack_timeout``, makes the bus
  deliver it again (``attempt`` + 1), up to ``max_attempts``; then it is
  *dead-lettered*: settled for the group and copied to :func:`dead_letter_topic`.
  Without an ``ack_timeout`` a delivery that is never acked (its consumer died)
  stays in flight for good: visibly unsettled, never silently forgotten.
- **Ordering per key.** Messages with the same ``key`` reach a group in publish
  order, one at a time: the next is not delivered before the previous one is
  settled (acked or dead-lettered). Messages without a key have no order.
- **Idempotent consumers.** ``remember(group, id, outbox)`` notes that a group has
  applied a message's effect (with the messages it will publish as a result);
  ``seen`` answers whether it has, so a redelivered message is not applied twice
  and an outbox a crash left unsent can still be sent.
- **Faults.** A bus may take a :class:`~engine.FaultInjector`: the faults it
  applies itself (delay, reorder, duplicate) and those it hands to the consumer
  (drop, crash, ack_lost) are named in :attr:`Delivery.fault`.

Messages are plain data (JSON payload, string headers) and serialise with
:meth:`Message.to_json`, so a networked broker (Redis Streams) implements the same
interface; the recording of spans lives in :class:`~engine.BusTracer`, outside the
bus, so every implementation records the same facts.

Async rules: every method that talks to the broker is a coroutine of the event
loop that owns the bus; a bus is not shared across loops or threads. Handlers
run on that loop.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from ..core._errors import EngineError
from ..core._ledger import JSON, json_copy

# Headers the engine sets on every message it publishes.
TRACEPARENT: Final = "traceparent"  # W3C context of the message's `send` span
RUN_CONTEXT: Final = (
    "agentrace-run"  # W3C context of the run's root span: process spans are its children
)
SAGA_CHAIN: Final = (
    "agentrace-saga"  # JSON: the completed steps that led to this message (choreographed sagas)
)

Disposition = Literal["requeued", "dead_lettered", "settled"]


class BusError(EngineError):
    """A bus used wrongly (a group subscribed twice, a message that is not JSON, ...)."""


def dead_letter_topic(topic: str) -> str:
    """Where messages of ``topic`` go after their last failed attempt."""
    return f"{topic}.dead"


@dataclass(frozen=True, slots=True)
class Message:
    """A message: an id unique in the run (``messaging.message.id``), its topic, a JSON payload,
    an optional ordering ``key``, the publishing agent and string headers (``traceparent`` ...).

    Immutable; the payload is plain JSON (copied in by :meth:`create`), do not change it.
    """

    id: str
    topic: str
    payload: JSON
    key: str | None = None
    publisher: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        id: str,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        publisher: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """A message with ``payload`` copied as plain JSON (BusError naming what is not JSON)."""
        if not id or not topic:
            raise BusError("a message needs an id and a topic")
        try:
            data = json_copy(payload, "payload")
        except ValueError as exc:
            raise BusError(f"message on {topic!r}: {exc}") from None
        return cls(id, topic, data, key, publisher, dict(headers or {}))

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def with_headers(self, headers: Mapping[str, str]) -> Message:
        """A copy with ``headers`` added to (or replacing) these."""
        return Message(
            self.id, self.topic, self.payload, self.key, self.publisher, {**self.headers, **headers}
        )

    def to_json(self) -> bytes:
        """The message as one JSON object (what a networked broker stores)."""
        return orjson.dumps(
            {"id": self.id, "topic": self.topic, "payload": self.payload, "key": self.key,
             "publisher": self.publisher, "headers": dict(self.headers)},
            option=orjson.OPT_SORT_KEYS,
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes | str) -> Message:
        """The inverse of :meth:`to_json`; BusError when ``data`` is not such an object."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BusError(f"not a message: {exc}") from None
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("id"), str)
            or not isinstance(obj.get("topic"), str)
        ):
            raise BusError("not a message: need an object with string 'id' and 'topic'")
        headers = obj.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise BusError(f"message {obj['id']}: headers must be an object of strings")
        key, publisher = obj.get("key"), obj.get("publisher")
        return cls(
            obj["id"], obj["topic"], obj.get("payload"), key if isinstance(key, str) else None,
            publisher if isinstance(publisher, str) else None, headers,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message to a group: what a handler gets and acks or nacks.

    ``attempt`` counts this group's deliveries of the message (1 for the first;
    ``messaging.message.delivery_count``). ``receipt`` is the broker's handle for
    ack and nack (a stream entry id on Redis). ``fault`` names an injected fault on
    this delivery: ``drop`` (lost before the consumer: do not process it),
    ``crash`` (the consumer dies after processing, before acking), ``ack_lost`` (the
    ack never reaches the broker), or ``delay``, ``reorder``, ``duplicate`` (already
    applied by the bus; informational).
    """

    message: Message
    group: str
    consumer: str
    attempt: int
    receipt: str
    fault: str | None = None
    delivered_ns: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How a group's deliveries are retried and given up on.

    ``max_attempts``: deliveries before a message is dead-lettered. ``ack_timeout``:
    seconds an unacked delivery waits before it is delivered again (None: never; a
    consumer that dies before acking then leaves its message in flight for good).
    After a nack the message is delivered again ``redelivery_delay`` seconds later,
    times ``backoff`` per earlier attempt. ``dead_letter=False`` drops the copy to
    the dead-letter topic (the message is still settled and recorded as dead-lettered).
    """

    max_attempts: int = 3
    ack_timeout: float | None = None
    redelivery_delay: float = 0.0
    backoff: float = 2.0
    dead_letter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.ack_timeout is not None and self.ack_timeout <= 0:
            raise ValueError(f"ack_timeout must be positive (or None), got {self.ack_timeout}")
        if self.redelivery_delay < 0 or self.backoff < 1:
            raise ValueError("redelivery_delay cannot be negative and backoff must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before delivering again after attempt ``attempt`` was nacked."""
        return self.redelivery_delay * self.backoff ** max(0, attempt - 1)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a group gave up on: after ``attempts`` deliveries, for ``reason``."""

    message: Message
    group: str
    consumer: str
    attempts: int
    reason: str  # "nacked" (the last attempt was nacked), "rejected" (nacked without requeue), "ack_timeout"


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A message a group has neither acked nor dead-lettered: ``pending`` (waiting to be
    delivered, or delivered again) or ``in_flight`` (delivered, no ack yet)."""

    message: Message
    group: str
    attempts: int
    state: Literal["pending", "in_flight"]


@dataclass(frozen=True, slots=True)
class Processed:
    """What an idempotent consumer noted about a message it applied: the messages its
    handling publishes (``outbox``), empty once they were sent."""

    outbox: tuple[Message, ...] = ()


Handler = Callable[[Delivery], Awaitable[None]]
DeadLetterListener = Callable[[DeadLetter], Awaitable[None]]


class Bus(abc.ABC):
    """A message bus (see the module docstring for the semantics every implementation keeps)."""

    @abc.abstractmethod
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
        """Create ``group`` on ``topic`` with ``handler`` as its consumer (named ``consumer``,
        by default the group's name). The group gets messages published from now on.

        A handler that raises is treated as a nack. ``on_dead_letter`` hears of messages
        the bus dead-letters on its own (an ack timeout after the last attempt); a nack
        that dead-letters says so in its return value instead. BusError if the group
        already exists on the topic.
        """

    @abc.abstractmethod
    async def publish(self, message: Message) -> None:
        """Append ``message`` to its topic for every group subscribed to it."""

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> bool:
        """Settle the delivery's message for its group. True when this ack settled it; False
        when it was settled already (a duplicate delivery, an ack after the message was
        delivered again and acked)."""

    @abc.abstractmethod
    async def nack(
        self, delivery: Delivery, *, requeue: bool = True, reason: str = ""
    ) -> Disposition:
        """Give the delivery back: ``requeued`` (it will be delivered again), ``dead_lettered``
        (that was the last attempt, or ``requeue=False``), or ``settled`` (it was settled already)."""

    @abc.abstractmethod
    async def seen(self, group: str, message_id: str) -> Processed | None:
        """What ``group`` remembered of ``message_id`` (None: it never applied it)."""

    @abc.abstractmethod
    async def remember(self, group: str, message_id: str, outbox: Sequence[Message] = ()) -> None:
        """Note that ``group`` applied ``message_id``, with the messages still to publish."""

    @abc.abstractmethod
    async def run_until_idle(self) -> None:
        """Deliver until nothing more can happen: no message is ready, no handler is running,
        and no timer (delay, redelivery, ack timeout) is left. Time passes through the bus's
        :class:`~engine.TimeSource` (at once under virtual time)."""

    @abc.abstractmethod
    async def unsettled(self) -> list[Unsettled]:
        """Every message some group has neither acked nor dead-lettered, in publish order."""

    async def close(self) -> None:  # noqa: B027  # nothing to release for an in-process bus
        """Release connections; the bus is not used after."""
