"""The bundled execution engine: agents, workflows, orchestration, contracts, breakers, sagas,
and the state ledger, all recorded through the tracer's recorder.

A workflow in a few lines::

    from engine import Orchestrator, Update, WorkflowBuilder, agent

    @agent
    async def research(state, topic):
        return Update({"notes": f"notes on {topic}"})

    @agent
    def write(state, notes):
        return {"draft": notes["notes"].upper()}

    wf = WorkflowBuilder("report").chain(research, write).build()
    result = Orchestrator(recorder).run_sync(wf, "otters")

The engine knows no DuckDB and no Textual; its public surface is what
``__all__`` lists. ``engine.testing`` has the fake clock, seeded ids and virtual
time for tests; ``engine.scenarios`` the bundled scenarios.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._agent import Agent, agent, as_agent
from ._breaker import (
    Admission,
    BreakerConfig,
    BreakerListener,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from ._bus import (
    Bus,
    BusError,
    DeadLetter,
    Delivery,
    DeliveryPolicy,
    Message,
    Processed,
    Unsettled,
    dead_letter_topic,
)
from ._bus_memory import BusStats, InProcessBus
from ._bus_record import BusTracer, ConsumerCrashed
from ._cache import Cache, CachePolicy, CacheRead
from ._choreo import (
    Choreographer,
    Choreography,
    ChoreographyResult,
    DeliveryFailed,
    EventContext,
    Subscription,
    compensation_topic,
)
from ._contracts import Contract, ContractResult, Rule
from ._errors import (
    AgentError,
    BreakerOpenError,
    CompensationError,
    ContractViolation,
    EngineError,
    OutputError,
    ScenarioError,
    StepCancelled,
    StepError,
    StepTimeoutError,
    WorkflowError,
    WorkflowFailed,
)
from ._faults import AppliedFault, Fault, FaultInjector, FaultRule, Faults
from ._ledger import StateLedger, Update, Version, json_copy
from ._orchestrator import Orchestrator, RunResult, StepRecord
from ._recording import NULL_SPAN, NullSpan, RunScope
from ._replay import Replayer
from ._replay_explore import (
    Exploration,
    ScheduleFailure,
    SchedulePlan,
    ScheduleRun,
    ScheduleViolation,
    explore_schedules,
)
from ._replay_model import Divergence, ReplayDivergence, ReplayError, ReplayGap, ReplayResult
from ._replay_record import Recording
from ._replay_trace import TraceCheck, TraceReplay, TraceStep
from ._retry import RetryPolicy
from ._rundiff import RunDiff, StepDiff, VersionDiff, diff_runs
from ._saga import Compensation, CompletedStep, Saga
from ._time import RealTime, TimeSource, VirtualTime
from ._view import AgentContext, CacheView, StateView
from ._workflow import Route, SagaPolicy, Workflow, WorkflowBuilder, chain

# The Redis bus and workers load redis-py (0.2-0.4 s): imported on first use, not with engine.
_LAZY = {
    "Abandoned": "_redis_bus", "RedisBus": "_redis_bus", "RedisBusError": "_redis_bus",
    "RedisLedger": "_redis_ledger", "DistributedChoreographer": "_worker", "ScaledTime": "_worker",
    "Worker": "_worker",
}  # fmt: skip
if TYPE_CHECKING:  # type checkers see them as if imported above
    from ._redis_bus import Abandoned, RedisBus, RedisBusError
    from ._redis_ledger import RedisLedger
    from ._worker import DistributedChoreographer, ScaledTime, Worker


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"engine.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "NULL_SPAN",
    "Abandoned",
    "Admission",
    "Agent",
    "AgentContext",
    "AgentError",
    "AppliedFault",
    "BreakerConfig",
    "BreakerListener",
    "BreakerOpenError",
    "BreakerState",
    "Bus",
    "BusError",
    "BusStats",
    "BusTracer",
    "Cache",
    "CachePolicy",
    "CacheRead",
    "CacheView",
    "Choreographer",
    "Choreography",
    "ChoreographyResult",
    "CircuitBreaker",
    "Compensation",
    "CompensationError",
    "CompletedStep",
    "ConsumerCrashed",
    "Contract",
    "ContractResult",
    "ContractViolation",
    "DeadLetter",
    "Delivery",
    "DeliveryFailed",
    "DeliveryPolicy",
    "DistributedChoreographer",
    "Divergence",
    "EngineError",
    "EventContext",
    "Exploration",
    "Fault",
    "FaultInjector",
    "FaultRule",
    "Faults",
    "InProcessBus",
    "Message",
    "NullSpan",
    "Orchestrator",
    "OutputError",
    "Permit",
    "Processed",
    "RealTime",
    "Recording",
    "RedisBus",
    "RedisBusError",
    "RedisLedger",
    "ReplayDivergence",
    "ReplayError",
    "ReplayGap",
    "ReplayResult",
    "Replayer",
    "RetryPolicy",
    "Route",
    "Rule",
    "RunDiff",
    "RunResult",
    "RunScope",
    "Saga",
    "SagaPolicy",
    "ScaledTime",
    "ScenarioError",
    "ScheduleFailure",
    "SchedulePlan",
    "ScheduleRun",
    "ScheduleViolation",
    "StateLedger",
    "StateView",
    "StepCancelled",
    "StepDiff",
    "StepError",
    "StepRecord",
    "StepTimeoutError",
    "Subscription",
    "TimeSource",
    "TraceCheck",
    "TraceReplay",
    "TraceStep",
    "Transition",
    "Unsettled",
    "Update",
    "Version",
    "VersionDiff",
    "VirtualTime",
    "Worker",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowError",
    "WorkflowFailed",
    "agent",
    "as_agent",
    "chain",
    "compensation_topic",
    "dead_letter_topic",
    "diff_runs",
    "explore_schedules",
    "json_copy",
]
