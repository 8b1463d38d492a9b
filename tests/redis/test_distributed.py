"""Choreography across processes: agents as `agentrace worker` processes on a real Redis, the
run started by another process, every process recording through OTLP/HTTP into one
`agentrace serve`. The run must be one trace whose graph and findings are those of the
in-process run of the same scenario and seed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.scenarios import record
from tracer import DuckDBSink, Store

from .procs import Proc, ready, run_shape, serve, start_run, worker

AGENTS = ("research", "analysis", "report")
pytestmark = pytest.mark.slow


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The in-process runs of the scenarios, in a store of their own."""
    db = tmp_path / "in-process.duckdb"
    with Store(str(db)) as store:
        ids = record(
            ["research-pipeline", "double-consume", "double-consume-fixed"], DuckDBSink(store)
        )
    yield db, {name: run_ids[0] for name, run_ids in ids.items()}


def run_distributed(scenario: str, redis_url: str, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """Serve, one worker process per agent, the run started by one more; the store, run id and
    the instance names of the processes that recorded."""
    db = tmp_path / f"{scenario}.duckdb"
    srv, otlp = serve(db, tmp_path)
    procs: list[Proc] = []
    try:
        procs = ready(
            *(
                worker(
                    f"engine.scenarios.distributed:{scenario}.{a}",
                    redis_url,
                    otlp,
                    tmp_path,
                    wait=False,
                )
                for a in AGENTS
            )
        )
        code, run_id, status = start_run(
            f"engine.scenarios.distributed:{scenario}", redis_url, otlp, tmp_path
        )
        assert (code, status) == (0, "completed"), procs[0].stderr()
    finally:
        codes = [p.stop() for p in procs]
        assert codes == [0, 0, 0], [p.stderr() for p in procs]
        assert srv.stop() == 0, srv.stderr()
    return db, run_id, [p.ready_line.split()[1] for p in procs]


def test_research_pipeline_in_three_processes_is_one_trace_like_in_process(
    redis_url: str, tmp_path: Path, reference: tuple[Path, dict[str, str]]
) -> None:
    db, run_id, instances = run_distributed("research_pipeline", redis_url, tmp_path)
    with Store(str(db), read_only=True) as store:
        assert [r.run_id for r in store.runs()] == [run_id]  # one trace
        by_process = store.sql(
            """SELECT json_extract_string(resource, '$."service.instance.id"') AS p, list(name ORDER BY name)
               FROM spans WHERE trace_id = ? GROUP BY p""",
            [run_id],
        ).fetchall()
        versions = [(v.version, v.kind, v.agent, v.hash) for v in store.state_versions(run_id)]
    got = {p: names for p, names in by_process}
    # Each agent's delivery and step were recorded by its own worker process.
    for agent, instance in zip(AGENTS, instances, strict=True):
        assert f"invoke_agent {agent}" in got[instance]
    ref_db, ref_ids = reference
    with Store(str(ref_db), read_only=True) as ref:
        ref_versions = [
            (v.version, v.kind, v.agent, v.hash)
            for v in ref.state_versions(ref_ids["research-pipeline"])
        ]
    assert versions == ref_versions  # the same states, hash-chained the same way
    assert run_shape(db, run_id) == run_shape(ref_db, ref_ids["research-pipeline"])


@pytest.mark.parametrize("scenario", ["double-consume", "double-consume-fixed"])
def test_double_consume_across_processes_finds_what_in_process_finds(
    scenario: str, redis_url: str, tmp_path: Path, reference: tuple[Path, dict[str, str]]
) -> None:
    db, run_id, _ = run_distributed(scenario.replace("-", "_"), redis_url, tmp_path)
    ref_db, ref_ids = reference
    shape = run_shape(db, run_id)
    assert shape == run_shape(ref_db, ref_ids[scenario])
    kinds = [f[0] for f in shape["findings"]]
    assert ("duplicate_delivery" in kinds) is (scenario == "double-consume")
