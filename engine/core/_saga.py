"""Sagas: undo the completed steps of a run that failed.

A :class:`Saga` is told of each step that completed (``completed``); when the run
fails, ``compensate()`` calls the ``compensate`` of every completed step that has
one, in reverse order of completion (or all at once with ``parallel``), each with
the state as it is then and the output the step handed on. A compensation that
raises is retried per the policy's ``retry``; one that still fails stops the
rest unless ``continue_on_error``. Each attempt is a ``compensate {agent}`` span
with one ``agentrace.saga.compensate`` event; an :class:`~engine.Update` it returns
is committed as a version of kind ``compensation``. A completed step whose agent has
no ``compensate`` is recorded as skipped (an ``agentrace.saga.compensate`` event on the
run's root span, outcome ``skipped``, reason ``no_compensation``): it needed no undoing. One left undone because an earlier compensation failed is
recorded the same way with reason ``stopped``.

The outcome is the run's final status: ``compensated`` (every compensation
succeeded), ``compensation_failed`` (one did not), or ``failed`` (nothing to
compensate). The orchestrator and the choreographer both drive this class; each
compensation attempt is run by the one step runner (``engine.core._step``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._agent import Agent
from ._errors import CompensationError
from ._ledger import JSON
from ._recording import Span
from ._retry import NO_RETRY, RetryPolicy
from ._view import AgentContext

if TYPE_CHECKING:
    from ._step import StepRunner


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    """How compensations run when a workflow fails.

    Completed steps are compensated in reverse order of completion, one at a time,
    stopping at the first compensation that fails (after ``retry``); with
    ``continue_on_error`` the rest still run; with ``parallel`` all run at once.
    """

    parallel: bool = False
    continue_on_error: bool = False
    retry: RetryPolicy = NO_RETRY


@dataclass(frozen=True, slots=True)
class CompletedStep:
    """A step that completed: what a compensation needs to undo it."""

    step: int
    agent: Agent
    output: JSON
    version: int | None  # the version it committed, if any


@dataclass(frozen=True, slots=True)
class Compensation:
    """What became of one compensation."""

    step: int
    agent: str
    outcome: str  # ok | failed | skipped (not attempted: an earlier one failed)
    attempts: int
    version: int | None = None  # the compensation version it committed, if any
    error: str | None = None


class Saga:
    """The completed steps of one run and their undoing (see the module docstring).

    Driven in process (the orchestrator: :meth:`compensate` runs every compensation here)
    or by messages (the choreographer: :meth:`begin` names the steps to undo and those with
    nothing to undo, each compensation runs where its agent consumes, :meth:`attempt` runs it,
    :meth:`record` notes its result and :meth:`end` closes it); either way the skips are
    recorded the same, and :meth:`status` and :meth:`outcomes` say how it ended.
    """

    def __init__(self, runner: StepRunner, policy: SagaPolicy | None = None) -> None:
        self.runner = runner
        self.scope = runner.scope
        self.policy = policy or SagaPolicy()
        self.steps: list[CompletedStep] = []
        self.uncompensable: list[CompletedStep] = []  # completed by agents with nothing to undo
        self.expected: dict[tuple[str, int], None] = {}  # (agent, step) to undo, in order
        self.results: dict[tuple[str, int], Compensation] = {}
        self.needless: dict[tuple[str, int], None] = {}  # recorded skipped: nothing to undo
        self.started = False
        self.ended = False
        self.stopped = False  # a compensation failed for good and the policy stops there

    def completed(self, step: CompletedStep) -> None:
        """Note a completed step (one whose agent has no ``compensate`` is recorded as skipped
        when the compensation begins)."""
        if step.agent.compensate is not None:
            self.steps.append(step)
        else:
            self.uncompensable.append(step)

    # -- the bookkeeping both drivers share ------------------------------------------------------

    def begin(
        self, steps: Iterable[tuple[str, int]], needless: Iterable[tuple[str, int]] = ()
    ) -> None:
        """The run failed: ``(agent, step)`` pairs in ``steps`` are to be undone; those in
        ``needless`` completed with nothing to undo and are recorded skipped
        (``no_compensation``), once each."""
        for agent, step in needless:
            if (agent, step) not in self.needless:
                self.needless[(agent, step)] = None
                self.scope.record_skipped_compensation(agent, step, "no_compensation")
        for key in steps:
            self.started = True
            self.expected.setdefault(key, None)

    def end(self) -> None:
        """The compensation is over: each step due to be undone but never attempted (an
        earlier compensation failed and the policy stops there) is recorded skipped
        (``stopped``), once."""
        if self.ended or not self.started:
            return
        self.ended = True
        for agent, step in self.expected:
            if (agent, step) not in self.results:
                self.scope.record_skipped_compensation(agent, step, "stopped")

    def is_compensated(self, agent: str, step: int) -> bool:
        r = self.results.get((agent, step))
        return r is not None and r.outcome == "ok"

    def record(self, result: Compensation) -> None:
        """Note what one compensation did; a failure stops the rest unless ``continue_on_error``."""
        self.results[(result.agent, result.step)] = result
        if result.outcome == "failed" and not self.policy.continue_on_error:
            self.stopped = True

    def status(self) -> str:
        """``compensated`` when every compensation succeeded, else ``compensation_failed``."""
        ok = all(self.is_compensated(a, s) for a, s in self.expected)
        return "compensated" if ok else "compensation_failed"

    def outcomes(self) -> tuple[Compensation, ...]:
        """What each compensation did, in the order they ended, then those never attempted
        (``skipped``) in the order they were due."""
        done = list(self.results.values())
        done += [
            Compensation(step, agent, "skipped", 0)
            for agent, step in self.expected
            if (agent, step) not in self.results
        ]
        return tuple(done)

    async def attempt(
        self, agent: Agent, step: int, output: JSON, attempt: int, span: Span,
        ctx: AgentContext, after_call: Callable[[], None] | None = None,
    ) -> tuple[Compensation, Exception | None]:  # fmt: skip
        """One attempt at undoing ``agent``'s step ``step`` in ``span`` (ended here): what it
        did, and the exception it failed with."""
        version, exc = await self.runner.compensate(
            agent, step, output, attempt, span, ctx, after_call=after_call
        )
        if exc is None:
            return Compensation(step, agent.name, "ok", attempt, version), None
        err = CompensationError(agent.name, step, attempt, f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return Compensation(step, agent.name, "failed", attempt, None, str(err)), exc

    # -- driven in process -------------------------------------------------------------------------

    async def compensate(self) -> tuple[str, tuple[Compensation, ...]]:
        """Run the compensations; returns the run's final status and what each one did."""
        todo = list(reversed(self.steps))
        self.begin(
            ((s.agent.name, s.step) for s in todo),
            needless=((s.agent.name, s.step) for s in reversed(self.uncompensable)),
        )
        if not todo:
            return "failed", ()
        if self.policy.parallel:
            for r in await asyncio.gather(*(self._one(s) for s in todo)):
                self.record(r)
        else:
            for s in todo:
                if self.stopped:
                    break
                self.record(await self._one(s))
        self.end()
        return self.status(), self.outcomes()

    async def _one(self, done: CompletedStep) -> Compensation:
        scope, agent, runner = self.scope, done.agent, self.runner
        retry = self.policy.retry
        rng: random.Random | None = None
        attempt = 0
        while True:
            attempt += 1
            span = scope.compensate_span(agent.name, done.step, attempt)
            ctx = AgentContext(
                scope.run_id, scope.workflow, agent.name, done.step, attempt, runner.time,
                runner.seed,
            )  # fmt: skip
            result, exc = await self.attempt(agent, done.step, done.output, attempt, span, ctx)
            if exc is None or attempt >= retry.max_attempts or not isinstance(exc, retry.retry_on):
                return result
            if rng is None:
                rng = random.Random(f"{runner.seed}/{scope.run_id}/compensate/{done.step}")
            await runner.time.sleep(retry.delay(attempt, rng))
