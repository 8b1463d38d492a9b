"""Replay's errors, as users meet them."""

from __future__ import annotations

import engine


def test_replay_errors_share_the_engine_base() -> None:
    for name in ("ReplayError", "ReplayDivergence", "ReplayGap", "ScheduleViolation"):
        cls = getattr(engine, name)
        assert issubclass(cls, engine.EngineError) and cls.__module__ == "engine"
    assert issubclass(engine.ReplayDivergence, engine.ReplayError)
