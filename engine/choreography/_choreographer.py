"""Choreography: agents that never call each other; they publish events and subscribe to them.

Declare who listens to what on a :class:`Choreography`, then run it with a
:class:`Choreographer`::

    flow = (Choreography("research-pipeline", entry="research.requested")
            .on("research.requested", research, emits="research.done")
            .on("research.done", analysis, emits="analysis.done")
            .on("analysis.done", report)
            .topic("research.done", contract=Contract("notes", Notes)))
    result = await Choreographer(recorder, time=time, seed=7).run(flow, {"topic": "otters"})

How a delivery is handled (one ``process {topic}`` span per delivery; see
:class:`~engine.BusTracer` for the bus's own facts):

1. an injected ``drop`` ends it there (recorded ``dropped``, not acked);
2. an idempotent subscription acks a message its group already applied as
   ``duplicate``, sending first whatever that application left unsent;
3. the agent runs as one ``invoke_agent`` step under the ``process`` span, exactly as
   an orchestrated step: ``execute(state, payload, ctx)`` on a view of the ledger's
   head (reads, caches and commits recorded the same way), its contract checked,
   its :class:`~engine.Update` committed. ``ctx`` is an :class:`EventContext`:
   ``ctx.publish(topic, payload)`` stages further messages; with ``emits`` the
   step's output (unless it is None) is published on that topic, keyed as the
   message it handles. Staged messages are checked against
   their topic's contract, and a rejection fails the step before anything commits;
4. a step that failed is nacked: delivered again per the subscription's
   :class:`~engine.DeliveryPolicy` (a contract rejection or bad output at once
   dead-lettered: it would fail the same way again). A message dead-lettered for good
   fails the run, and in a saga starts the compensation;
5. otherwise the staged messages are published (``send`` spans under the ``process``
   span, ``traceparent`` in their headers) and the delivery is acked. An injected
   ``crash`` kills the consumer before this point (its commits stand, nothing is
   published, no ack); ``crash_during`` kills it inside the step, before it commits
   (nothing is committed, published or acked); ``ack_lost`` loses the ack on its way.

A choreographed saga (``saga=SagaPolicy(...)``): every message carries the chain of
completed steps that caused it (the ``agentrace-saga`` header). When a message is
dead-lettered, the failing consumer publishes a compensation event to the last
completed agent of its chain that has a compensation (topic ``{agent}.compensate``);
a completed step with nothing to undo is recorded skipped (reason
``no_compensation``), as in an orchestrated saga. That agent compensates
on receipt (a ``compensate {agent}`` span, an ``agentrace.saga.compensate`` event, a
version of kind ``compensation``) and passes the event on to the agent before it:
reverse causal order, over the bus. A compensation is retried by redelivery per the
policy's ``retry``; one that fails for good stops the chain unless
``continue_on_error`` (the steps left undone are recorded skipped, reason
``stopped``). The run ends ``compensated`` or ``compensation_failed``, as an
orchestrated saga does. ``start(agent, emits=...)`` makes the first step an
orchestrated one (run by the engine, not by a subscription): the run is then a
``hybrid``.

The run ends when the bus is idle. Its status is ``completed`` when no message was
dead-lettered, every message was settled and ``done_when`` (if given) holds for the
final state; otherwise ``failed`` (unless a saga ran).

Async rules: a run lives on one event loop; a :class:`Choreographer` may run many
choreographies on that loop concurrently, each with a bus of its own.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import networkx as nx
import orjson

from tracer import ActiveSpan, IdGenerator, RandomIds, Recorder, canonical_json
from tracer import conventions as c

from ..core._agent import Agent, as_agent
from ..core._breaker import BreakerListener
from ..core._cache import CachePolicy, Policy
from ..core._contracts import Contract
from ..core._errors import (
    AgentError,
    CompensationError,
    ContractViolation,
    EngineError,
    StepError,
    WorkflowError,
)
from ..core._ledger import JSON, StateLedger, json_copy
from ..core._recording import NULL_SPAN, RunScope, Span
from ..core._saga import Compensation, Saga, SagaPolicy
from ..core._step import Attempted, Breakers, Checks, RunOutcome, StepRecord, StepRunner
from ..core._time import RealTime, TimeSource
from ..core._view import AgentContext
from ..core._workflows import check_name
from ._bus import (
    SAGA_CHAIN,
    Bus,
    BusError,
    DeadLetter,
    Delivery,
    DeliveryPolicy,
    Message,
    Unsettled,
)
from ._bus_tracer import BusTracer, ConsumerCrashed
from ._faults import AppliedFault, FaultInjector, Faults
from ._memory_bus import InProcessBus

BusFactory = Callable[[TimeSource, FaultInjector | None], Bus]
DoneWhen = Callable[[Mapping[str, JSON]], bool]
_INHERIT: Any = object()
COMPENSATE_SUFFIX: Final = ".compensate"


def compensation_topic(agent: str) -> str:
    """The topic an agent's compensation events travel on."""
    return f"{agent}{COMPENSATE_SUFFIX}"


