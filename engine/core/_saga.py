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
compensate). The orchestrator and the choreography bus both use this class.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from ._agent import Agent
from ._errors import CompensationError
from ._ledger import JSON, Update, json_copy
from ._recording import RunScope
from ._retry import NO_RETRY, RetryPolicy
from ._time import TimeSource
from ._view import AgentContext


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
    """The completed steps of one run and their undoing (see the module docstring)."""

    def __init__(
        self, scope: RunScope, policy: SagaPolicy, time: TimeSource, seed: int | None = None
    ) -> None:
        self.scope = scope
        self.policy = policy
        self.time = time
        self.seed = seed
        self.steps: list[CompletedStep] = []

    def completed(self, step: CompletedStep) -> None:
        """Note a completed step (steps whose agent has no ``compensate`` are ignored)."""
        if step.agent.compensate is not None:
            self.steps.append(step)

    async def compensate(self) -> tuple[str, tuple[Compensation, ...]]:
        """Run the compensations; returns the run's final status and what each one did."""
        todo = list(reversed(self.steps))
        if not todo:
            return "failed", ()
        if self.policy.parallel:
            results = list(await asyncio.gather(*(self._one(s) for s in todo)))
        else:
            results = []
            stopped = False
            for s in todo:
                if stopped:
                    results.append(Compensation(s.step, s.agent.name, "skipped", 0))
                    continue
                r = await self._one(s)
                results.append(r)
                if r.outcome == "failed" and not self.policy.continue_on_error:
                    stopped = True
        status = "compensated" if all(r.outcome == "ok" for r in results) else "compensation_failed"
        return status, tuple(results)

    async def _one(self, done: CompletedStep) -> Compensation:
        scope, agent = self.scope, done.agent
        retry = self.policy.retry
        rng: random.Random | None = None
        attempt = 0
        while True:
            attempt += 1
            span = scope.compensate_span(agent.name, done.step, attempt)
            view = scope.view(span, agent.name)
            ctx = AgentContext(
                scope.run_id, scope.workflow, agent.name, done.step, attempt, self.time, self.seed
            )
            try:
                result = await agent.run_compensate(view, done.output, ctx)
                version = None
                if isinstance(result, Update) and not result.empty:
                    changes = {k: json_copy(v, k) for k, v in result.changes.items()}
                    v = scope.commit(
                        span, changes, result.delete, base_version=view.version, agent=agent.name,
                        kind="compensation", copy=False,
                    )  # fmt: skip
                    version = v.version
            except asyncio.CancelledError as exc:
                scope.record_compensation(span, agent.name, "failed", attempt, exc)
                span.set_status("error", "cancelled")
                span.end()
                raise
            except Exception as exc:
                scope.record_reads(span, view, agent.name)
                scope.record_compensation(span, agent.name, "failed", attempt, exc)
                err = CompensationError(
                    agent.name, done.step, attempt, f"{type(exc).__name__}: {exc}"
                )
                err.__cause__ = exc
                span.record_exception(exc, escaped=False)
                span.set_status("error", str(err))
                span.end()
                if attempt < retry.max_attempts and isinstance(exc, retry.retry_on):
                    if rng is None:
                        rng = random.Random(f"{self.seed}/{scope.run_id}/compensate/{done.step}")
                    await self.time.sleep(retry.delay(attempt, rng))
                    continue
                return Compensation(done.step, agent.name, "failed", attempt, None, str(err))
            scope.record_reads(span, view, agent.name)
            scope.record_compensation(span, agent.name, "ok", attempt)
            span.end()
            return Compensation(done.step, agent.name, "ok", attempt, version)
