"""The one step runner: how an agent's step runs, whatever drives it.

The orchestrator calls steps along a workflow's edges; the choreographer and the
distributed worker call them when a message is delivered. Both hand the step to
a :class:`StepRunner`, so a step is attempted, timed out, broken, checked,
committed, recorded and compensated the same way everywhere:

1. the agent's breaker (if it has one) is asked: an open breaker refuses the
   attempt at once (``BreakerOpenError``, the agent is not called);
2. the agent runs on a view of the state, under its timeout, on the run's time;
   the keys it read are recorded on the step span whatever happens;
3. its result becomes the handoff (an :class:`~engine.Update` is split into the
   changes to commit and the output to hand on), refused if it is not JSON;
4. the agent's own contract, then the driver's checks (edge contracts, topic
   contracts, a router's choice) are applied to the handoff;
5. the changes are committed as one version whose base is the version the agent
   read; the span ends ok, or failed with the outcome the conventions name.

:meth:`StepRunner.run` adds the attempts: a failure the agent's retry policy
retries is tried again after the policy's backoff (jitter seeded by the run and
step). :meth:`StepRunner.compensate` runs one compensation attempt of a completed
step for the saga (``engine.core._saga``), committed as a ``compensation``
version. Thread rules: one runner per run, used from the run's event loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Self

from tracer import Clock

from ._agent import Agent
from ._breaker import BreakerListener, CircuitBreaker
from ._contracts import Contract
from ._errors import (
    AgentError,
    BreakerOpenError,
    ContractViolation,
    EngineError,
    OutputError,
    StepCancelled,
    StepError,
    StepTimeoutError,
    WorkflowFailed,
)
from ._ledger import JSON, StateLedger, Update, copy_out, json_copy
from ._recording import NULL_SPAN, RunScope, Span
from ._time import TimeSource
from ._view import AgentContext, StateView


class StepRecord(NamedTuple):
    """How one step ended (all its attempts). A NamedTuple: one is made per step."""

    step: int
    agent: str
    outcome: str  # ok | failed | rejected | breaker_open | timeout | cancelled
    attempts: int
    input: JSON
    output: JSON
    sources: tuple[str, ...]
    version: int | None = None  # the version it committed
    error: str | None = None


class RunOutcome:
    """What every run result answers: did it complete, its final state, raise if not."""

    __slots__ = ()
    run_id: str
    workflow: str
    status: str
    ledger: StateLedger
    error: EngineError | None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def state(self) -> dict[str, JSON]:
        """A copy of the final state."""
        return self.ledger.document()

    def raise_for_status(self) -> Self:
        """This result, or :class:`~engine.WorkflowFailed` when the run did not complete."""
        if self.status != "completed":
            raise WorkflowFailed(self.run_id, self.workflow, self.status, self.error)
        return self


class Breakers:
    """The circuit breakers of one orchestrator or choreographer, one per agent that has a
    config, made on first use and kept across runs (a breaker remembers earlier runs)."""

    def __init__(self, clock: Clock, listeners: Iterable[BreakerListener] = ()) -> None:
        self.clock = clock
        self.listeners = list(listeners)
        self.by_agent: dict[str, CircuitBreaker] = {}

    def of(self, agent: Agent) -> CircuitBreaker | None:
        """The breaker of ``agent``, or None if it has none."""
        if agent.breaker is None:
            return None
        b = self.by_agent.get(agent.name)
        if b is None:
            b = CircuitBreaker(agent.name, agent.breaker, self.clock, self.listeners)
            self.by_agent[agent.name] = b
        return b


@dataclass(slots=True)
class Attempted:
    """What one attempt did: the handoff and version it committed, what the driver's checks
    returned (successors chosen, messages staged), or the step error it ended with."""

    handoff: JSON = None
    version: int | None = None
    extra: Any = None
    error: StepError | None = None
    attempts: int = 1


# The driver's part of an attempt, after the agent's contract passed and before the commit:
# ``checks(handoff, changes, delete, view, span, attempt)`` checks contracts (with ``runner.check``),
# routes, stages messages, and returns whatever the driver wants back in ``Attempted.extra``.
Checks = Callable[
    [Any, dict[str, Any] | None, tuple[str, ...], StateView, Span, int], Awaitable[Any]
]
# Called right after the agent returned, before anything is committed: raise to fail there.
AfterCall = Callable[[], None]


class Gate(Protocol):
    """Controls the order in which concurrent steps read and commit: the runner awaits
    ``before_read`` right before a step takes its view of the state and ``before_commit``
    right before it commits (nothing else runs in between). Replay uses one to enforce the
    recorded order; schedule exploration to try other orders."""

    async def before_read(self, agent: str, step: int, attempt: int) -> None: ...

    async def before_commit(self, agent: str, step: int, attempt: int) -> None: ...


class StepRunner:
    """Runs the steps of one run (see the module docstring)."""

    def __init__(
        self,
        scope: RunScope,
        time: TimeSource,
        seed: int | None,
        breakers: Breakers | None = None,
        cancelled: Callable[[], str] = lambda: "the run was cancelled",
        gate: Gate | None = None,
    ) -> None:
        self.gate = gate
        self.scope = scope
        self.time = time
        self.seed = seed
        self.breakers = breakers
        self.cancelled = cancelled

    def check(
        self, contract: Contract, payload: Any, source: str, target: str, step: int,
        attempt: int, span: Span,
    ) -> None:  # fmt: skip
        """Check ``payload`` against ``contract``, recorded on ``span``; ContractViolation if not."""
        result = contract.check(payload)
        self.scope.record_contract(span, result, source, target)
        if not result.passed:
            raise ContractViolation(
                source, step, attempt, contract.name, target, list(result.errors), payload
            )

    async def attempt(
        self, agent: Agent, step: int, attempt: int, value: Any, span: Span,
        ctx: AgentContext | None, *, checks: Checks | None = None, after_call: AfterCall | None = None,
    ) -> Attempted:  # fmt: skip
        """One attempt of ``agent``'s step ``step`` in ``span`` (ended here). A step error is
        returned in ``Attempted.error``; cancellation propagates."""
        scope, name = self.scope, agent.name
        breaker = self.breakers.of(agent) if self.breakers is not None else None
        permit = None
        handoff: Any = None
        try:
            if breaker is not None:
                adm = breaker.acquire()
                if adm.transitions:
                    scope.record_transitions(span, adm.transitions)
                if adm.permit is None:
                    raise BreakerOpenError(name, step, attempt, breaker.name, adm.state)
                permit = adm.permit
            gate = self.gate
            if gate is not None:
                await gate.before_read(name, step, attempt)
            view = scope.view(span, name)
            try:
                # A copy: what one agent does to its input is not seen by its siblings.
                result = await call_agent(
                    agent, view, copy_out(value), ctx, self.time, name, step, attempt
                )
            finally:
                scope.record_reads(span, view, name)
            if after_call is not None:
                after_call()
            if permit is not None:
                assert breaker is not None
                done, permit = permit, None
                transitions = breaker.success(done)
                if transitions:
                    scope.record_transitions(span, transitions)
            changes: dict[str, Any] | None = None
            delete: tuple[str, ...] = ()
            try:
                if type(result) is Update:
                    changes = {k: json_copy(v, k) for k, v in result.changes.items()}
                    delete = result.delete
                    # The changes are plain JSON now: a copy of them (not a second check) is the handoff.
                    handoff = (
                        json_copy(result.output, "output")
                        if result.has_output
                        else copy_out(changes)
                    )
                else:
                    handoff = json_copy(result, "output")
            except ValueError as exc:
                raise OutputError(
                    name, step, attempt, f"returned a value that is not JSON: {exc}"
                ) from None
            if agent.contract is not None:
                self.check(agent.contract, handoff, name, "", step, attempt, span)
            extra = None
            if checks is not None:
                extra = await checks(handoff, changes, delete, view, span, attempt)
            version = None
            if changes or delete:
                if gate is not None:
                    await gate.before_commit(name, step, attempt)
                version = scope.commit(
                    span, changes or {}, delete, base_version=view.version, agent=name, copy=False
                ).version
            scope.end_ok(span, handoff)
            return Attempted(handoff, version, extra, attempts=attempt)
        except StepError as err:
            if permit is not None:
                assert breaker is not None
                if isinstance(err, (AgentError, StepTimeoutError)):
                    transitions = breaker.failure(permit)
                    if transitions:
                        scope.record_transitions(span, transitions)
                else:
                    breaker.release(permit)
            rejected = isinstance(err, ContractViolation)
            scope.end_failed(span, err.outcome, err, output=handoff if rejected else None)
            return Attempted(error=err, attempts=attempt)
        except asyncio.CancelledError:
            if permit is not None:
                assert breaker is not None
                breaker.release(permit)
            if span is not NULL_SPAN:
                why = f"cancelled: {self.cancelled()}"
                scope.end_failed(span, "cancelled", StepCancelled(name, step, attempt, why))
            raise

    async def run(
        self, agent: Agent, step: int, value: Any, *, sources: tuple[str, ...] = (),
        span: Callable[[int], Span] | None = None, ctx: Callable[[int], AgentContext | None] | None = None,
        checks: Checks | None = None,
    ) -> Attempted:  # fmt: skip
        """Step ``step`` of ``agent`` to its end: attempts per its retry policy, each in a span
        of its own (``span(attempt)``; by default an ``invoke_agent`` span under the root)."""
        scope, retry = self.scope, agent.retry
        rng: random.Random | None = None
        attempt = 0
        while True:
            attempt += 1
            s = (
                span(attempt)
                if span is not None
                else scope.agent_span(agent.name, step, attempt, value, sources)
            )
            c = ctx(attempt) if ctx is not None else self.context(agent, step, attempt)
            out = await self.attempt(agent, step, attempt, value, s, c, checks=checks)
            err = out.error
            if err is None or attempt >= retry.max_attempts or not retry.retries(err):
                return out
            if rng is None:
                rng = random.Random(f"{self.seed}/{scope.run_id}/{step}")
            await self.time.sleep(retry.delay(attempt, rng))

    def context(self, agent: Agent, step: int, attempt: int) -> AgentContext | None:
        """The context an agent that asks for one gets (None for agents that do not)."""
        if not agent.wants_ctx:
            return None
        scope = self.scope
        return AgentContext(
            scope.run_id, scope.workflow, agent.name, step, attempt, self.time, self.seed
        )

    async def compensate(
        self, agent: Agent, step: int, output: JSON, attempt: int, span: Span, ctx: AgentContext,
        *, after_call: AfterCall | None = None,
    ) -> tuple[int | None, Exception | None]:  # fmt: skip
        """One compensation attempt of completed step ``step`` in ``span`` (ended here): the
        version it committed, or the exception it failed with. Cancellation propagates."""
        scope, name = self.scope, agent.name
        view = scope.view(span, name)
        try:
            result = await agent.run_compensate(view, output, ctx)
            if after_call is not None:
                after_call()
            version = None
            if isinstance(result, Update) and not result.empty:
                changes = {k: json_copy(v, k) for k, v in result.changes.items()}
                version = scope.commit(
                    span, changes, result.delete, base_version=view.version, agent=name,
                    kind="compensation", copy=False,
                ).version  # fmt: skip
        except asyncio.CancelledError as exc:
            scope.record_compensation(span, name, "failed", attempt, exc)
            span.set_status("error", "cancelled")
            span.end()
            raise
        except Exception as exc:
            scope.record_reads(span, view, name)
            scope.record_compensation(span, name, "failed", attempt, exc)
            span.record_exception(exc, escaped=False)
            span.set_status("error", f"{type(exc).__name__}: {exc}")
            span.end()
            return None, exc
        scope.record_reads(span, view, name)
        scope.record_compensation(span, name, "ok", attempt)
        span.end()
        return version, None


async def call_agent(
    agent: Any, view: Any, value: Any, ctx: Any, time: Any, name: str, step: int, attempt: int
) -> Any:
    """One call of ``agent`` under its timeout (on the run's time), its failure as a step error."""
    try:
        if agent.timeout is None:
            return await agent.run(view, value, ctx)
        async with time.timeout(agent.timeout):
            return await agent.run(view, value, ctx)
    except TimeoutError as exc:
        if agent.timeout is None:
            raise AgentError(name, step, attempt, f"TimeoutError: {exc}") from exc
        raise StepTimeoutError(name, step, attempt, f"timed out after {agent.timeout:g}s") from exc
    except Exception as exc:
        raise AgentError(name, step, attempt, f"{type(exc).__name__}: {exc}") from exc
