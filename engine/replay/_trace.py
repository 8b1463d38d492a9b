"""Replay of an imported trace: step through it, and feed its recorded outputs to your code.

A trace from another framework (LangGraph, pydantic-ai, the OpenAI Agents SDK,
anything with GenAI or OpenInference spans) cannot be re-executed: agentrace
has no workflow for it. It can still be replayed as far as its data allows.
:class:`TraceReplay` reads one run through the store and offers:

- its agent steps in order (:class:`TraceStep`: agent, input, output, span,
  the state versions around it where the importer reconstructed state), the
  state at any version and the diff of any two;
- :meth:`TraceReplay.player`: a stand-in for one recorded agent that answers
  each call with that agent's next recorded output, for plugging into a
  re-implementation of the rest of the system;
- :meth:`TraceReplay.check`: a re-implementation of one agent called with each
  recorded input of that agent (and the state before it), its outputs
  compared with the recorded ones (a frozen :class:`TraceCheck`).

Inputs and outputs are read, in this order, from ``agentrace.agent.input`` /
``agentrace.agent.output`` (agentrace's own runs), OpenInference's
``input.value`` / ``output.value``, and the GenAI ``gen_ai.input.messages`` /
``gen_ai.output.messages``; an agent span with no output of its own takes the
last output of the model calls inside it. Text that is JSON is parsed.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from tracer import FieldChange, Span, StateVersion, Store, canonical_json, field_changes
from tracer import conventions as c

from ..core._ledger import JSON, Update, copy_out, json_copy
from ._model import Divergence, ReplayDivergence, ReplayError, ReplayGap, load_ref

INPUT_KEYS = (c.AGENT_INPUT, "input.value", c.GEN_AI_INPUT_MESSAGES)
OUTPUT_KEYS = (c.AGENT_OUTPUT, "output.value", c.GEN_AI_OUTPUT_MESSAGES)


def _value(v: Any) -> JSON:
    if isinstance(v, str):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> tuple[JSON, str | None]:
    for k in keys:
        if k in attrs:
            return _value(attrs[k]), k
    return None, None


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One agent step of a trace. ``output_from`` names the attribute the output came from
    (``span/attribute`` when it came from a model call inside the step); ``version_before``
    and ``version_after`` bracket it in the reconstructed state (None where there is none)."""

    index: int
    agent: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    status: str
    input: JSON
    output: JSON
    input_from: str | None = None
    output_from: str | None = None
    version_before: int | None = None
    version_after: int | None = None


@dataclass(frozen=True, slots=True)
class StepCheck:
    """One recorded step of the agent checked: its input, the recorded and the new output."""

    step: TraceStep
    expected: JSON
    actual: JSON
    same: bool
    error: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class TraceCheck:
    """A re-implementation of ``agent`` against every recorded step of it."""

    run_id: str
    agent: str
    checks: tuple[StepCheck, ...]

    @property
    def ok(self) -> bool:
        return all(ch.same for ch in self.checks)

    @property
    def mismatches(self) -> tuple[StepCheck, ...]:
        return tuple(ch for ch in self.checks if not ch.same)

    @property
    def divergences(self) -> tuple[Divergence, ...]:
        """The mismatches as divergences (``step`` counts the trace's steps from 1)."""
        out = []
        for ch in self.mismatches:
            changes: tuple[FieldChange, ...] = ()
            if isinstance(ch.expected, (dict, list)) and isinstance(ch.actual, (dict, list)):
                changes = tuple(field_changes(ch.expected, ch.actual))
            out.append(
                Divergence(
                    "output", ch.step.index + 1, self.agent, ch.expected, ch.actual,
                    detail=ch.error or "", changes=changes, at_ns=ch.step.start_ns,
                )
            )  # fmt: skip
        return tuple(out)

    def raise_on_mismatch(self) -> TraceCheck:
        """This check, or :class:`ReplayDivergence` naming the first step that differs."""
        if not self.ok:
            raise ReplayDivergence(self.run_id, self.divergences)
        return self


class RecordedAgent:
    """A recorded agent as a callable: each call returns its next recorded output (a copy).

    ``calls`` keeps the arguments of every call; ``remaining`` counts the outputs left;
    a call after the last raises :class:`ReplayGap`. Works as an engine agent's
    ``execute`` (any arguments are accepted).
    """

    def __init__(self, agent: str, steps: tuple[TraceStep, ...]) -> None:
        self.agent = agent
        self.steps = steps
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    @property
    def remaining(self) -> int:
        return len(self.steps) - len(self.calls)

    def __call__(self, *args: Any, **kwargs: Any) -> JSON:
        n = len(self.calls)
        if n >= len(self.steps):
            raise ReplayGap(
                f"agent {self.agent!r} was called {n + 1} times; the trace has {len(self.steps)}"
            )
        self.calls.append((args, kwargs))
        return copy_out(self.steps[n].output)

    def __repr__(self) -> str:
        return f"RecordedAgent({self.agent!r}, {self.remaining} of {len(self.steps)} left)"


