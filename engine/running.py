"""What runs, records, distributes and replays what ``engine.authoring`` describes.

The running door of the engine: the orchestrator and the choreographer, buses
(in process, on Redis Streams), the state ledger, caches and breakers, fault
injection, workers in their own processes, and replay, forks, run diffs and
schedule exploration of recorded runs. Every name here is pinned by a test.

The Redis names (``RedisBus``, ``Worker`` and the rest of the distributed part)
load redis-py (0.2-0.4 s), so they are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .choreography._bus import Bus, BusError, DeadLetter, Delivery, Processed, Unsettled
from .choreography._bus_tracer import BusTracer, ConsumerCrashed
from .choreography._choreographer import Choreographer, ChoreographyResult
from .choreography._faults import AppliedFault, Fault, FaultInjector, FaultRule, Faults
from .choreography._memory_bus import BusStats, InProcessBus
from .core._breaker import (
    Admission,
    BreakerListener,
    BreakerState,
    CircuitBreaker,
    Permit,
    Transition,
)
from .core._cache import Cache, CacheRead
from .core._ledger import StateLedger, Version
from .core._recording import NULL_SPAN, NullSpan, RunScope
from .core._saga import Compensation, CompletedStep, Saga
from .core._time import RealTime, TimeSource, VirtualTime
from .orchestration._orchestrator import Orchestrator, RunResult, StepRecord
from .replay._explore import (
    Exploration,
    ScheduleFailure,
    SchedulePlan,
    ScheduleRun,
    ScheduleViolation,
    explore_schedules,
)
from .replay._langgraph import GraphReplayResult, replay_graph
from .replay._model import Divergence, ReplayDivergence, ReplayError, ReplayGap, ReplayResult
from .replay._recording import Recording
from .replay._replayer import Replayer
from .replay._rundiff import RunDiff, StepDiff, VersionDiff, diff_runs
from .replay._trace import TraceCheck, TraceReplay, TraceStep

LAZY = {
    "Abandoned": "distributed._bus", "RedisBus": "distributed._bus",
    "RedisBusError": "distributed._bus", "default_instance": "distributed._bus",
    "RedisLedger": "distributed._ledger", "DistributedChoreographer": "distributed._worker",
    "DistributedScenario": "distributed._worker", "ScaledTime": "distributed._worker",
    "Worker": "distributed._worker", "WorkerTarget": "distributed._worker",
    "faults_from_specs": "distributed._worker", "resolve_worker_target": "distributed._worker",
}  # fmt: skip
if TYPE_CHECKING:  # type checkers see them as if imported above
    from .distributed._bus import Abandoned, RedisBus, RedisBusError, default_instance
    from .distributed._ledger import RedisLedger
    from .distributed._worker import (
        DistributedChoreographer,
        DistributedScenario,
        ScaledTime,
        Worker,
        WorkerTarget,
        faults_from_specs,
        resolve_worker_target,
    )


def __getattr__(name: str) -> object:
    module = LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.running' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engine.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "NULL_SPAN",
    "Abandoned",
    "Admission",
    "AppliedFault",
    "BreakerListener",
    "BreakerState",
    "Bus",
    "BusError",
    "BusStats",
    "BusTracer",
    "Cache",
    "CacheRead",
    "Choreographer",
    "ChoreographyResult",
    "CircuitBreaker",
    "Compensation",
    "CompletedStep",
    "ConsumerCrashed",
    "DeadLetter",
    "Delivery",
    "DistributedChoreographer",
    "DistributedScenario",
    "Divergence",
    "Exploration",
    "Fault",
    "FaultInjector",
    "FaultRule",
    "Faults",
    "GraphReplayResult",
    "InProcessBus",
    "NullSpan",
    "Orchestrator",
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
    "RunDiff",
    "RunResult",
    "RunScope",
    "Saga",
    "ScaledTime",
    "ScheduleFailure",
    "SchedulePlan",
    "ScheduleRun",
    "ScheduleViolation",
    "StateLedger",
    "StepDiff",
    "StepRecord",
    "TimeSource",
    "TraceCheck",
    "TraceReplay",
    "TraceStep",
    "Transition",
    "Unsettled",
    "Version",
    "VersionDiff",
    "VirtualTime",
    "Worker",
    "WorkerTarget",
    "default_instance",
    "diff_runs",
    "explore_schedules",
    "faults_from_specs",
    "replay_graph",
    "resolve_worker_target",
]
