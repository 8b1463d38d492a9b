"""Replay of a recorded 10,000-step run, against the original run it replays.

The run: one agent that does nothing but add one to a counter in the state
(``Update({"n": n + 1})``) and a router that sends it round again, 10,000 times:
10,000 ``invoke_agent`` spans and 10,001 state versions, recorded through the
tracer's Recorder into a DuckDB file (batches of 4,096 spans, one transaction
each), as ``agentrace demo`` or a production run would.

- **original**: running that workflow, recorded into the store (flushed before
  the clock stops);
- **replay, recorded**: ``Replayer(store).replay(run_id)``: read the recording
  back from the store, run the same workflow with every agent answered from it
  (the recorded output and state changes; the agent is not called), compare each
  step, input and version (hash chain) with the recording, and record the new run
  into the same store;
- **replay, not recorded**: the same with ``record=False`` (a CI check that keeps
  no new run);
- **replay, recorded, recording read before**: the same, with the recording already
  read (``Replayer.preload``, as for a batch of runs, or a run replayed again):
  the engine's part alone, against the original's;
- **read the recording**: the first of the replay's parts alone.

The goal is a replay at least as fast as the original: ratio ≤ 1. Rounds alternate
the contenders so that a busy machine slows both alike; each figure is the best of
its rounds.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import Measure

STEPS = 10_000
ROUNDS = 3
BATCH = 4_096


def _workflow() -> Any:
    import engine as e

    async def tick(state: e.StateView, n: int) -> e.Update:
        return e.Update({"n": n + 1}, output=n + 1)

    def again(state: e.StateView, n: int) -> str | None:
        return "again" if n < STEPS else None

    return (
        e.WorkflowBuilder("ticker", max_steps=STEPS)
        .route(e.Agent("tick", tick), again, {"again": "tick"})
        .start("tick")
        .build()
    )


def _quiet(fn: Callable[[], float]) -> float:
    gc.collect()
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def _original(store: Any, wf: Any) -> tuple[float, str]:
    import engine as e
    from tracer import DuckDBSink, Recorder

    recorder = Recorder(DuckDBSink(store), batch_size=BATCH)
    box: dict[str, str] = {}

    async def go() -> float:
        t0 = time.perf_counter()
        result = await e.Orchestrator(recorder).run(wf, 0, state={"n": 0})
        recorder.flush()
        elapsed = time.perf_counter() - t0
        assert result.ok and len(result.steps) == STEPS, result.status
        box["run"] = result.run_id
        return elapsed

    return _quiet(lambda: asyncio.run(go())), box["run"]


def _replay(store: Any, wf: Any, run_id: str, *, record: bool, preload: bool = False) -> float:
    import engine as e
    from tracer import DuckDBSink

    def go() -> float:
        replayer = e.Replayer(store, record=record, sink=DuckDBSink(store))
        if preload:
            replayer.preload([run_id])
        t0 = time.perf_counter()
        result = replayer.replay(run_id, workflow=wf)
        elapsed = time.perf_counter() - t0
        assert not result.diverged and len(result.steps) == STEPS, result.report()
        return elapsed

    return _quiet(go)


def _load(store: Any, run_id: str) -> float:
    import engine as e

    def go() -> float:
        t0 = time.perf_counter()
        rec = e.Replayer(store).recording(run_id)
        elapsed = time.perf_counter() - t0
        assert len(rec.steps) == STEPS
        return elapsed

    return _quiet(go)


def run() -> list[Measure]:
    from tracer import Store

    wf = _workflow()
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "replay.duckdb") as store:
        run_id = ""
        for _ in range(ROUNDS):
            seconds, run_id = _original(store, wf)
            keep("original", seconds)
            keep("recorded", _replay(store, wf, run_id, record=True))
            keep("recorded, read", _replay(store, wf, run_id, record=True, preload=True))
            keep("unrecorded", _replay(store, wf, run_id, record=False))
            keep("load", _load(store, run_id))
    us = 1e6 / STEPS
    original = best["original"]
    return [
        Measure("replay", "original run, recorded into DuckDB (µs/step)", original * us, "µs"),
        Measure(
            "replay", "replay, recorded into DuckDB (µs/step)", best["recorded"] * us, "µs",
            f"{best['recorded'] / original:.2f}x the original",
        ),
        Measure(
            "replay", "replay, recorded, recording read before (µs/step)", best["recorded, read"] * us,
            "µs", f"{best['recorded, read'] / original:.2f}x the original",
        ),
        Measure(
            "replay", "replay, not recorded (µs/step)", best["unrecorded"] * us, "µs",
            f"{best['unrecorded'] / original:.2f}x the original",
        ),
        Measure(
            "replay", "  of which: reading the recording (µs/step)", best["load"] * us, "µs",
            f"{best['load'] / original:.2f}x the original",
        ),
        Measure("replay", "replay, recorded / original", best["recorded"] / original, "ratio", "goal ≤ 1"),
    ]  # fmt: skip
