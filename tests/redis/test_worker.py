"""Workers and the coordinator in one event loop (each with its own connections, recorder and
instance name, as processes would have): run outcomes, recording, naming what a worker serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from engine import Choreography, DeliveryPolicy, Message, agent
from engine.choreography._faults import Faults
from engine.core._errors import WorkflowError
from engine.distributed._bus import RedisBus
from engine.distributed._worker import (
    DistributedChoreographer,
    ScaledTime,
    Worker,
    faults_from_specs,
    resolve_worker_target,
)
from engine.scenarios import record
from engine.scenarios.distributed import SCENARIOS, DistributedScenario
from tracer import DuckDBSink, InMemorySink, Recorder, Store
from tui.cli import cli

from .procs import run_shape

FAST = 0.001


async def run_in_loop(
    scenario: DistributedScenario, url: str, sink: InMemorySink
) -> tuple[str, str, list[Worker]]:
    """Every agent in a worker of its own, and a coordinator; all record into ``sink``."""
    workers = []
    for name in scenario.choreography().agents:
        rules = scenario.faults_for([name])
        bus = RedisBus.from_url(url, faults=Faults(rules) if rules else None)
        w = Worker(
            scenario.choreography(), bus=bus, client=redis.Redis.from_url(url),
            recorder=Recorder(sink), agents=[name], time=ScaledTime(FAST),
        )  # fmt: skip
        await w.start()
        workers.append(w)
    serving = [asyncio.ensure_future(w.serve()) for w in workers]
    rec = Recorder(sink)
    coordinator = DistributedChoreographer(rec, url=url, time=ScaledTime(FAST), timeout=30)
    try:
        result = await coordinator.run(
            scenario.choreography(), scenario.input, key=scenario.key, scenario=scenario.name
        )
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*serving)
        for w in workers:
            await w.close()
            w.client.close()
        rec.close()
    return result.run_id, result.status, workers


def store_of(sink: InMemorySink, path: Path) -> Path:
    with Store(str(path)) as store:
        store.ingest(sink.requests, source="test")
    return path


async def test_lost_event_across_workers_ends_as_in_process(redis_url: str, tmp_path: Path) -> None:
    sink = InMemorySink()
    run_id, status, _ = await run_in_loop(SCENARIOS["lost-event"], redis_url, sink)
    assert status == "failed"
    db = store_of(sink, tmp_path / "dist.duckdb")
    ref = tmp_path / "ref.duckdb"
    with Store(str(ref)) as store:
        ref_id = record("lost-event", DuckDBSink(store))["lost-event"][0]
    shape = run_shape(db, run_id)
    assert shape == run_shape(ref, ref_id)
    assert [f[0] for f in shape["findings"]] == ["lost_event"]


async def test_a_run_reports_its_steps_and_publishes(redis_url: str) -> None:
    sink = InMemorySink()
    scenario = SCENARIOS["research-pipeline"]
    url = redis_url
    workers = []
    for name in ("research", "analysis", "report"):
        w = Worker(
            scenario.choreography(), bus=RedisBus.from_url(url), client=redis.Redis.from_url(url),
            recorder=Recorder(sink), agents=[name], time=ScaledTime(FAST),
        )  # fmt: skip
        await w.start()
        workers.append(w)
    serving = [asyncio.ensure_future(w.serve()) for w in workers]
    try:
        result = await DistributedChoreographer(
            None, url=url, time=ScaledTime(FAST), timeout=30
        ).run(scenario.choreography(), scenario.input, key=scenario.key)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*serving)
        for w in workers:
            await w.close()
            w.client.close()
    assert result.ok
    assert [(s.step, s.agent, s.outcome) for s in result.steps] == [
        (1, "research", "ok"), (2, "analysis", "ok"), (3, "report", "ok"),
    ]  # fmt: skip
    assert result.published == 3
    assert len(result.state["reports"]) == 1
    assert [w.handled for w in workers] == [1, 1, 1]
    # Recorded by the workers only (the coordinator had no recorder): still one trace.
    assert len({sp.trace_id for sp in sink.spans()}) == 1


async def test_a_message_of_an_unknown_run_is_rejected_and_the_worker_goes_on(
    redis_url: str,
) -> None:
    @agent
    async def echo(state: object, value: object) -> object:
        return value

    flow = Choreography("echo", entry="in").on("in", echo)
    bus = RedisBus.from_url(redis_url, policy=DeliveryPolicy(max_attempts=3))
    client = redis.Redis.from_url(redis_url)
    w = Worker(flow, bus=bus, client=client)
    await w.start()
    stray = Message.create("m1", "in", {}).with_headers(
        {"agentrace-run": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    )
    await bus.publish(stray)
    await bus.run_until_idle()
    assert [(d.message.id, d.attempts, d.reason) for d in bus.dead_letters] == [
        ("m1", 1, "rejected")
    ]
    await w.close()
    client.close()


def test_resolve_target() -> None:
    t = resolve_worker_target("engine.scenarios.distributed:double_consume.analysis")
    assert (t.choreography.name, t.agents, t.scenario is SCENARIOS["double-consume"]) == (
        "research-pipeline", ("analysis",), True,
    )  # fmt: skip
    t = resolve_worker_target("engine.scenarios.choreography:research_pipeline")
    assert t.agents is None and t.scenario is None
    assert set(t.choreography.agents) == {"research", "analysis", "report"}
    for bad, why in [
        ("engine.scenarios.distributed", "MODULE:CHOREOGRAPHY"),
        ("no.such.module:x", "cannot import"),
        ("engine.scenarios.distributed:nothing", "has no nothing"),
        ("engine.scenarios.distributed:research_pipeline.nobody", "no agent 'nobody'"),
        ("engine.scenarios.distributed:REQUEST", "not a choreography"),
        ("json:dumps", "takes arguments, not a choreography"),
    ]:
        with pytest.raises(WorkflowError, match=why):
            resolve_worker_target(bad)


def test_faults_from_specs() -> None:
    plan = faults_from_specs(["lose_ack:topic=t,attempt=1", "delay:seconds=0.5,probability=0.5"], 3)
    assert plan is not None and plan.seed == 3
    assert [(r.kind, r.topic, r.attempt, r.seconds, r.probability) for r in plan.rules] == [
        ("ack_lost", "t", 1, 0.0, 1.0), ("delay", None, None, 0.5, 0.5),
    ]  # fmt: skip
    assert faults_from_specs([]) is None
    with pytest.raises(ValueError, match="field=value"):
        faults_from_specs(["drop:topic"])
    with pytest.raises(ValueError, match="unknown fault kind"):
        faults_from_specs(["explode"])
    with pytest.raises(ValueError, match="fault 'drop:colour=red'"):
        faults_from_specs(["drop:colour=red"])


async def test_a_worker_refuses_what_it_cannot_serve(redis_url: str) -> None:
    from engine.scenarios.choreography import checkout_saga

    bus = RedisBus.from_url(redis_url)
    client = redis.Redis.from_url(redis_url)
    scenario = SCENARIOS["research-pipeline"]
    try:
        with pytest.raises(WorkflowError, match="sagas"):
            Worker(checkout_saga(), bus=bus, client=client)
        with pytest.raises(WorkflowError, match="no agent"):
            Worker(scenario.choreography(), bus=bus, client=client, agents=["ghost"])
    finally:
        await bus.close()
        client.close()


def test_the_command_line_names_what_is_wrong() -> None:
    runner = CliRunner()
    r = runner.invoke(
        cli, ["worker", "engine.scenarios.distributed:x", "--bus", "redis://127.0.0.1:1"]
    )
    assert r.exit_code == 1 and "has no x" in r.output
    r = runner.invoke(
        cli, ["worker", "engine.scenarios.distributed:lost_event", "--bus", "http://x"]
    )
    assert r.exit_code == 1 and "redis:// URL" in r.output


async def test_a_choreographer_runs_on_the_redis_bus_in_one_process(redis_url: str) -> None:
    from engine import Choreographer
    from engine.scenarios.choreography import REQUEST, research_pipeline
    from engine.testing import recorded

    rec, sink, time = recorded(seed=7)
    choreo = Choreographer(
        rec, time=time, seed=7,
        bus=lambda t, f: RedisBus.from_url(redis_url, namespace="solo", time=t, faults=f),
    )  # fmt: skip
    result = await choreo.run(research_pipeline(), REQUEST, key=REQUEST["request"])
    assert result.ok, result.error
    assert len(result.state["reports"]) == 1
    rec.flush()
    assert sorted({sp.name.split()[0] for sp in sink.spans()}) == [
        "invoke_agent", "invoke_workflow", "process", "send",
    ]  # fmt: skip
