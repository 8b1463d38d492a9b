"""Errors raised by the engine.

    AgentraceError                      (tracer)
    └── EngineError
        ├── WorkflowError               a workflow that cannot be built: names it and what is wrong
        ├── StepError                   a step that did not complete (agent, step, attempt)
        │   ├── AgentError              the agent raised; ``__cause__`` is its exception
        │   ├── StepTimeoutError        the agent ran past its timeout
        │   ├── BreakerOpenError        refused by the agent's open breaker: the agent was not called
        │   ├── ContractViolation       its output was rejected at a boundary (contract, errors, payload)
        │   ├── OutputError             it returned something that is not JSON, or a bad update
        │   └── StepCancelled           cancelled because another branch failed
        ├── CompensationError           a compensation that kept failing (after its retries)
        ├── WorkflowFailed              ``RunResult.raise_for_status()`` on a run that did not complete
        └── ScenarioError               an unknown scenario, or one that did not record what it promises

Every error carries the fields a user interface shows, and ``str()`` of it is the
one line the command line prints.
"""

from __future__ import annotations

from typing import Any

from tracer import AgentraceError


class EngineError(AgentraceError):
    """Base of every error the engine raises on purpose."""


class WorkflowError(EngineError):
    """A workflow definition that cannot run: ``workflow`` names it, ``detail`` says why."""

    def __init__(self, workflow: str, detail: str) -> None:
        self.workflow = workflow
        self.detail = detail
        super().__init__(f"workflow {workflow!r}: {detail}")


class StepError(EngineError):
    """A step that did not complete. ``outcome`` is its ``agentrace.step.outcome``."""

    outcome = "failed"

    def __init__(self, agent: str, step: int, attempt: int, detail: str) -> None:
        self.agent = agent
        self.step = step
        self.attempt = attempt
        self.detail = detail
        super().__init__(f"agent {agent!r} (step {step}, attempt {attempt}): {detail}")


class AgentError(StepError):
    """The agent raised; the original exception is ``__cause__``."""


class StepTimeoutError(StepError):
    outcome = "timeout"


class BreakerOpenError(StepError):
    """The agent's circuit breaker refused the call (``breaker`` names it)."""

    outcome = "breaker_open"

    def __init__(self, agent: str, step: int, attempt: int, breaker: str, state: str) -> None:
        self.breaker = breaker
        self.state = state
        super().__init__(agent, step, attempt, f"breaker {breaker!r} is {state}: call refused")


class ContractViolation(StepError):
    """Output rejected at a boundary: ``contract``, ``target`` ('' for the agent's own output),
    ``errors`` (a JSON list) and the offending ``payload``."""

    outcome = "rejected"

    def __init__(
        self, agent: str, step: int, attempt: int, contract: str, target: str,
        errors: list[dict[str, Any]], payload: Any,
    ) -> None:  # fmt: skip
        self.contract = contract
        self.target = target
        self.errors = errors
        self.payload = payload
        where = f"handoff to {target!r}" if target else "output"
        first = errors[0]["msg"] if errors else "rejected"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            agent, step, attempt, f"{where} rejected by contract {contract!r}: {first}{more}"
        )


class OutputError(StepError):
    """The agent returned a value the engine cannot hand on (not JSON, or a malformed update)."""


class StepCancelled(StepError):
    outcome = "cancelled"


class CompensationError(EngineError):
    """A compensation that failed on every attempt; the last exception is ``__cause__``."""

    def __init__(self, agent: str, step: int, attempts: int, detail: str) -> None:
        self.agent = agent
        self.step = step
        self.attempts = attempts
        self.detail = detail
        super().__init__(
            f"compensation of agent {agent!r} (step {step}) failed after {attempts} attempt(s): {detail}"
        )


class WorkflowFailed(EngineError):
    """A run that ended in ``status`` (failed, compensated, compensation_failed)."""

    def __init__(
        self, run_id: str, workflow: str, status: str, error: BaseException | None
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.error = error
        why = f": {error}" if error is not None else ""
        super().__init__(f"run {run_id} of workflow {workflow!r} ended {status}{why}")


class ScenarioError(EngineError):
    """An unknown scenario, or a scenario that failed to record."""
