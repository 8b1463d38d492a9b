"""The engine's public surface, pinned exactly (a change to it is deliberate), and its floors."""

from __future__ import annotations

import subprocess
import sys

import engine
import engine.authoring
import engine.running
import engine.testing

AUTHORING = {
    "Agent", "AgentContext", "AgentError", "BreakerConfig", "BreakerOpenError", "CachePolicy",
    "CacheView", "Choreography", "CompensationError", "Contract", "ContractResult",
    "ContractViolation", "DeliveryFailed", "DeliveryPolicy", "EngineError", "EventContext",
    "Message", "OutputError", "RetryPolicy", "Route", "Rule", "SagaPolicy", "ScenarioError",
    "StateView", "StepCancelled", "StepError", "StepTimeoutError", "Subscription", "Update",
    "Workflow", "WorkflowBuilder", "WorkflowError", "WorkflowFailed", "WorkflowRegistry", "agent", "as_agent", "chain",
    "compensation_topic", "dead_letter_topic", "json_copy", "workflow", "workflows",
}  # fmt: skip

RUNNING = {
    "Abandoned", "Admission", "AppliedFault", "BreakerListener", "BreakerState", "Bus", "BusError",
    "BusStats", "BusTracer", "Cache", "CacheRead", "Choreographer", "ChoreographyResult",
    "CircuitBreaker", "Compensation", "CompletedStep", "ConsumerCrashed", "DeadLetter", "Delivery",
    "DistributedChoreographer", "DistributedScenario", "Divergence", "Exploration", "Fault",
    "FaultInjector", "GraphReplayResult", "FaultRule", "Faults", "InProcessBus", "NULL_SPAN", "NullSpan",
    "Orchestrator", "Permit", "Processed", "RealTime", "Recording", "RedisBus", "RedisBusError",
    "RedisLedger", "ReplayDivergence", "ReplayError", "ReplayGap", "ReplayResult", "Replayer",
    "RunDiff", "RunResult", "RunScope", "Saga", "ScaledTime", "ScheduleFailure", "SchedulePlan",
    "ScheduleRun", "ScheduleViolation", "StateLedger", "StepDiff", "StepRecord", "TimeSource",
    "TraceCheck", "TraceReplay", "TraceStep", "Transition", "Unsettled", "Version", "VersionDiff",
    "VirtualTime", "Worker", "WorkerTarget", "default_instance", "diff_runs", "replay_graph", "explore_schedules",
    "faults_from_specs", "resolve_worker_target",
}  # fmt: skip

TESTING = {
    "Agentrace", "FakeClock", "InMemorySink", "RedisServer", "RedisServerError", "START_NS",
    "SeededIds", "TICK_NS", "VirtualTime", "find_redis_server", "recorded", "virtual_time",
}  # fmt: skip


def test_each_door_exports_exactly_its_names() -> None:
    assert sorted(engine.authoring.__all__) == sorted(AUTHORING)
    assert sorted(engine.running.__all__) == sorted(RUNNING)
    assert sorted(engine.testing.__all__) == sorted(TESTING)
    assert not AUTHORING & RUNNING


def test_engine_offers_authoring_and_running() -> None:
    assert sorted(engine.__all__) == sorted(AUTHORING | RUNNING)
    for name in engine.__all__:
        door = engine.authoring if name in AUTHORING else engine.running
        assert getattr(engine, name) is getattr(door, name), name
    for name in TESTING:
        assert getattr(engine.testing, name) is not None, name


def test_the_redis_names_load_redis_only_when_used() -> None:
    code = (
        "import sys, engine, engine.running\n"
        "before = 'redis' in sys.modules\n"
        "engine.RedisBus, engine.running.Worker\n"
        "print(before, 'redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_errors_share_one_base_with_the_tracer() -> None:
    import tracer

    for name in (
        "WorkflowError",
        "StepError",
        "ContractViolation",
        "CompensationError",
        "ScenarioError",
        "ReplayError",
    ):
        assert issubclass(getattr(engine, name), engine.EngineError)
    assert issubclass(engine.EngineError, tracer.AgentraceError)


def test_testing_helpers() -> None:
    rec, sink, time = engine.testing.recorded(seed=1)
    assert rec.clock is time.clock and rec.sink is sink


def test_engine_testing_and_scenarios_do_not_load_textual() -> None:
    code = (
        "import sys, engine, engine.testing, engine.scenarios\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
