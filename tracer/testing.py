"""Test helpers: record small agentrace runs by the conventions, without the engine.

:class:`RunBuilder` writes what docs/conventions.md says the engine writes (the
workflow root, agent steps, state commits and reads against a real hash-chained
ledger, ``send``/``process`` spans with their deliver and ack events, contract
checks, breaker transitions, compensations), under a :class:`FakeClock` and
:class:`SeededIds`, so a test of the store, the analysis or the debugger builds
exactly the run it needs in a few lines::

    with RunBuilder(store, initial={"score": 600}) as run:
        with run.step("scorer") as s:
            s.read(["application"])
            s.commit({"score": 710})
        with run.step("rater", from_=["scorer"]) as r:
            r.read(["score"], version=1, via="cache", cache="scores")
            r.commit({"rating": "C"})

Steps may overlap: ``run.step(...)`` starts a span that ends when its ``with``
block does or when ``end()`` is called, so interleavings are written in the
order they happen. Every reading of the clock advances it by ``tick_ns``;
``advance`` moves it further. Not thread-safe: one test drives one builder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import conventions as c
from ._clock import FakeClock, SeededIds
from ._recorder import ActiveSpan, Recorder, SpanContext, SpanSink
from ._sinks import DuckDBSink
from ._state import JSON, canonical_json, chain_hash
from ._store._store import Store

__all__ = ["Delivery", "Ledger", "RunBuilder", "Sent", "Step"]

_START_NS = 1_700_000_000_000_000_000


class Ledger:
    """A run's state versions as the engine keeps them: documents, hashes, commit times.

    Version ``v`` is ``docs[v - 1]``; ``head`` is the newest version (0 when empty).
    """

    def __init__(self) -> None:
        self.docs: list[dict[str, JSON]] = []
        self.hashes: list[str] = []
        self.committed_ns: list[int] = []
        self.agents: list[str | None] = []

    @property
    def head(self) -> int:
        return len(self.docs)

    def doc(self, version: int) -> dict[str, JSON]:
        return dict(self.docs[version - 1]) if version else {}

    def append(self, doc: dict[str, JSON], agent: str | None, time_ns: int) -> tuple[int, str]:
        h = chain_hash(self.hashes[-1] if self.hashes else "", doc)
        self.docs.append(doc)
        self.hashes.append(h)
        self.committed_ns.append(time_ns)
        self.agents.append(agent)
        return len(self.docs), h


class Step:
    """A span being recorded (an agent step, a process span, a compensation); thin over :class:`ActiveSpan`.

    ``outcome`` (``ok``, ``failed``, ``rejected``, ``breaker_open``, ``timeout``) is written
    as ``agentrace.step.outcome`` when the span ends; anything but ``ok`` also sets the
    span's status to ERROR.
    """

    def __init__(
        self, run: RunBuilder, span: ActiveSpan, agent: str | None, outcome: str | None
    ) -> None:
        self.run = run
        self.span = span
        self.agent = agent
        self.outcome = outcome
        self.last_read: int | None = None

    @property
    def span_id(self) -> str:
        return self.span.span_id

    @property
    def context(self) -> SpanContext:
        return self.span.context

    def read(
        self,
        keys: Iterable[str],
        *,
        version: int | None = None,
        via: str = "store",
        cache: str | None = None,
        head: bool = True,
    ) -> int:
        """Record a read of ``keys`` at ``version`` (default: the ledger's head); returns the version.

        ``head=False`` leaves ``head_version`` out, as foreign traces do.
        """
        ledger = self.run.ledger
        v = ledger.head if version is None else version
        if not 0 <= v <= ledger.head:
            raise ValueError(f"cannot read version {v}: the head is {ledger.head}")
        self.span.record_read(
            version=v,
            keys=list(keys),
            via=via,
            head_version=ledger.head if head else None,
            cache=cache,
            agent=self.agent,
            time_ns=self.run.clock.now_ns(),
        )
        self.last_read = v
        return v

    def commit(
        self,
        changes: Mapping[str, JSON] | None = None,
        *,
        remove: Iterable[str] = (),
        base: int | None = None,
        kind: str = "commit",
        document: Mapping[str, JSON] | None = None,
        keys: Sequence[str] | None = None,
    ) -> int:
        """Commit a new version on top of the head; returns its number.

        The new document is ``document`` when given, else the head's with ``changes``
        set and ``remove`` deleted. ``base`` (what the writer read) defaults to this
        step's last read, else the head. ``keys`` defaults to the keys that changed.
        """
        ledger = self.run.ledger
        parent = ledger.head
        if document is not None:
            doc = dict(document)
        else:
            doc = ledger.doc(parent)
            doc.update(changes or {})
            for k in remove:
                doc.pop(k, None)
        if base is None:
            base = self.last_read if self.last_read is not None else parent
        now = self.run.clock.now_ns()
        version, h = ledger.append(doc, self.agent, now)
        self.span.commit_state(
            version=version,
            snapshot=doc,
            hash=h,
            parent_snapshot=ledger.doc(parent) if parent else None,
            parent_version=parent or None,
            base_version=base or None,
            kind="initial" if version == 1 and kind == "commit" else kind,
            agent=self.agent,
            keys=keys,
            time_ns=now,
        )
        return version

    def contract(
        self,
        name: str,
        *,
        target: str,
        outcome: str = "passed",
        payload: JSON = None,
        errors: Sequence[str] = (),
        source: str | None = None,
    ) -> None:
        """Record an ``agentrace.contract.check`` of this step's output."""
        self.span.add_event(
            c.EV_CONTRACT_CHECK,
            {
                c.CONTRACT_NAME: name,
                c.CONTRACT_OUTCOME: outcome,
                c.CONTRACT_SOURCE: source or self.agent or "",
                c.CONTRACT_TARGET: target,
                c.CONTRACT_PAYLOAD: canonical_json(payload),
                c.CONTRACT_ERRORS: canonical_json(list(errors)),
            },
            time_ns=self.run.clock.now_ns(),
        )

    def breaker(self, name: str, *, to: str, from_: str, reason: str = "") -> None:
        """Record an ``agentrace.breaker.transition`` caused by this step."""
        self.span.add_event(
            c.EV_BREAKER_TRANSITION,
            {
                c.BREAKER_NAME: name,
                c.BREAKER_FROM: from_,
                c.BREAKER_TO: to,
                c.BREAKER_REASON: reason,
            },
            time_ns=self.run.clock.now_ns(),
        )

    def fail(self, message: str = "failed", *, outcome: str = "failed") -> None:
        """Mark the step failed with an ``exception`` event."""
        self.outcome = outcome
        self.span.add_event(
            "exception",
            {
                "exception.type": "RuntimeError",
                "exception.message": message,
                "exception.escaped": True,
            },
            time_ns=self.run.clock.now_ns(),
        )

    def _before_end(self) -> None:
        if self.outcome is not None:
            if not self.run.imported:
                self.span.set_attribute(c.STEP_OUTCOME, self.outcome)
            if self.outcome != "ok":
                self.span.set_status("error", self.outcome)
            if self.outcome == "breaker_open":
                self.span.set_attribute(c.BREAKER_REJECTED, True)

    def end(self) -> None:
        if self.span.ended:
            return
        self._before_end()
        self.span.end(end_ns=self.run.clock.now_ns())

    def __enter__(self) -> Step:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()


class Sent:
    """A message published by :meth:`RunBuilder.publish`: what a consumer needs to process it."""

    def __init__(
        self, message_id: str, topic: str, key: str | None, context: SpanContext, publisher: str
    ) -> None:
        self.message_id = message_id
        self.topic = topic
        self.key = key
        self.context = context
        self.publisher = publisher

    @property
    def span_id(self) -> str:
        return self.context.span_id_hex


class Delivery(Step):
    """A ``process {topic}`` span; its ack event (``ack``: acked, nacked, dead_lettered,
    duplicate, dropped) is written when it ends, unless ``ack`` is None (the consumer
    died before acking)."""

    def __init__(self, run: RunBuilder, span: ActiveSpan, agent: str, sent: Sent, group: str, consumer: str, attempt: int, ack: str | None) -> None:  # fmt: skip
        super().__init__(run, span, agent, None)
        self.sent = sent
        self.group = group
        self.consumer = consumer
        self.attempt = attempt
        self.ack = ack

    def _message_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            c.MESSAGING_MESSAGE_ID: self.sent.message_id,
            c.MESSAGING_DESTINATION: self.sent.topic,
            c.MESSAGING_CONSUMER_GROUP: self.group,
            c.MESSAGE_CONSUMER: self.consumer,
            c.MESSAGE_ATTEMPT: self.attempt,
        }
        if self.sent.key is not None:
            attrs[c.MESSAGE_KEY] = self.sent.key
        return attrs

    def _before_end(self) -> None:
        if self.ack is not None:
            self.span.add_event(
                c.EV_MESSAGE_ACK,
                {**self._message_attrs(), c.MESSAGE_OUTCOME: self.ack},
                time_ns=self.run.clock.now_ns(),
            )
            if self.ack in ("nacked", "dead_lettered", "dropped"):
                self.span.set_status("error", self.ack)
        super()._before_end()