class DeliveryFailed(EngineError):
    """A message a group never handled: dead-lettered by the bus, or left unsettled at the end."""

    def __init__(self, message_id: str, topic: str, group: str, detail: str) -> None:
        self.message_id = message_id
        self.topic = topic
        self.group = group
        self.detail = detail
        super().__init__(f"message {message_id} on {topic!r} for group {group!r}: {detail}")


@dataclass(frozen=True, slots=True)
class Subscription:
    """An agent subscribed to a topic, as consumer group ``group`` (see :meth:`Choreography.on`)."""

    topic: str
    agent: Agent
    group: str
    emits: str | None = None
    publishes: tuple[str, ...] = ()
    idempotent: bool = False
    policy: DeliveryPolicy | None = None
    compensation: bool = False  # the saga's compensation subscription of ``agent``


@dataclass(frozen=True, slots=True)
class _Start:
    agent: Agent
    emits: str
    publishes: tuple[str, ...] = ()


class Choreography:
    """Who subscribes to what, which topics carry which contracts; built fluently, then run.

    ``entry`` is the topic a run's input is published on (by ``source``) unless a
    ``start`` step is declared. ``policy`` is the delivery policy of subscriptions that
    give none. ``saga`` makes it a choreographed saga (see the module docstring).
    ``ref`` and ``version`` are the registered name runs record, by which replay finds
    the factory again (see :func:`engine.workflow`).
    """

    def __init__(
        self,
        name: str,
        *,
        entry: str | None = None,
        source: str = "user",
        ref: str | None = None,
        version: str | None = None,
        policy: DeliveryPolicy | None = None,
        saga: SagaPolicy | None = None,
        done_when: DoneWhen | None = None,
    ) -> None:
        if not name:
            raise WorkflowError("?", "a choreography needs a name")
        self.name = name
        self.entry = entry
        self.source = source
        self.ref = check_name(ref) if ref is not None else None
        self.version = check_name(version, "workflow version") if version is not None else None
        self.policy = policy or DeliveryPolicy()
        self.saga = saga
        self.done_when = done_when
        self.subscriptions: list[Subscription] = []
        self.contracts: dict[str, Contract] = {}
        self.caches: dict[str, CachePolicy] = {}
        self.start_step: _Start | None = None

    def __repr__(self) -> str:
        return f"Choreography({self.name!r}, subscriptions={len(self.subscriptions)})"

    def registered(self, name: str, version: str) -> Choreography:
        """A copy recording ``name`` and ``version`` as what replay finds it by."""
        out = copy.copy(self)
        out.ref = check_name(name)
        out.version = check_name(version, "workflow version")
        return out

    def _fail(self, detail: str) -> WorkflowError:
        return WorkflowError(self.name, detail)

    @property
    def pattern(self) -> str:
        return "hybrid" if self.start_step is not None else "choreography"

    @property
    def agents(self) -> dict[str, Agent]:
        out: dict[str, Agent] = {}
        if self.start_step is not None:
            out[self.start_step.agent.name] = self.start_step.agent
        for s in self.subscriptions:
            out.setdefault(s.agent.name, s.agent)
        return out

    def _agent(self, obj: Any) -> Agent:
        try:
            a = as_agent(obj)
        except (TypeError, ValueError) as exc:
            raise self._fail(str(exc)) from None
        prior = self.agents.get(a.name)
        if prior is not None and prior is not a:
            # The same function passed again (as_agent wraps it anew each time) is the same agent.
            if prior.execute is a.execute and prior.compensate is a.compensate:
                return prior
            raise self._fail(f"two different agents are named {a.name!r}")
        return a

    def on(
        self,
        topic: str,
        agent: Any,
        *,
        group: str | None = None,
        emits: str | None = None,
        publishes: Iterable[str] = (),
        idempotent: bool = False,
        policy: DeliveryPolicy | None = None,
    ) -> Choreography:
        """Subscribe ``agent`` to ``topic`` as consumer group ``group`` (by default its name).

        ``emits``: the topic its output is published on. ``publishes``: the other topics
        it may publish on with ``ctx.publish`` (declared, so the analysis can tell a
        surprise from a plan). ``idempotent``: skip messages the group already applied.
        """
        a = self._agent(agent)
        g = group or a.name
        if not topic:
            raise self._fail(f"agent {a.name!r} subscribes to an empty topic name")
        if topic.endswith(COMPENSATE_SUFFIX):
            raise self._fail(
                f"topic {topic!r}: names ending in {COMPENSATE_SUFFIX!r} carry saga compensations"
            )
        if any(s.topic == topic and s.group == g for s in self.subscriptions):
            raise self._fail(f"group {g!r} subscribes to {topic!r} twice")
        self.subscriptions.append(
            Subscription(topic, a, g, emits, tuple(publishes), idempotent, policy)
        )
        return self

    def start(self, agent: Any, *, emits: str, publishes: Iterable[str] = ()) -> Choreography:
        """An orchestrated first step: the engine runs ``agent`` on the run's input and
        publishes its output on ``emits``; the run becomes a ``hybrid``."""
        a = self._agent(agent)
        if self.start_step is not None:
            raise self._fail(f"a start step is declared already ({self.start_step.agent.name!r})")
        self.start_step = _Start(a, emits, tuple(publishes))
        return self

    def topic(self, name: str, *, contract: Contract) -> Choreography:
        """Check every payload published on ``name`` against ``contract`` before it leaves."""
        self.contracts[name] = contract
        return self

    def cache(
        self, name: str, invalidation: Policy = "on_commit", *, ttl: float | None = None
    ) -> Choreography:
        """Declare a cache handlers can read through (``state.cache(name)``); one per run."""
        try:
            self.caches[name] = CachePolicy(name, invalidation, ttl)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        return self

    # -- what the run declares ------------------------------------------------------------------

    def _all_subscriptions(self) -> list[Subscription]:
        """The declared subscriptions plus, in a saga, each compensable agent's compensation one."""
        subs = list(self.subscriptions)
        if self.saga is not None:
            retry = self.saga.retry
            policy = DeliveryPolicy(
                max_attempts=retry.max_attempts, ack_timeout=self.policy.ack_timeout,
                redelivery_delay=retry.initial_delay, backoff=max(1.0, retry.multiplier),
            )  # fmt: skip
            for a in self.agents.values():
                if a.compensate is not None:
                    subs.append(
                        Subscription(
                            compensation_topic(a.name), a, a.name, None, (), True, policy, True
                        )
                    )
        return subs

    def _flow(self) -> nx.DiGraph:
        """Agents, and which may cause which (one publishes what the other subscribes to)."""
        g = nx.DiGraph()
        g.add_nodes_from(self.agents)
        outs: dict[str, set[str]] = {}
        if self.start_step is not None:
            outs[self.start_step.agent.name] = {self.start_step.emits, *self.start_step.publishes}
        for s in self.subscriptions:
            outs.setdefault(s.agent.name, set()).update(t for t in (s.emits, *s.publishes) if t)
        for a, topics in outs.items():
            for s in self.subscriptions:
                if s.topic in topics:
                    g.add_edge(a, s.agent.name)
        return g

    def declared_graph(self) -> dict[str, Any]:
        """The ``agentrace.run.declared_graph`` document: agents, subscriptions, publishes
        (agents never hand off to each other directly here, so ``edges`` is empty)."""
        subs: list[list[str]] = []
        pubs: list[list[str]] = []

        def pub(agent: str, topic: str | None) -> None:
            if topic and [agent, topic] not in pubs:
                pubs.append([agent, topic])

        if self.start_step is not None:
            pub(self.start_step.agent.name, self.start_step.emits)
            for t in self.start_step.publishes:
                pub(self.start_step.agent.name, t)
        elif self.entry is not None:
            pub(self.source, self.entry)
        for s in self.subscriptions:
            subs.append([s.topic, s.agent.name])
            pub(s.agent.name, s.emits)
            for t in s.publishes:
                pub(s.agent.name, t)
        if self.saga is not None:
            flow = self._flow()
            for s in self._all_subscriptions():
                if s.compensation:
                    subs.append([s.topic, s.agent.name])
                    # Whoever the agent's completed step may lead to can fail (and publish its
                    # compensation) or compensate next (and pass it on).
                    for d in sorted(nx.descendants(flow, s.agent.name)):
                        pub(d, s.topic)
        return {"agents": list(self.agents), "edges": [], "subscriptions": subs, "publishes": pubs}

    def validate(self) -> None:
        """WorkflowError when the choreography cannot run."""
        if self.start_step is None and self.entry is None:
            raise self._fail("give an entry topic (Choreography(..., entry=...)) or a start step")
        if not self.subscriptions:
            raise self._fail("no subscriptions")
        if self.saga is not None and self.saga.parallel:
            raise self._fail(
                "a choreographed saga compensates along its causal chain, one at a time: parallel=True"
            )


