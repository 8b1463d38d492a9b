"""How the bus's facts become spans: one place, for every bus implementation.

docs/conventions.md ("The bus") says what a run records; :class:`BusTracer`
writes exactly that, so the in-process bus and a networked one (Redis Streams,
workers in other processes) leave the same rows in the store's ``messages`` table:

- a publish is a ``send {topic}`` PRODUCER span, a child of the publishing context
  (the step that published, or the run's root), carrying ``gen_ai.agent.name`` (the
  publisher), the message id and key; the message leaves with that span's context in
  its ``traceparent`` header and the run root's in ``agentrace-run``;
- a delivery is a ``process {topic}`` CONSUMER span, a child of the run's root, with a
  LINK to the ``send`` span; its ``agentrace.message.deliver`` event says who got it,
  which attempt it was and any injected fault; its ``agentrace.message.ack`` event says
  how it ended: ``acked``, ``nacked``, ``dead_lettered``, ``duplicate`` (an idempotent
  consumer skipped it) or ``dropped`` (lost before the consumer). A consumer that dies
  before acking leaves no ack event: an ``exception`` event and status ERROR instead;
- a message the bus dead-letters on its own (an ack timeout after the last attempt)
  gets a ``process {topic}`` span of its own holding only that ack event.

Thread rules: as the recorder's; one span is touched by one coroutine at a time.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from tracer import ActiveSpan, IdGenerator, RandomIds, Recorder, SpanContext
from tracer import conventions as c

from ..core._recording import NULL_SPAN, Span
from ._bus import RUN_CONTEXT, TRACEPARENT, Bus, DeadLetter, Delivery, Message

_ERROR_OUTCOMES: Final = frozenset({"nacked", "dead_lettered", "dropped"})


class ConsumerCrashed(Exception):
    """What a consumer killed by an injected crash dies of (recorded; never escapes the bus)."""


def context_of(header: str | None) -> SpanContext | None:
    """The span context in a ``traceparent`` header; None when absent or malformed."""
    if not header:
        return None
    return _parse(header)


# Each group's delivery of a message parses the same header: parse it once.
@functools.lru_cache(maxsize=4096)
def _parse(header: str) -> SpanContext | None:
    try:
        return SpanContext.from_traceparent(header)
    except ValueError:
        return None


class BusTracer:
    """Records publishes and deliveries (see the module docstring). ``recorder=None`` records nothing.

    ``root`` is the run's root span context: ``process`` spans become its children (a
    worker in another process passes None and the root is read from the message's
    ``agentrace-run`` header). ``ids`` makes message ids (by default the recorder's).
    """

    __slots__ = ("_ids", "recorder", "root")

    def __init__(
        self,
        recorder: Recorder | None,
        *,
        root: SpanContext | None = None,
        ids: IdGenerator | None = None,
    ) -> None:
        self.recorder = recorder
        self.root = root
        self._ids: IdGenerator = ids or (recorder.ids if recorder is not None else RandomIds())

    def message_id(self) -> str:
        """A new message id (16 hex digits)."""
        return self._ids.span_id().hex()

    # -- publish ------------------------------------------------------------------------------

    def start_send(
        self, message: Message, *, parent: SpanContext | ActiveSpan | None = None
    ) -> tuple[Message, Span]:
        """Start the ``send`` span of ``message`` (a child of ``parent``, else of the root);
        returns the message stamped with the trace headers, and the span to end once sent."""
        rec = self.recorder
        if rec is None:
            return message, NULL_SPAN
        attrs: dict[str, Any] = {
            c.MESSAGING_SYSTEM: c.PROVIDER,
            c.MESSAGING_OPERATION_TYPE: "send",
            c.MESSAGING_DESTINATION: message.topic,
            c.MESSAGING_MESSAGE_ID: message.id,
        }
        if message.publisher:
            attrs[c.GEN_AI_AGENT_NAME] = message.publisher
        if message.key is not None:
            attrs[c.MESSAGE_KEY] = message.key
        span = rec.start_span(
            f"send {message.topic}", kind="PRODUCER", parent=parent or self.root, attributes=attrs
        )
        headers = {TRACEPARENT: span.context.traceparent}
        root = self.root
        if root is not None:
            headers[RUN_CONTEXT] = root.traceparent
        elif RUN_CONTEXT not in message.headers:
            headers[RUN_CONTEXT] = span.context.traceparent  # this publish starts the trace
        return message.with_headers(headers), span

    async def publish(
        self, bus: Bus, message: Message, *, parent: SpanContext | ActiveSpan | None = None
    ) -> Message:
        """Publish ``message`` on ``bus`` inside its ``send`` span; returns the message as sent."""
        sent, span = self.start_send(message, parent=parent)
        try:
            await bus.publish(sent)
        except BaseException as exc:
            span.record_exception(exc, escaped=True)
            span.set_status("error", f"{type(exc).__name__}: {exc}")
            span.end()
            raise
        span.end()
        return sent

    # -- deliveries ---------------------------------------------------------------------------

    @staticmethod
    def _attrs(delivery: Delivery) -> dict[str, Any]:
        m = delivery.message
        attrs: dict[str, Any] = {
            c.MESSAGING_MESSAGE_ID: m.id,
            c.MESSAGING_DESTINATION: m.topic,
            c.MESSAGING_CONSUMER_GROUP: delivery.group,
            c.MESSAGE_CONSUMER: delivery.consumer,
            c.MESSAGE_ATTEMPT: delivery.attempt,
        }
        if m.key is not None:
            attrs[c.MESSAGE_KEY] = m.key
        return attrs

    def _process_span(self, message: Message, group: str, agent: str, attempt: int) -> ActiveSpan:
        rec = self.recorder
        assert rec is not None
        producer = context_of(message.headers.get(TRACEPARENT))
        parent = self.root or context_of(message.headers.get(RUN_CONTEXT)) or producer
        attrs: dict[str, Any] = {
            c.MESSAGING_SYSTEM: c.PROVIDER,
            c.MESSAGING_OPERATION_TYPE: "process",
            c.MESSAGING_DESTINATION: message.topic,
            c.MESSAGING_MESSAGE_ID: message.id,
            c.MESSAGING_CONSUMER_GROUP: group,
            c.MESSAGING_DELIVERY_COUNT: attempt,
            c.GEN_AI_AGENT_NAME: agent,
        }
        if message.key is not None:
            attrs[c.MESSAGE_KEY] = message.key
        return rec.start_span(
            f"process {message.topic}", kind="CONSUMER", parent=parent, attributes=attrs,
            links=(producer,) if producer is not None else (),
        )  # fmt: skip

    def start_process(self, delivery: Delivery, agent: str) -> Span:
        """Start the ``process`` span of ``delivery`` to ``agent``, with its deliver event."""
        if self.recorder is None:
            return NULL_SPAN
        m = delivery.message
        span = self._process_span(m, delivery.group, agent, delivery.attempt)
        attrs = self._attrs(delivery)
        if delivery.fault is not None:
            attrs[c.MESSAGE_FAULT] = delivery.fault
        span.add_event(c.EV_MESSAGE_DELIVER, attrs)
        return span

    def settle(self, span: Span, delivery: Delivery, outcome: str, reason: str = "") -> None:
        """The ack event: how ``delivery`` ended (``acked``, ``nacked``, ``dead_lettered``,
        ``duplicate``, ``dropped``). Does not end the span."""
        if span is NULL_SPAN:
            return
        attrs = self._attrs(delivery)
        attrs[c.MESSAGE_OUTCOME] = outcome
        span.add_event(c.EV_MESSAGE_ACK, attrs)
        if outcome in _ERROR_OUTCOMES and isinstance(span, ActiveSpan):
            span.set_status("error", f"{outcome}: {reason}" if reason else outcome)

    def crashed(self, span: Span, delivery: Delivery) -> ConsumerCrashed:
        """The consumer died before acking (an injected ``crash`` or ``crash_during``): no ack
        event, an exception event and status ERROR instead. Returns the exception recorded."""
        when = "while processing" if delivery.fault == "crash_during" else "after processing"
        exc = ConsumerCrashed(
            f"consumer {delivery.consumer!r} crashed {when} message {delivery.message.id}, before its ack"
        )
        span.record_exception(exc, escaped=True)
        span.set_status("error", str(exc))
        return exc

    def dead_lettered(self, dead: DeadLetter, agent: str) -> None:
        """Record a message the bus dead-lettered on its own (no consumer was running)."""
        if self.recorder is None:
            return
        m = dead.message
        span = self._process_span(m, dead.group, agent, dead.attempts)
        delivery = Delivery(m, dead.group, dead.consumer, dead.attempts, "")
        self.settle(span, delivery, "dead_lettered", dead.reason)
        span.end()