class RunBuilder:
    """Records one run into ``target`` (a :class:`Store`, or any span sink).

    The root ``invoke_workflow {workflow}`` span starts at once; ``finish`` (or leaving the
    ``with`` block) ends it with ``agentrace.run.status`` and flushes the recorder. With
    ``initial``, version 1 is committed on the root before anything else. ``declared``
    becomes ``agentrace.run.declared_graph``; ``imported=True`` leaves out every
    ``agentrace.run.*`` attribute, so the run looks like a foreign trace.
    """

    def __init__(
        self,
        target: Store | SpanSink,
        *,
        workflow: str = "test",
        pattern: str = "orchestration",
        scenario: str | None = None,
        declared: Mapping[str, Any] | None = None,
        initial: Mapping[str, JSON] | None = None,
        seed: int = 1,
        start_ns: int = _START_NS,
        tick_ns: int = 1_000,
        snapshot_every: int = 32,
        batch_size: int = 1024,
        imported: bool = False,
    ) -> None:
        sink: SpanSink = DuckDBSink(target) if isinstance(target, Store) else target
        self.clock = FakeClock(start_ns, tick_ns=tick_ns)
        self.ids = SeededIds(seed)
        self.recorder = Recorder(
            sink,
            clock=self.clock,
            ids=self.ids,
            batch_size=batch_size,
            snapshot_every=snapshot_every,
        )
        self.ledger = Ledger()
        self._steps = 0
        self._messages = 0
        self.status = "completed"
        attrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_WORKFLOW,
            c.GEN_AI_WORKFLOW_NAME: workflow,
            c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
        }
        if not imported:
            attrs[c.RUN_PATTERN] = pattern
            attrs[c.RUN_SEED] = seed
            if scenario is not None:
                attrs[c.RUN_SCENARIO] = scenario
            if declared is not None:
                attrs[c.RUN_DECLARED_GRAPH] = canonical_json(dict(declared))
        self.imported = imported
        self.root = self.recorder.start_span(f"invoke_workflow {workflow}", attributes=attrs)
        self.root_step = Step(self, self.root, None, None)
        if initial is not None:
            self.root_step.commit(dict(initial), base=0, kind="initial")

    @property
    def run_id(self) -> str:
        return self.root.trace_id

    def advance(self, *, ms: float = 0, ns: int = 0) -> None:
        """Move the clock forward (on top of the tick every reading adds)."""
        self.clock.advance(ms / 1_000, ns=ns)

    def step(
        self,
        agent: str,
        *,
        from_: Sequence[str] = (),
        attempt: int = 1,
        outcome: str | None = "ok",
        parent: Step | None = None,
        input: JSON = None,
        output: JSON = None,
        name: str | None = None,
        operation: str = c.OP_INVOKE_AGENT,
    ) -> Step:
        """Start an ``invoke_agent {agent}`` span (a child of ``parent`` or of the root)."""
        self._steps += 1
        attrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: operation,
            c.GEN_AI_AGENT_NAME: agent,
        }
        if not self.imported:
            attrs.update({
                c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
                c.GEN_AI_CONVERSATION_ID: self.run_id,
                c.AGENT_STEP: self._steps,
                c.AGENT_ATTEMPT: attempt,
                c.AGENT_INPUT: canonical_json(input),
                c.AGENT_OUTPUT: canonical_json(output),
            })  # fmt: skip
            if from_:
                attrs[c.AGENT_FROM] = list(from_)
        span = self.recorder.start_span(
            name or f"{operation} {agent}",
            parent=(parent.span if parent else self.root),
            attributes=attrs,
            start_ns=self.clock.now_ns(),
        )
        return Step(self, span, agent, outcome if not self.imported else None)

    def publish(
        self,
        agent: str,
        topic: str,
        *,
        message_id: str | None = None,
        key: str | None = None,
        parent: Step | None = None,
    ) -> Sent:
        """Record a ``send {topic}`` PRODUCER span by ``agent``; returns what consumers need."""
        self._messages += 1
        mid = message_id or f"m{self._messages}"
        attrs: dict[str, Any] = {
            c.MESSAGING_SYSTEM: c.PROVIDER,
            c.MESSAGING_OPERATION_TYPE: "send",
            c.MESSAGING_DESTINATION: topic,
            c.MESSAGING_MESSAGE_ID: mid,
            c.GEN_AI_AGENT_NAME: agent,
        }
        if key is not None:
            attrs[c.MESSAGE_KEY] = key
        span = self.recorder.start_span(
            f"send {topic}",
            kind="PRODUCER",
            parent=(parent.span if parent else self.root),
            attributes=attrs,
            start_ns=self.clock.now_ns(),
        )
        span.end(end_ns=self.clock.now_ns())
        return Sent(mid, topic, key, span.context, agent)

    def process(
        self,
        sent: Sent,
        *,
        agent: str,
        group: str | None = None,
        consumer: str | None = None,
        attempt: int = 1,
        ack: str | None = "acked",
        fault: str | None = None,
        parent: Step | None = None,
    ) -> Delivery:
        """Start a ``process {topic}`` CONSUMER span: a delivery of ``sent`` to ``group``.

        The span links to the ``send`` span and carries a deliver event now and an ack
        event (``ack``) when it ends.
        """
        group = group or agent
        consumer = consumer or agent
        attrs: dict[str, Any] = {
            c.MESSAGING_SYSTEM: c.PROVIDER,
            c.MESSAGING_OPERATION_TYPE: "process",
            c.MESSAGING_DESTINATION: sent.topic,
            c.MESSAGING_MESSAGE_ID: sent.message_id,
            c.MESSAGING_CONSUMER_GROUP: group,
            c.MESSAGING_DELIVERY_COUNT: attempt,
            c.GEN_AI_AGENT_NAME: agent,
        }
        span = self.recorder.start_span(
            f"process {sent.topic}",
            kind="CONSUMER",
            parent=(parent.span if parent else self.root),
            attributes=attrs,
            links=[sent.context],
            start_ns=self.clock.now_ns(),
        )
        delivery = Delivery(self, span, agent, sent, group, consumer, attempt, ack)
        deliver_attrs = delivery._message_attrs()
        if fault is not None:
            deliver_attrs[c.MESSAGE_FAULT] = fault
        span.add_event(c.EV_MESSAGE_DELIVER, deliver_attrs, time_ns=self.clock.now_ns())
        return delivery

    def compensate(
        self,
        agent: str,
        *,
        outcome: str = "ok",
        attempt: int = 1,
        error: str | None = None,
        parent: Step | None = None,
    ) -> Step:
        """Start a ``compensate {agent}`` span with its ``agentrace.saga.compensate`` event."""
        span = self.recorder.start_span(
            f"compensate {agent}",
            parent=(parent.span if parent else self.root),
            attributes={c.GEN_AI_OPERATION_NAME: "compensate", c.GEN_AI_AGENT_NAME: agent},
            start_ns=self.clock.now_ns(),
        )
        attrs: dict[str, Any] = {
            c.SAGA_AGENT: agent,
            c.SAGA_OUTCOME: outcome,
            c.SAGA_ATTEMPT: attempt,
        }
        if error is not None:
            attrs[c.SAGA_ERROR] = error
        span.add_event(c.EV_SAGA_COMPENSATE, attrs, time_ns=self.clock.now_ns())
        if outcome != "ok":
            span.set_status("error", error or "compensation failed")
        return Step(self, span, agent, None)

    def finish(self, status: str | None = None) -> str:
        """End the root with ``agentrace.run.status`` (``status`` or ``self.status``), flush; returns the run id."""
        if not self.root.ended:
            if not self.imported:
                self.root.set_attribute(c.RUN_STATUS, status or self.status)
            self.root.end(end_ns=self.clock.now_ns())
        self.recorder.flush()
        return self.run_id

    def __enter__(self) -> RunBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
