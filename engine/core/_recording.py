"""One run, and how its facts become OTLP: the part of the engine that talks to the recorder.

A :class:`RunScope` opens the run's root span (``invoke_workflow {name}``), owns the
run's :class:`~engine.StateLedger` and caches, numbers its steps, and records each
fact the way ``docs/conventions.md`` says: agent and compensation spans, state
commits and reads, contract checks, breaker transitions, saga compensations.
The orchestrator drives it; a choreography bus can drive it the same way (a
``send``/``process`` span is a ``recorder.start_span(..., parent=scope.root)``).

Without a recorder (``recorder=None``) nothing is recorded and every span is
:data:`NULL_SPAN`, whose methods do nothing: the engine then pays only for the
ledger.

Thread rules: as the recorder's. A span is touched by one thread at a time; the
scope's step counter and ledger may be used from any thread.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from tracer import ActiveSpan, Clock, IdGenerator, RandomIds, Recorder, canonical_json
from tracer import conventions as c

from ._breaker import Transition
from ._cache import Cache, CachePolicy, CacheRead, make_caches
from ._contracts import ContractResult
from ._ledger import JSON, StateLedger, Version
from ._view import StateView
from ._workflows import DEFAULT_VERSION


class NullSpan:
    """A span that records nothing (the engine running without a recorder)."""

    __slots__ = ()
    span_id = ""
    trace_id = ""
    ended = True

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, time_ns: int | None = None
    ) -> None:
        pass

    def set_status(self, status: str, message: str = "") -> None:
        pass

    def record_exception(self, exc: BaseException, *, escaped: bool = False) -> None:
        pass

    def end(self, *, end_ns: int | None = None) -> None:
        pass


NULL_SPAN = NullSpan()
Span = ActiveSpan | NullSpan


class RunScope:
    """A run being recorded (or not): root span, ledger, caches, step numbers."""

    def __init__(
        self,
        recorder: Recorder | None,
        *,
        workflow: str,
        clock: Clock,
        ids: IdGenerator | None = None,
        pattern: str = "orchestration",
        initial_state: Mapping[str, JSON] | None = None,
        ref: str | None = None,
        version: str | None = None,
        declared_graph: str | None = None,
        scenario: str | None = None,
        seed: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        caches: Iterable[CachePolicy] = (),
        run_id: str | None = None,
    ) -> None:
        self.recorder = recorder
        self.recording = recorder is not None
        self.workflow = workflow
        self.clock = clock
        self._steps = itertools.count(1)
        self._texts: dict[int, tuple[JSON, str]] = {}  # id -> (value, canonical JSON) of handoffs
        if recorder is not None:
            attrs: dict[str, Any] = {
                c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_WORKFLOW,
                c.GEN_AI_WORKFLOW_NAME: workflow,
                c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
                c.RUN_PATTERN: pattern,
            }
            if ref:
                attrs[c.RUN_WORKFLOW_REF] = ref
                attrs[c.RUN_WORKFLOW_VERSION] = version or DEFAULT_VERSION
            if scenario:
                attrs[c.RUN_SCENARIO] = scenario
            if seed is not None:
                attrs[c.RUN_SEED] = seed
            if declared_graph:
                attrs[c.RUN_DECLARED_GRAPH] = declared_graph
            if attributes:
                attrs.update(attributes)
            root = recorder.start_span(
                f"{c.OP_INVOKE_WORKFLOW} {workflow}",
                attributes=attrs,
                trace_id=bytes.fromhex(run_id) if run_id else None,
            )
            self.root: Span = root
            self._parent: ActiveSpan | None = root
            self.run_id = root.trace_id
        else:
            self.root = NULL_SPAN
            self._parent = None
            self.run_id = run_id or (ids or RandomIds()).trace_id().hex()
        self.ledger = StateLedger(initial_state, clock=clock, span_id=self.root.span_id)
        if self._parent is not None:
            v1 = self.ledger.head
            self._parent.commit_state(
                version=1, snapshot=v1.doc, hash=self.ledger.hash(1), kind=v1.kind, keys=list(v1.keys),
                time_ns=v1.committed_ns,
            )  # fmt: skip
        self.caches: dict[str, Cache] = make_caches(caches, self.ledger)
        self.finished = False

    def next_step(self) -> int:
        return next(self._steps)

    def _json(self, value: JSON) -> str:
        known = self._texts.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        return canonical_json(value)

    # -- spans ---------------------------------------------------------------------------------

    def agent_span(
        self, agent: str, step: int, attempt: int, value: JSON, sources: tuple[str, ...] = ()
    ) -> Span:
        """Start the ``invoke_agent {agent}`` span of one attempt."""
        if self.recorder is None:
            return NULL_SPAN
        attrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_AGENT,
            c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
            c.GEN_AI_AGENT_NAME: agent,
            c.GEN_AI_CONVERSATION_ID: self.run_id,
            c.AGENT_STEP: step,
            c.AGENT_ATTEMPT: attempt,
            c.AGENT_INPUT: self._json(value),
        }
        if sources:
            attrs[c.AGENT_FROM] = list(sources)
        return self.recorder.start_span(
            f"{c.OP_INVOKE_AGENT} {agent}", parent=self._parent, attributes=attrs
        )

    def end_ok(self, span: Span, output: JSON) -> None:
        if span is NULL_SPAN:
            return
        text = canonical_json(output)
        # The output is the next step's input, unchanged (agents get copies): keep its text.
        self._texts[id(output)] = (output, text)
        span.set_attributes({c.AGENT_OUTPUT: text, c.STEP_OUTCOME: "ok"})
        span.end()

    def end_failed(
        self, span: Span, outcome: str, error: BaseException, *, output: Any = None
    ) -> None:
        """End a step span that did not complete: ``outcome`` as the conventions name it."""
        if span is NULL_SPAN:
            return
        attrs: dict[str, Any] = {c.STEP_OUTCOME: outcome}
        if outcome == "breaker_open":
            attrs[c.BREAKER_REJECTED] = True
        if output is not None:
            attrs[c.AGENT_OUTPUT] = canonical_json(output)
        span.set_attributes(attrs)
        cause = error.__cause__ if error.__cause__ is not None else error
        span.record_exception(cause, escaped=True)
        span.set_status("error", str(error))
        span.end()

    def compensate_span(self, agent: str, step: int, attempt: int) -> Span:
        """Start the ``compensate {agent}`` span of one compensation attempt of step ``step``."""
        if self.recorder is None:
            return NULL_SPAN
        attrs = {
            c.GEN_AI_OPERATION_NAME: c.OP_COMPENSATE,
            c.GEN_AI_PROVIDER_NAME: c.PROVIDER,
            c.GEN_AI_AGENT_NAME: agent,
            c.GEN_AI_CONVERSATION_ID: self.run_id,
            c.AGENT_STEP: step,
            c.AGENT_ATTEMPT: attempt,
        }
        return self.recorder.start_span(
            f"compensate {agent}", parent=self._parent, attributes=attrs
        )

    # -- state ---------------------------------------------------------------------------------

    def view(self, span: Span, agent: str, *, doc: Mapping[str, JSON] | None = None) -> StateView:
        """A view of the head for ``agent``'s step, its cache reads recorded on ``span``."""
        listener = None
        if span is not NULL_SPAN and self.caches:

            def listener(cache: str, r: CacheRead) -> None:
                span.record_read(  # type: ignore[union-attr]
                    version=r.version, keys=(r.key,), via="cache", head_version=r.head_version,
                    cache=cache, agent=agent,
                )  # fmt: skip

        return StateView(self.ledger, self.ledger.head, self.caches, listener, doc=doc)

    def record_reads(self, span: Span, view: StateView, agent: str) -> None:
        """The keys ``view`` served, as one ``agentrace.state.read`` event (via store)."""
        if span is NULL_SPAN or not view.reads:
            return
        span.record_read(  # type: ignore[union-attr]
            version=view.version,
            keys=list(view.reads),
            via="store",
            head_version=view.read_head,
            agent=agent,
        )

    def commit(
        self,
        span: Span,
        changes: Mapping[str, JSON],
        delete: Iterable[str] = (),
        *,
        base_version: int,
        agent: str | None,
        kind: str = "commit",
        copy: bool = True,
    ) -> Version:
        """Append a version to the ledger and record it on ``span``."""
        v = self.ledger.commit(
            changes,
            delete,
            base_version=base_version,
            kind=kind,
            agent=agent,
            span_id=span.span_id,
            copy=copy,
        )
        if span is not NULL_SPAN:
            parent = self.ledger.version(v.parent_version)
            span.commit_state(  # type: ignore[union-attr]
                version=v.version, snapshot=v.doc, hash=self.ledger.hash(v.version),
                parent_snapshot=parent.doc, parent_version=v.parent_version, base_version=v.base_version,
                kind=v.kind, agent=agent, keys=list(v.keys), time_ns=v.committed_ns,
            )  # fmt: skip
        return v

    def record_version(self, span: Span, v: Version) -> None:
        """Record a version someone else appended to the ledger (a rollback or a fork)."""
        if span is NULL_SPAN:
            return
        parent = self.ledger.version(v.parent_version) if v.parent_version else None
        span.commit_state(  # type: ignore[union-attr]
            version=v.version, snapshot=v.doc, hash=self.ledger.hash(v.version),
            parent_snapshot=parent.doc if parent else None, parent_version=v.parent_version,
            base_version=v.base_version, kind=v.kind, agent=v.agent, keys=list(v.keys), time_ns=v.committed_ns,
        )  # fmt: skip

    # -- events --------------------------------------------------------------------------------

    def record_contract(
        self, span: Span, result: ContractResult, source: str, target: str = ""
    ) -> None:
        if span is NULL_SPAN:
            return
        attrs: dict[str, Any] = {
            c.CONTRACT_NAME: result.contract,
            c.CONTRACT_OUTCOME: result.outcome,
            c.CONTRACT_SOURCE: source,
            c.CONTRACT_PAYLOAD: canonical_json(result.payload),
            c.CONTRACT_ERRORS: canonical_json(list(result.errors)),
        }
        if target:
            attrs[c.CONTRACT_TARGET] = target
        span.add_event(c.EV_CONTRACT_CHECK, attrs)

    def record_transitions(self, span: Span, transitions: Iterable[Transition]) -> None:
        if span is NULL_SPAN:
            return
        for t in transitions:
            span.add_event(
                c.EV_BREAKER_TRANSITION,
                {c.BREAKER_NAME: t.breaker, c.BREAKER_FROM: t.from_state, c.BREAKER_TO: t.to_state,
                 c.BREAKER_REASON: t.reason},
                time_ns=t.at_ns,
            )  # fmt: skip

    def record_compensation(
        self, span: Span, agent: str, outcome: str, attempt: int, error: BaseException | None = None
    ) -> None:
        if span is NULL_SPAN:
            return
        attrs: dict[str, Any] = {
            c.SAGA_AGENT: agent,
            c.SAGA_OUTCOME: outcome,
            c.SAGA_ATTEMPT: attempt,
        }
        if error is not None:
            attrs[c.SAGA_ERROR] = f"{type(error).__name__}: {error}"
        span.add_event(c.EV_SAGA_COMPENSATE, attrs)

    # -- the end -------------------------------------------------------------------------------

    def finish(self, status: str, error: BaseException | None = None) -> None:
        """Set ``agentrace.run.status`` and end the root span (once)."""
        if self.finished:
            return
        self.finished = True
        for cache in self.caches.values():
            cache.close()
        root = self.root
        if root is NULL_SPAN:
            return
        root.set_attribute(c.RUN_STATUS, status)
        if status != "completed":
            root.set_status("error", str(error) if error is not None else status)
        root.end()
