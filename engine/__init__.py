"""The bundled execution engine: agents, workflows, orchestration, choreography, contracts,
breakers, sagas, the state ledger, workers on Redis and replay, all recorded through the
tracer's recorder. It knows no DuckDB and no Textual.

Its parts are its sub-packages, each leaning only on those listed after it
(orchestration and choreography stand side by side on core; every step of
either, and of a distributed worker, is run by core's one step runner):

    scenarios/      the bundled demo scenarios (data, not runtime)
    testing/        fake time, seeded ids, the pytest plugin and its fixture
    replay/         re-execution, forks, run diffs, schedule exploration
    distributed/    Redis Streams bus, Redis ledger, workers in their own processes
    choreography/   the event bus, subscriptions, delivery faults, the choreographer
    orchestration/  workflows (a DAG of agents) and the orchestrator
    core/           agents, the ledger, caches, contracts, retries, breakers, saga, time

The public surface has three doors, by audience: ``engine.authoring`` (what you write
agents and workflows with), ``engine.running`` (what runs, distributes and replays them)
and ``engine.testing`` (helpers for tests). ``engine`` itself offers the first two::

    from engine import Orchestrator, Update, WorkflowBuilder, agent

    @agent
    async def research(state, topic):
        return Update({"notes": f"notes on {topic}"})

    @agent
    def write(state, notes):
        return {"draft": notes["notes"].upper()}

    wf = WorkflowBuilder("report").chain(research, write).build()
    result = Orchestrator(recorder).run_sync(wf, "otters")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .authoring import (
    Agent,
    AgentContext,
    AgentError,
    BreakerConfig,
    BreakerOpenError,
    CachePolicy,
    CacheView,
    Choreography,
    CompensationError,
    Contract,
    ContractResult,
    ContractViolation,
    DeliveryFailed,
    DeliveryPolicy,
    EngineError,
    EventContext,
    Message,
    OutputError,
    RetryPolicy,
    Route,
    Rule,
    SagaPolicy,
    ScenarioError,
    StateView,
    StepCancelled,
    StepError,
    StepTimeoutError,
    Subscription,
    Update,
    Workflow,
    WorkflowBuilder,
    WorkflowError,
    WorkflowFailed,
    WorkflowRegistry,
    agent,
    as_agent,
    chain,
    compensation_topic,
    dead_letter_topic,
    json_copy,
    workflow,
    workflows,
)
from .running import (
    NULL_SPAN,
    Admission,
    AppliedFault,
    BreakerListener,
    BreakerState,
    Bus,
    BusError,
    BusStats,
    BusTracer,
    Cache,
    CacheRead,
    Choreographer,
    ChoreographyResult,
    CircuitBreaker,
    Compensation,
    CompletedStep,
    ConsumerCrashed,
    DeadLetter,
    Delivery,
    Divergence,
    Exploration,
    Fault,
    FaultInjector,
    FaultRule,
    Faults,
    GraphReplayResult,
    InProcessBus,
    NullSpan,
    Orchestrator,
    Permit,
    Processed,
    RealTime,
    Recording,
    ReplayDivergence,
    Replayer,
    ReplayError,
    ReplayGap,
    ReplayResult,
    RunDiff,
    RunResult,
    RunScope,
    Saga,
    ScheduleFailure,
    SchedulePlan,
    ScheduleRun,
    ScheduleViolation,
    StateLedger,
    StepDiff,
    StepRecord,
    TimeSource,
    TraceCheck,
    TraceReplay,
    TraceStep,
    Transition,
    Unsettled,
    Version,
    VersionDiff,
    VirtualTime,
    diff_runs,
    explore_schedules,
    replay_graph,
)

if TYPE_CHECKING:  # the Redis names load redis-py: imported on first use (see engine.running)
    from .running import (
        Abandoned,
        DistributedChoreographer,
        DistributedScenario,
        RedisBus,
        RedisBusError,
        RedisLedger,
        ScaledTime,
        Worker,
        WorkerTarget,
        default_instance,
        faults_from_specs,
        resolve_worker_target,
    )


def __getattr__(name: str) -> object:
    from . import running

    if name not in running.LAZY:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(running, name)
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
    "DistributedScenario",
    "Divergence",
    "EngineError",
    "EventContext",
    "Exploration",
    "Fault",
    "FaultInjector",
    "FaultRule",
    "Faults",
    "GraphReplayResult",
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
    "WorkerTarget",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowRegistry",
    "agent",
    "as_agent",
    "chain",
    "compensation_topic",
    "dead_letter_topic",
    "default_instance",
    "diff_runs",
    "explore_schedules",
    "faults_from_specs",
    "json_copy",
    "replay_graph",
    "resolve_worker_target",
    "workflow",
    "workflows",
]
