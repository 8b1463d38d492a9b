"""Replay's public surface, pinned."""

from __future__ import annotations

import engine

REPLAY = {
    "Divergence", "Exploration", "Recording", "ReplayDivergence", "ReplayError", "ReplayGap",
    "ReplayResult", "Replayer", "RunDiff", "ScheduleFailure", "SchedulePlan", "ScheduleRun",
    "ScheduleViolation", "StepDiff", "TraceCheck", "TraceReplay", "TraceStep", "VersionDiff",
    "diff_runs", "explore_schedules",
}  # fmt: skip


def test_replay_is_exported_from_engine() -> None:
    assert set(engine.__all__) >= REPLAY
    for name in REPLAY:
        assert getattr(engine, name) is not None, name


def test_replay_errors_share_the_engine_base() -> None:
    for name in ("ReplayError", "ReplayDivergence", "ReplayGap", "ScheduleViolation"):
        cls = getattr(engine, name)
        assert issubclass(cls, engine.EngineError) and cls.__module__ == "engine"
    assert issubclass(engine.ReplayDivergence, engine.ReplayError)
