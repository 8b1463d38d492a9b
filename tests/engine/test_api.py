"""The engine's public surface, and the floors it stands on."""

from __future__ import annotations

import subprocess
import sys

import engine
import engine.testing

ORCHESTRATION = {
    "Agent", "AgentContext", "AgentError", "Admission", "BreakerConfig", "BreakerListener", "BreakerOpenError",
    "BreakerState", "Cache", "CachePolicy", "CacheRead", "CacheView", "CircuitBreaker", "Compensation",
    "CompensationError", "CompletedStep", "Contract", "ContractResult", "ContractViolation", "EngineError",
    "NULL_SPAN", "NullSpan", "Orchestrator", "OutputError", "Permit", "RealTime", "RetryPolicy", "Route", "Rule",
    "RunResult", "RunScope", "Saga", "SagaPolicy", "ScenarioError", "StateLedger", "StateView", "StepCancelled",
    "StepError", "StepRecord", "StepTimeoutError", "TimeSource", "Transition", "Update", "Version", "VirtualTime",
    "Workflow", "WorkflowBuilder", "WorkflowError", "WorkflowFailed", "agent", "as_agent", "chain", "json_copy",
}  # fmt: skip


def test_the_orchestration_api_is_exported() -> None:
    assert set(engine.__all__) >= ORCHESTRATION
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name


def test_errors_share_one_base_with_the_tracer() -> None:
    import tracer

    for name in (
        "WorkflowError",
        "StepError",
        "ContractViolation",
        "CompensationError",
        "ScenarioError",
    ):
        assert issubclass(getattr(engine, name), engine.EngineError)
    assert issubclass(engine.EngineError, tracer.AgentraceError)


def test_testing_helpers() -> None:
    assert set(engine.testing.__all__) >= {
        "FakeClock",
        "SeededIds",
        "VirtualTime",
        "recorded",
        "virtual_time",
    }
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
