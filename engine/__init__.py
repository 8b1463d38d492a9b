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

__all__ = [
    "NULL_SPAN",
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