class EventContext(AgentContext):
    """An :class:`~engine.AgentContext` for a choreographed step: the message being handled
    (``message``, ``delivery``; None for a start step) and :meth:`publish`."""

    __slots__ = ("_key", "_outbox", "delivery", "message")

    def __init__(
        self, run_id: str, workflow: str, agent: str, step: int, attempt: int, time: TimeSource,
        seed: int | None, message: Message | None = None, delivery: Delivery | None = None,
        key: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(run_id, workflow, agent, step, attempt, time, seed)
        self.message = message
        self.delivery = delivery
        self._key = key
        self._outbox: list[tuple[str, JSON, str | None]] = []

    def publish(self, topic: str, payload: Any, *, key: str | None = _INHERIT) -> None:
        """Stage ``payload`` for ``topic`` (by default keyed as the message being handled).

        Staged messages leave when the step has completed, checked by their topic's contract;
        a step that fails publishes nothing.
        """
        if not topic:
            raise BusError("publish needs a topic")
        try:
            data = json_copy(payload, "payload")
        except ValueError as exc:
            raise BusError(f"message on {topic!r}: {exc}") from None
        self._outbox.append((topic, data, self._key if key is _INHERIT else key))


@dataclass(frozen=True, slots=True, eq=False)
class ChoreographyResult(RunOutcome):
    """What a choreographed run did. ``ledger`` holds every state version.

    ``unsettled``: messages some group never acked nor dead-lettered; ``dead_letters``:
    messages given up on; ``faults``: the faults injected, in order.
    """

    run_id: str
    workflow: str
    status: str  # completed | failed | compensated | compensation_failed
    steps: tuple[StepRecord, ...]
    compensations: tuple[Compensation, ...]
    ledger: StateLedger
    published: int
    unsettled: tuple[Unsettled, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    faults: tuple[AppliedFault, ...] = ()
    error: EngineError | None = None


class Choreographer:
    """Runs choreographies; records through ``recorder`` (or nothing, when it is None).

    ``time`` gives the clock, sleeps and timeouts (by default real time on the recorder's
    clock); ``seed`` makes ``ctx.rng`` repeatable and is recorded on each run; ``faults`` is
    injected into every run's bus. ``bus`` builds each run's bus from the time source and
    the run's fault injector (by default an :class:`~engine.InProcessBus`).
    """

    def __init__(
        self,
        recorder: Recorder | None = None,
        *,
        time: TimeSource | None = None,
        ids: IdGenerator | None = None,
        seed: int | None = None,
        faults: Faults | None = None,
        bus: BusFactory | None = None,
        breaker_listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.recorder = recorder
        self.time: TimeSource = time or RealTime(recorder.clock if recorder is not None else None)
        self.ids: IdGenerator = ids or (recorder.ids if recorder is not None else RandomIds())
        self.seed = seed
        self.faults = faults
        # Agents' breakers, kept across runs, as the orchestrator keeps them.
        self.breakers = Breakers(self.time.clock, breaker_listeners)
        self.bus_factory: BusFactory = bus or (lambda t, f: InProcessBus(t, faults=f))

    async def run(
        self,
        choreography: Choreography,
        input: Any = None,
        *,
        state: Mapping[str, Any] | None = None,
        key: str | None = None,
        scenario: str | None = None,
        run_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> ChoreographyResult:
        """Publish ``input`` (keyed ``key``) on the entry topic, or run the start step on it, and
        deliver until the bus is idle; see the module docstring."""
        if not isinstance(choreography, Choreography):
            raise TypeError(f"not a Choreography: {choreography!r}")
        choreography.validate()
        try:
            value = json_copy(input, "input")
            initial = json_copy(dict(state or {}), "state")
        except ValueError as exc:
            raise EngineError(f"choreography {choreography.name!r}: the run's {exc}") from None
        declared = (
            canonical_json(choreography.declared_graph()) if self.recorder is not None else None
        )
        scope = RunScope(
            self.recorder, workflow=choreography.name, clock=self.time.clock, ids=self.ids,
            pattern=choreography.pattern, initial_state=initial, ref=choreography.ref, version=choreography.version,
            declared_graph=declared, scenario=scenario, seed=self.seed, attributes=attributes,
            caches=choreography.caches.values(), run_id=run_id,
        )  # fmt: skip
        injector = self.faults.injector() if self.faults else None
        bus = self.bus_factory(self.time, injector)
        root = scope.root.context if isinstance(scope.root, ActiveSpan) else None
        run = ChoreographyRun(
            self, choreography, scope, bus, BusTracer(self.recorder, root=root, ids=self.ids)
        )
        try:
            await run.execute(value, key)
            unsettled = tuple(await bus.unsettled())
        except BaseException as exc:
            scope.finish("failed", exc)
            raise
        finally:
            await bus.close()
        status, error = run.outcome(unsettled)
        scope.finish(status, error)
        return ChoreographyResult(
            scope.run_id, choreography.name, status, tuple(run.records), run.compensation_results(),
            scope.ledger, run.published, unsettled, tuple(run.dead_letters),
            tuple(injector.applied) if injector is not None else (), error,
        )  # fmt: skip

    def run_sync(
        self, choreography: Choreography, input: Any = None, **kw: Any
    ) -> ChoreographyResult:
        """``run`` from synchronous code (starts an event loop; not from inside one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(choreography, input, **kw))
        raise RuntimeError(
            "run_sync called from a running event loop: use `await choreographer.run(...)`"
        )


@dataclass(slots=True)
class _Chain:
    """A completed step in a saga's causal chain (what the ``agentrace-saga`` header lists)."""

    agent: str
    step: int
    output: JSON
    version: int | None
    undo: bool = True  # its agent has a compensation (else it is recorded as needing none)

    def to_json(self) -> dict[str, Any]:
        out = {
            "agent": self.agent,
            "step": self.step,
            "output": self.output,
            "version": self.version,
        }
        if not self.undo:
            out["undo"] = False
        return out

    @classmethod
    def from_json(cls, obj: Any) -> _Chain:
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("agent"), str)
            or not isinstance(obj.get("step"), int)
        ):
            raise BusError(f"malformed saga chain entry: {obj!r}")
        v = obj.get("version")
        return cls(
            obj["agent"], obj["step"], obj.get("output"), v if isinstance(v, int) else None,
            obj.get("undo") is not False,
        )  # fmt: skip


def _chain_of(message: Message) -> list[_Chain]:
    text = message.headers.get(SAGA_CHAIN)
    if not text:
        return []
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BusError(f"message {message.id}: the {SAGA_CHAIN} header is not JSON") from None
    return [_Chain.from_json(i) for i in items or ()]


@dataclass(slots=True)
class _Outcome:
    """How a step went: its output and what it staged, or the error."""

    handoff: JSON = None
    outbox: list[Message] = field(default_factory=list)
    version: int | None = None
    error: StepError | None = None


class ChoreographyRun:
    """One choreographed run: its bus, its handlers, its failures and its saga."""

    def __init__(
        self,
        owner: Choreographer,
        choreo: Choreography,
        scope: RunScope,
        bus: Bus,
        tracer: BusTracer,
    ) -> None:
        self.owner = owner
        self.choreo = choreo
        self.scope = scope
        self.bus = bus
        self.tracer = tracer
        self.time = owner.time
        self.seed = owner.seed
        self.records: list[StepRecord] = []
        self.failures: list[EngineError] = []
        self.dead_letters: list[DeadLetter] = []
        self.published = 0
        self.runner = StepRunner(scope, owner.time, owner.seed, owner.breakers)
        self.saga = Saga(self.runner, choreo.saga)
        self.completed: set[tuple[str, str]] = set()  # (group, message id) handled, results sent
        self.agents = choreo.agents

    # -- the run --------------------------------------------------------------------------------

    async def execute(self, value: JSON, key: str | None) -> None:
        for sub in self.choreo._all_subscriptions():
            handler = self._compensation_handler(sub) if sub.compensation else self._handler(sub)
            policy = sub.policy or self.choreo.policy
            await self.bus.subscribe(
                sub.topic, sub.group, handler, consumer=sub.agent.name, policy=policy,
                on_dead_letter=self._dead_letter_listener(sub),
            )  # fmt: skip
        start = self.choreo.start_step
        if start is None:
            assert self.choreo.entry is not None
            msg = self._message(self.choreo.entry, value, key, self.choreo.source, [])
            await self._publish(msg, self.scope.root)
        else:
            await self._start(start, value, key)
        await self.bus.run_until_idle()

    def outcome(self, unsettled: tuple[Unsettled, ...]) -> tuple[str, EngineError | None]:
        error = self.failures[0] if self.failures else None
        if self.saga.started:
            self.saga.end()
            return self.saga.status(), error
        if error is None and unsettled:
            u = unsettled[0]
            more = f" (and {len(unsettled) - 1} more)" if len(unsettled) > 1 else ""
            error = DeliveryFailed(
                u.message.id, u.message.topic, u.group,
                f"never acked: {u.state.replace('_', ' ')} after {u.attempts} delivery attempt(s) when the bus went idle{more}",
            )  # fmt: skip
        if (
            error is None
            and self.choreo.done_when is not None
            and not self.choreo.done_when(self.scope.ledger.head.state)
        ):
            error = EngineError(
                f"choreography {self.choreo.name!r}: the bus went idle before the run was done"
            )
        return ("failed" if error is not None else "completed"), error

    def compensation_results(self) -> tuple[Compensation, ...]:
        return self.saga.outcomes()

    # -- publishing -----------------------------------------------------------------------------

    def _message(
        self, topic: str, payload: JSON, key: str | None, publisher: str, chain: list[_Chain]
    ) -> Message:
        headers = {}
        if self.choreo.saga is not None and chain:
            headers[SAGA_CHAIN] = canonical_json([x.to_json() for x in chain])
        return Message(self.tracer.message_id(), topic, payload, key, publisher, headers)

    async def _publish(self, message: Message, parent: Span) -> None:
        await self.tracer.publish(
            self.bus, message, parent=parent if isinstance(parent, ActiveSpan) else None
        )
        self.published += 1

    # -- steps ----------------------------------------------------------------------------------

    async def _start(self, start: _Start, value: JSON, key: str | None) -> None:
        """The hybrid's orchestrated first step: run under the root, retried per the agent's policy."""
        agent = start.agent
        step = self.scope.next_step()

        contexts: dict[int, EventContext] = {}

        def ctx(attempt: int) -> EventContext:
            contexts[attempt] = c = self._context(agent, step, attempt, None, key)
            return c

        checks = self._staging(agent, step, start.emits, key, contexts)
        out = await self.runner.run(agent, step, value, ctx=ctx, checks=checks)
        self._record(agent, step, value, (), out)
        if out.error is not None:
            self.failures.append(out.error)
            return
        for m in self._outbox(agent, step, out, []):
            await self._publish(m, self.scope.root)

    def _context(
        self, agent: Agent, step: int, attempt: int, delivery: Delivery | None, key: str | None
    ) -> EventContext:
        scope = self.scope
        message = delivery.message if delivery is not None else None
        return EventContext(
            scope.run_id, scope.workflow, agent.name, step, attempt, self.time, self.seed,
            message, delivery, key,
        )  # fmt: skip

    def _staging(
        self, agent: Agent, step: int, emits: str | None, key: str | None,
        contexts: dict[int, EventContext],
    ) -> Checks:  # fmt: skip
        """The choreography's checks on a step's handoff: what it emits and what it published
        through ``ctx.publish`` is checked against the topics' contracts and staged."""

        async def checks(
            handoff: Any, changes: Any, delete: Any, view: Any, span: Span, attempt: int
        ) -> list[tuple[str, JSON, str | None]]:
            staged: list[tuple[str, JSON, str | None]] = []
            if emits is not None and handoff is not None:
                staged.append((emits, handoff, key))
            ctx = contexts.get(attempt)
            if ctx is not None:
                staged.extend(ctx._outbox)
            for topic, payload, _ in staged:
                contract = self.choreo.contracts.get(topic)
                if contract is not None:
                    self.runner.check(contract, payload, agent.name, topic, step, attempt, span)
            return staged

        return checks

    def _outbox(
        self, agent: Agent, step: int, out: Attempted, chain: list[_Chain]
    ) -> list[Message]:
        """The messages a completed step staged, carrying the saga's chain with this step in it
        (marked as needing no undoing when its agent has no compensation)."""
        if self.choreo.saga is not None:
            undo = agent.compensate is not None
            output = out.handoff if undo else None  # only a compensation reads it
            chain = [*chain, _Chain(agent.name, step, output, out.version, undo)]
        return [self._message(t, p, k, agent.name, chain) for t, p, k in out.extra or ()]

    def _record(
        self, agent: Agent, step: int, value: JSON, sources: tuple[str, ...], out: Attempted
    ) -> None:
        err = out.error
        if err is None:
            record = StepRecord(
                step, agent.name, "ok", out.attempts, value, out.handoff, sources, out.version, None
            )
        else:
            payload = err.payload if isinstance(err, ContractViolation) else None
            record = StepRecord(
                step, agent.name, err.outcome, out.attempts, value, payload, sources, None, str(err)
            )
        self.records.append(record)

    def _step_span(
        self, parent: Span, op: str, agent: str, step: int, attempt: int, value: Any = _INHERIT
    ) -> Span:
        """An ``invoke_agent`` (or ``compensate``) span under ``parent``, as RunScope makes them.

        RunScope starts its step spans under the run's root; a choreographed step belongs
        under the ``process`` span of its delivery, so that its commits are visibly that
        delivery's effect. The attributes are the conventions' (docs/conventions.md).
        """
        rec = self.owner.recorder
        if rec is None or not isinstance(parent, ActiveSpan):
            return NULL_SPAN
        attrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: op,
            c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
            c.GEN_AI_AGENT_NAME: agent,
            c.GEN_AI_CONVERSATION_ID: self.scope.run_id,
            c.AGENT_STEP: step,
            c.AGENT_ATTEMPT: attempt,
        }
        if value is not _INHERIT:
            attrs[c.AGENT_INPUT] = canonical_json(value)
        return rec.start_span(f"{op} {agent}", parent=parent, attributes=attrs)

    # -- deliveries -----------------------------------------------------------------------------

    async def _settle_duplicate(self, sub: Subscription, delivery: Delivery, span: Span) -> bool:
        """For an idempotent group: ack a message it applied already (sending what a crash left
        unsent first). True when the delivery was such a duplicate."""
        if not sub.idempotent:
            return False
        bus = self.bus
        mid = delivery.message.id
        done = await bus.seen(sub.group, mid)
        if done is None:
            return False
        for m in done.outbox:
            await self._publish(m, span)
        if done.outbox:
            await bus.remember(sub.group, mid, ())
        self.completed.add((sub.group, mid))
        await self._ack(span, delivery, "duplicate")
        return True

    async def _ack(self, span: Span, delivery: Delivery, outcome: str) -> None:
        if delivery.fault != "ack_lost":
            await self.bus.ack(delivery)
        self.tracer.settle(span, delivery, outcome)

    async def _finish(
        self, sub: Subscription, delivery: Delivery, span: Span, outbox: list[Message]
    ) -> None:
        """After a step completed: remember it (idempotent), die here on a ``crash`` fault, else
        publish what it staged and ack."""
        bus = self.bus
        mid = delivery.message.id
        if sub.idempotent:
            await bus.remember(sub.group, mid, outbox)
        if delivery.fault == "crash":
            self.tracer.crashed(span, delivery, tuple(outbox))
            return
        for m in outbox:
            await self._publish(m, span)
        if sub.idempotent and outbox:
            await bus.remember(sub.group, mid, ())
        self.completed.add((sub.group, mid))
        await self._ack(span, delivery, "acked")

    def _handler(self, sub: Subscription) -> Callable[[Delivery], Any]:
        async def handle(delivery: Delivery) -> None:
            span = self.tracer.start_process(delivery, sub.agent.name)
            try:
                await self._deliver(sub, delivery, span)
            finally:
                span.end()

        return handle

    async def _deliver(self, sub: Subscription, delivery: Delivery, span: Span) -> None:
        tracer, scope = self.tracer, self.scope
        if delivery.fault == "drop":
            tracer.settle(span, delivery, "dropped", "lost before the consumer")
            return
        if await self._settle_duplicate(sub, delivery, span):
            return
        message = delivery.message
        agent = sub.agent
        step = scope.next_step()
        chain = _chain_of(message)
        sources = (message.publisher,) if message.publisher else ()
        value = message.payload
        attempt = delivery.attempt
        aspan = self._step_span(span, c.OP_INVOKE_AGENT, agent.name, step, attempt, value)
        ctx = self._context(agent, step, attempt, delivery, message.key)
        checks = self._staging(agent, step, sub.emits, message.key, {attempt: ctx})

        def crashed() -> None:
            if delivery.fault == "crash_during":
                raise AgentError(
                    agent.name, step, attempt, "the consumer crashed before the step committed"
                ) from ConsumerCrashed(
                    f"consumer {delivery.consumer!r} crashed while processing {message.id}"
                )

        out = await self.runner.attempt(
            agent, step, attempt, value, aspan, ctx, checks=checks, after_call=crashed
        )
        self._record(agent, step, value, sources, out)
        err = out.error
        if err is None:
            await self._finish(sub, delivery, span, self._outbox(agent, step, out, chain))
            return
        if delivery.fault == "crash_during":
            tracer.crashed(span, delivery)  # dead consumers neither nack nor ack
            return
        # The agent's retry policy says which failures are worth another delivery: contract
        # rejections and bad output come out the same every time, so they are dead-lettered at once.
        requeue = agent.retry.retries(err)
        disposition = await self.bus.nack(delivery, requeue=requeue, reason=str(err))
        if disposition == "dead_lettered":
            tracer.settle(span, delivery, "dead_lettered", str(err))
            self.dead_letters.append(
                DeadLetter(
                    message,
                    sub.group,
                    delivery.consumer,
                    delivery.attempt,
                    "rejected" if not requeue else "nacked",
                )
            )
            self.failures.append(err)
            await self._begin_saga(chain, agent.name, str(err), span)
        else:
            tracer.settle(span, delivery, "nacked", str(err))

    def _dead_letter_listener(self, sub: Subscription) -> Callable[[DeadLetter], Any]:
        async def on_dead_letter(dead: DeadLetter) -> None:
            self.tracer.dead_lettered(dead, sub.agent.name)
            self.dead_letters.append(dead)
            m = dead.message
            detail = (
                f"dead-lettered after {dead.attempts} attempt(s): {dead.reason.replace('_', ' ')}"
            )
            if (dead.group, m.id) in self.completed:
                return  # handled and its results sent: only the acks were lost; nothing failed
            if sub.compensation:
                self._compensation_failed(sub.agent.name, m, dead.attempts, detail)
                p = m.payload if isinstance(m.payload, dict) else {}
                rest = [_Chain.from_json(x) for x in p.get("rest") or ()]
                await self._send_compensation(
                    rest,
                    str(p.get("failed", "")),
                    str(p.get("error", "")),
                    sub.agent.name,
                    self.scope.root,
                )
                return
            self.failures.append(DeliveryFailed(m.id, m.topic, dead.group, detail))
            await self._begin_saga(_chain_of(m), sub.agent.name, detail, self.scope.root)

        return on_dead_letter

    # -- the saga -------------------------------------------------------------------------------

    async def _begin_saga(self, chain: list[_Chain], failed: str, error: str, parent: Span) -> None:
        """A message failed for good: compensate the chain of completed steps behind it, last first."""
        if self.choreo.saga is None:
            return
        todo = [x for x in chain if x.undo]
        self.saga.begin(
            ((x.agent, x.step) for x in reversed(todo)),  # in the order they are due
            needless=((x.agent, x.step) for x in reversed(chain) if not x.undo),
        )
        await self._send_compensation(todo, failed, error, failed, parent)

    async def _send_compensation(
        self, chain: list[_Chain], failed: str, error: str, publisher: str, parent: Span
    ) -> None:
        # Steps compensated already (by another failed branch) are passed over.
        while chain and self.saga.is_compensated(chain[-1].agent, chain[-1].step):
            chain = chain[:-1]
        if not chain or self.saga.stopped:
            return
        last, rest = chain[-1], chain[:-1]
        payload = {
            "failed": failed,
            "error": error,
            "step": last.to_json(),
            "rest": [x.to_json() for x in rest],
        }
        await self._publish(
            self._message(compensation_topic(last.agent), payload, None, publisher, []), parent
        )

    def _compensation_failed(
        self, agent: str, message: Message, attempts: int, detail: str
    ) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        try:
            step = _Chain.from_json(payload.get("step"))
        except BusError:
            return
        err = CompensationError(agent, step.step, attempts, detail)
        self.saga.record(Compensation(step.step, agent, "failed", attempts, None, str(err)))

    def _compensation_handler(self, sub: Subscription) -> Callable[[Delivery], Any]:
        async def handle(delivery: Delivery) -> None:
            span = self.tracer.start_process(delivery, sub.agent.name)
            try:
                await self._compensate(sub, delivery, span)
            finally:
                span.end()

        return handle

    async def _compensate(self, sub: Subscription, delivery: Delivery, span: Span) -> None:
        tracer = self.tracer
        if delivery.fault == "drop":
            tracer.settle(span, delivery, "dropped", "lost before the consumer")
            return
        if await self._settle_duplicate(sub, delivery, span):
            return
        agent = sub.agent
        message = delivery.message
        payload = message.payload if isinstance(message.payload, dict) else {}
        done = _Chain.from_json(payload.get("step"))
        rest = [_Chain.from_json(x) for x in payload.get("rest") or ()]
        failed, error = str(payload.get("failed", "")), str(payload.get("error", ""))
        attempt = delivery.attempt
        cspan = self._step_span(span, "compensate", agent.name, done.step, attempt)
        ctx = self._context(agent, done.step, attempt, delivery, None)

        def crashed() -> None:
            if delivery.fault == "crash_during":
                raise ConsumerCrashed(f"consumer {delivery.consumer!r} crashed while compensating")

        result, exc = await self.saga.attempt(
            agent, done.step, done.output, attempt, cspan, ctx, crashed
        )
        if exc is not None:
            detail = f"{type(exc).__name__}: {exc}"
            if delivery.fault == "crash_during":
                tracer.crashed(span, delivery)
                return
            disposition = await self.bus.nack(delivery, reason=detail)
            if disposition != "dead_lettered":
                tracer.settle(span, delivery, "nacked", detail)
                return
            tracer.settle(span, delivery, "dead_lettered", detail)
            self.dead_letters.append(
                DeadLetter(message, sub.group, delivery.consumer, attempt, "nacked")
            )
            self._compensation_failed(agent.name, message, attempt, detail)
            await self._send_compensation(rest, failed, error, agent.name, span)
            return
        self.saga.record(result)
        outbox: list[Message] = []
        while rest and self.saga.is_compensated(rest[-1].agent, rest[-1].step):
            rest = rest[:-1]
        if rest:
            last = rest[-1]
            nxt = {
                "failed": failed,
                "error": error,
                "step": last.to_json(),
                "rest": [x.to_json() for x in rest[:-1]],
            }
            outbox.append(self._message(compensation_topic(last.agent), nxt, None, agent.name, []))
        await self._finish(sub, delivery, span, outbox)
