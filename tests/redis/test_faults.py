"""Faults a networked bus must survive, with real processes: a worker killed with kill -9 while
it holds an un-acked message, and Redis itself restarted in the middle of a run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.distributed._server import RedisServer
from engine.scenarios.distributed import REQUEST
from tracer import Store
from tracer.analysis import coordination_graph, detect

from .conftest import require_redis_server
from .procs import AGENTRACE, Proc, instance_of, ready, serve, worker

pytestmark = pytest.mark.slow
SCENARIO = (
    "engine.scenarios.distributed:resilient_pipeline"  # groups redeliver after a 1 s ack timeout
)


def holder_of(url: str, group: str, deadline_s: float = 60.0) -> str:
    """The instance whose handler holds a message of ``group`` (from its running mark in Redis).

    The workers are other processes: nothing of theirs can be awaited here, so Redis is
    polled until the mark appears or the deadline passes.
    """
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for field, mark in client.hgetall("agentrace:running").items():
                if f":{len(group)}:{group}:" in field:
                    return str(mark.split()[0])
            time.sleep(0.02)
    finally:
        client.close()
    raise AssertionError(f"no handler of {group!r} took a message within {deadline_s} s")


def begin(url: str, otlp: str, logs: Path) -> Proc:
    """Start the run (the coordinator process); read its result later with `finish`."""
    return Proc(
        [AGENTRACE, "worker", SCENARIO, "--start", "--bus", url, "--otlp", otlp], logs / "start.err"
    )


def finish(start: Proc) -> tuple[int, str, str]:
    line = start.expect("run ")
    code = start.wait()
    _, run_id, status = line.split()
    return code, run_id, status


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A server of its own that fsyncs every write to its append-only file."""
    with RedisServer(binary=require_redis_server(), durable=True) as server:
        yield server


def test_a_killed_workers_message_is_claimed_by_another_and_the_redelivery_recorded(
    redis_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "kill.duckdb"
    srv, otlp = serve(db, tmp_path)
    # Two analysis workers, each working 2.5 s on a message (time scale 1), alive marks every 0.1 s.
    slow = ("--time-scale", "1", "--heartbeat", "0.1")
    others = [
        worker(f"{SCENARIO}.{a}", redis_url, otlp, tmp_path, wait=False)
        for a in ("research", "report")
    ]
    analysts = [
        worker(f"{SCENARIO}.analysis", redis_url, otlp, tmp_path, *slow, wait=False)
        for _ in range(2)
    ]
    ready(*others, *analysts)
    try:
        start = begin(redis_url, otlp, tmp_path)
        held_by = holder_of(redis_url, "analysis")
        (victim,) = [p for p in analysts if instance_of(p) == held_by]
        (survivor,) = [p for p in analysts if p is not victim]
        victim.kill9()  # mid-step: it sleeps in the agent, before committing anything
        code, run_id, status = finish(start)
        assert (code, status) == (0, "completed"), start.stderr()
    finally:
        for p in [*others, *analysts]:
            p.stop()
        srv.stop()
    with Store(str(db), read_only=True) as store:
        deliveries = store.sql(
            """SELECT m.attempt, s.status_code,
                      json_extract_string(s.resource, '$."service.instance.id"') AS recorded_by,
                      (SELECT list(e.name) FROM span_events e
                       WHERE e.trace_id = s.trace_id AND e.span_id = s.span_id) AS events
               FROM messages m JOIN spans s ON s.trace_id = m.run_id AND s.span_id = m.span_id
               WHERE m.run_id = ? AND m.topic = 'research.done' AND m.event = 'deliver'
               ORDER BY m.attempt""",
            [run_id],
        ).fetchall()
        state = store.state_at(run_id, store.state_versions(run_id)[-1].version)
        edge = coordination_graph(store, run_id).edges["research.done", "analysis", "deliver"]
        findings = detect(store, run_id)
    # The killed worker's delivery, recorded by the worker that claimed the message after
    # the ack timeout, as a consumer that died before acking; then the redelivery, acked.
    (first, second) = deliveries
    assert first[:3] == (1, "ERROR", instance_of(survivor))
    assert "exception" in first[3] and "agentrace.message.ack" not in first[3]
    assert (second[0], second[2]) == (2, instance_of(survivor)) and second[1] != "ERROR"
    assert "agentrace.message.ack" in second[3]
    assert (edge["count"], dict(edge["outcomes"])) == (2, {"failed": 1, "ok": 1})
    assert len(state["analyses"]) == 1 and len(state["reports"]) == 1  # applied once
    assert [f.kind for f in findings] == []
    assert REQUEST["request"] in state["reports"][0]


def test_redis_restarted_mid_run_loses_nothing_acked(
    durable_redis: RedisServer, tmp_path: Path
) -> None:
    url = durable_redis.url
    db = tmp_path / "restart.duckdb"
    srv, otlp = serve(db, tmp_path)
    procs = [
        worker(f"{SCENARIO}.{a}", url, otlp, tmp_path, wait=False) for a in ("research", "report")
    ]
    procs.append(
        worker(f"{SCENARIO}.analysis", url, otlp, tmp_path, "--time-scale", "1", wait=False)
    )
    ready(*procs)
    try:
        start = begin(url, otlp, tmp_path)
        holder_of(url, "analysis")  # research is done and acked; analysis is at work
        durable_redis.restart(crash=True)  # kill -9 of redis-server, then the same port again
        code, run_id, status = finish(start)
        assert (code, status) == (0, "completed"), start.stderr()
    finally:
        for p in procs:
            p.stop()
        srv.stop()
    with Store(str(db), read_only=True) as store:
        names = sorted(s.name for s in store.spans(run_id))
        versions = store.state_versions(run_id)
        findings = detect(store, run_id)
        (verified,) = store.verify(run_id)
    assert names == sorted(
        ["invoke_workflow research-pipeline", "send research.requested", "process research.requested",
         "invoke_agent research", "send research.done", "process research.done",
         "invoke_agent analysis", "send analysis.done", "process analysis.done", "invoke_agent report"]
    )  # fmt: skip
    assert [v.agent for v in versions] == [None, "research", "analysis", "report"]
    assert findings == []
    assert verified.ok
