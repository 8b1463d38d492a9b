"""Sagas: undo the completed steps of a run that failed.

A :class:`Saga` is told of each step that completed (``completed``); when the run
fails, ``compensate()`` calls the ``compensate`` of every completed step that has
one, in reverse order of completion (or all at once with ``parallel``), each with
the state as it is then and the output the step handed on. A compensation that
raises is retried per the policy's ``retry``; one that still fails stops the
rest unless ``continue_on_error``. Each attempt is a ``compensate {agent}`` span
with one ``agentrace.saga.compensate`` event; an :class:`~engine.Update` it returns
is committed as a version of kind ``compensation``.

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
    or by messages (the choreographer: :meth:`begin` names the steps to undo, each
    compensation runs where its agent consumes, :meth:`attempt` runs it and :meth:`record`
    notes its result); either way :meth:`status` and :meth:`outcomes` say how it ended.
    """

    def __init__(self, runner: StepRunner, policy: SagaPolicy | None = None) -> None:
        self.runner = runner
        self.scope = runner.scope
        self.policy = policy or SagaPolicy()
        self.steps: list[CompletedStep] = []
        self.expected: dict[tuple[str, int], None] = {}  # (agent, step) to undo, in order
        self.results: dict[tuple[str, int], Compensation] = {}
        self.started = False
        self.stopped = False  # a compensation failed for good and the policy stops there

    def completed(self, step: CompletedStep) -> None:
        """Note a completed step (steps whose agent has no ``compensate`` are ignored)."""
        if step.agent.compensate is not None:
            self.steps.append(step)

    # -- the bookkeeping both drivers share ------------------------------------------------------

    def begin(self, steps: Iterable[tuple[str, int]]) -> None:
        """The run failed: ``(agent, step)`` pairs are to be undone."""
        self.started = True
        for key in steps:
            self.expected.setdefault(key, None)

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
        if not todo:
            return "failed", ()
        self.begin((s.agent.name, s.step) for s in todo)
        if self.policy.parallel:
            for r in await asyncio.gather(*(self._one(s) for s in todo)):
                self.record(r)
        else:
            for s in todo:
                if self.stopped:
                    break
                self.record(await self._one(s))
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