class TraceReplay:
    """A recorded run to step through (see the module docstring). Reads ``store`` once."""

    def __init__(self, store: Store, run: str) -> None:
        self.store = store
        self.run = store.run(store.resolve_run(run))
        self.run_id = self.run.run_id
        spans = store.spans(self.run_id)
        self.versions: tuple[StateVersion, ...] = tuple(store.state_versions(self.run_id))
        self.steps: tuple[TraceStep, ...] = tuple(self._steps(spans))

    def _steps(self, spans: list[Span]) -> list[TraceStep]:
        children: dict[str, list[Span]] = defaultdict(list)
        for sp in spans:
            if sp.parent_span_id:
                children[sp.parent_span_id].append(sp)
        agent_spans = [sp for sp in spans if sp.operation == c.OP_INVOKE_AGENT and sp.agent]
        # Versions written by a step's span (or a span under it); else by the agent, in order.
        under: dict[str, str] = {}
        for sp in agent_spans:
            stack = [sp.span_id]
            while stack:
                sid = stack.pop()
                under.setdefault(sid, sp.span_id)
                stack.extend(ch.span_id for ch in children.get(sid, ()))
        by_span = {v.span_id: v.version for v in self.versions if v.span_id in under}
        by_agent: dict[str, list[int]] = defaultdict(list)
        for v in self.versions:
            if v.agent and v.version > 1:
                by_agent[v.agent].append(v.version)
        used: dict[str, int] = defaultdict(int)
        out = []
        for i, sp in enumerate(agent_spans):
            assert sp.agent is not None
            inp, inp_from = _first(sp.attributes, INPUT_KEYS)
            outp, out_from = _first(sp.attributes, OUTPUT_KEYS)
            if inp_from is None:
                inp, inp_from = _inner(sp, children, INPUT_KEYS, last=False)
            if out_from is None:
                outp, out_from = _inner(sp, children, OUTPUT_KEYS, last=True)
            after = next(
                (by_span[s] for s, top in under.items() if top == sp.span_id and s in by_span), None
            )
            if after is None and not by_span:
                agent_versions = by_agent.get(sp.agent, [])
                k = used[sp.agent]
                if k < len(agent_versions):
                    after = agent_versions[k]
                    used[sp.agent] += 1
            before = self._version_at(sp.start_ns) if after is None else after - 1
            out.append(
                TraceStep(
                    i, sp.agent, sp.span_id, sp.name, sp.start_ns, sp.end_ns, sp.status_code,
                    inp, outp, inp_from, out_from, before, after,
                )
            )  # fmt: skip
        return out

    def _version_at(self, when_ns: int) -> int | None:
        last = None
        for v in self.versions:
            if v.committed_ns <= when_ns:
                last = v.version
        return last

    # -- stepping ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[TraceStep]:
        return iter(self.steps)

    def __getitem__(self, index: int) -> TraceStep:
        return self.steps[index]

    @property
    def agents(self) -> tuple[str, ...]:
        """The agents that took steps, in order of their first step."""
        return tuple(dict.fromkeys(s.agent for s in self.steps))

    def steps_of(self, agent: str) -> tuple[TraceStep, ...]:
        return tuple(s for s in self.steps if s.agent == agent)

    def outputs(self, agent: str) -> list[JSON]:
        """The recorded outputs of ``agent``, in order (copies)."""
        return [copy_out(s.output) for s in self.steps_of(agent)]

    def state_at(self, version: int) -> JSON:
        return self.store.state_at(self.run_id, version)

    def state_before(self, step: TraceStep | int) -> JSON:
        """The state the step started from ({} where the trace has no state)."""
        s = self.steps[step] if isinstance(step, int) else step
        return self.state_at(s.version_before) if s.version_before else {}

    def state_after(self, step: TraceStep | int) -> JSON:
        s = self.steps[step] if isinstance(step, int) else step
        v = s.version_after or s.version_before
        return self.state_at(v) if v else {}

    def diff(self, a: int, b: int) -> list[FieldChange]:
        """Leaf changes from version ``a`` to version ``b``."""
        return self.store.diff(self.run_id, a, b)

    # -- feeding ------------------------------------------------------------------------------

    def player(self, agent: str) -> RecordedAgent:
        """A stand-in for ``agent`` answering with its recorded outputs, one per call."""
        steps = self.steps_of(agent)
        if not steps:
            raise ReplayGap(
                f"run {self.run_id} has no step of agent {agent!r} (agents: {', '.join(self.agents)})"
            )
        return RecordedAgent(agent, steps)

    def check(
        self,
        agent: str,
        fn: Callable[..., Any] | str,
        *,
        compare: Callable[[JSON, JSON], bool] | None = None,
    ) -> TraceCheck:
        """Call ``fn(state, input)`` (or ``fn(input)``; an import path names it) for each
        recorded step of ``agent`` and
        compare what it returns with the recorded output: equal as JSON, or as ``compare``
        says (for outputs that may differ in wording). An :class:`~engine.Update` counts as
        its handoff. Sync only; see :meth:`acheck` for coroutine functions."""
        checks = []
        for step, call in self._calls(agent, fn):
            if inspect.isawaitable(call[1]):
                close = getattr(call[1], "close", None)
                if close is not None:
                    close()  # never awaited: say so plainly instead of warning later
                raise TypeError(f"{fn!r} is a coroutine function: use `await trace.acheck(...)`")
            checks.append(self._judge(step, call, compare))
        return TraceCheck(self.run_id, agent, tuple(checks))

    async def acheck(
        self,
        agent: str,
        fn: Callable[..., Any] | str,
        *,
        compare: Callable[[JSON, JSON], bool] | None = None,
    ) -> TraceCheck:
        """:meth:`check` for ``fn`` that may be a coroutine function."""
        checks = []
        for step, call in self._calls(agent, fn):
            if call[0] == "value" and inspect.isawaitable(call[1]):
                try:
                    call = ("value", await call[1])
                except Exception as exc:
                    call = ("error", f"{type(exc).__name__}: {exc}")
            checks.append(self._judge(step, call, compare))
        return TraceCheck(self.run_id, agent, tuple(checks))

    def _calls(
        self, agent: str, fn: Callable[..., Any] | str
    ) -> Iterator[tuple[TraceStep, tuple[str, Any]]]:
        if isinstance(fn, str):
            fn = load_ref(fn, f"re-implementation of {agent!r}")
        if not callable(fn):
            raise ReplayError(f"re-implementation of {agent!r}: {fn!r} is not callable")
        steps = self.steps_of(agent)
        if not steps:
            raise ReplayGap(
                f"run {self.run_id} has no step of agent {agent!r} (agents: {', '.join(self.agents)})"
            )
        try:
            positional = [
                p for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]  # fmt: skip
            takes_state = len(positional) >= 2
        except (TypeError, ValueError):
            takes_state = True
        for s in steps:
            args = (
                (self.state_before(s), copy_out(s.input)) if takes_state else (copy_out(s.input),)
            )
            try:
                yield s, ("value", fn(*args))
            except Exception as exc:
                yield s, ("error", f"{type(exc).__name__}: {exc}")

    def _judge(
        self, step: TraceStep, call: tuple[str, Any], compare: Callable[[JSON, JSON], bool] | None
    ) -> StepCheck:
        kind, value = call
        if kind == "error":
            return StepCheck(step, step.output, None, False, value)
        if type(value) is Update:
            value = value.output if value.has_output else dict(value.changes)
        try:
            actual = json_copy(value)
        except ValueError as exc:
            return StepCheck(step, step.output, repr(value), False, f"not JSON: {exc}")
        if compare is not None:
            same = bool(compare(copy_out(step.output), copy_out(actual)))
        else:
            same = canonical_json(actual) == canonical_json(step.output)
        return StepCheck(step, step.output, actual, same)


def _inner(
    span: Span, children: dict[str, list[Span]], keys: tuple[str, ...], last: bool
) -> tuple[JSON, str | None]:
    """The input of the first (or the output of the last) model call inside ``span``."""
    best: tuple[int, JSON, str] | None = None
    stack = list(children.get(span.span_id, ()))
    while stack:
        sp = stack.pop()
        if sp.operation == c.OP_INVOKE_AGENT:
            continue  # a nested agent's input and output are its own
        stack.extend(children.get(sp.span_id, ()))
        if sp.operation not in _MODEL_CALLS:
            continue
        v, k = _first(sp.attributes, keys)
        when = sp.end_ns if last else -sp.start_ns
        if k is not None and (best is None or when >= best[0]):
            best = (when, v, f"{sp.name}/{k}")
    if best is None:
        return None, None
    return best[1], best[2]


_MODEL_CALLS = frozenset({c.OP_CHAT, "text_completion", "generate_content"})
