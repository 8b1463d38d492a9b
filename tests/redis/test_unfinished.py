"""unfinished_consumer on Redis: a worker's consumer commits, then dies before publishing and acking."""

from __future__ import annotations

from pathlib import Path

from engine.choreography._faults import FaultRule
from engine.distributed._worker import DistributedScenario
from engine.scenarios.choreography import REQUEST
from engine.scenarios.choreography import research_pipeline as pipeline
from engine.scenarios.distributed import build_double_consume_fixed
from tracer import InMemorySink, Store
from tracer.analysis import detect

from .test_worker import run_in_loop, store_of

CRASH = FaultRule.crash(topic="research.done", group="analysis", attempt=1)


async def test_a_worker_that_dies_after_its_commit_is_named(redis_url: str, tmp_path: Path) -> None:
    scenario = DistributedScenario(
        "crash-after-commit", pipeline, REQUEST, REQUEST["request"], {"analysis": (CRASH,)}
    )  # no ack timeout: the message stays with the dead consumer
    sink = InMemorySink()
    run_id, status, _ = await run_in_loop(scenario, redis_url, sink)
    assert status == "failed"
    with Store(str(store_of(sink, tmp_path / "crash.duckdb"))) as store:
        found = [f for f in detect(store, run_id) if f.kind == "unfinished_consumer"]
    (f,) = found
    assert f.agents == ("analysis",) and f.versions
    ev = f.evidence
    assert (ev["topic"], ev["group"], ev["fault"], ev["acked"]) == (
        "research.done", "analysis", "crash", False,
    )  # fmt: skip
    assert ev["never_published"] and ev["published"] == []
    assert "never published to" in f.message and "never acked it" in f.message


async def test_a_crash_the_idempotent_redelivery_finished_is_not_named(
    redis_url: str, tmp_path: Path
) -> None:
    scenario = DistributedScenario(
        "crash-redelivered", build_double_consume_fixed, REQUEST, REQUEST["request"],
        {"analysis": (CRASH,)},
    )  # fmt: skip
    sink = InMemorySink()
    run_id, status, _ = await run_in_loop(scenario, redis_url, sink)
    assert status == "completed"
    with Store(str(store_of(sink, tmp_path / "redelivered.duckdb"))) as store:
        assert detect(store, run_id) == []
