"""The ``runs`` rows of small batches of new traces, computed in Python (tracer._store._runs),
are the rows the SQL statement computes for the same batch, to the byte."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t
from tracer._otlp import fill_attrs
from tracer._store import _runs
from tracer._store._ingest import Batch

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"
T0 = 1_700_000_000_000_000_000


def _request(rng: random.Random, traces: int) -> ExportTraceServiceRequest:
    """Traces with what the runs row is made of: roots or none, ties in start times, errors
    under healthy and under failing parents, a cycle, agents, services or none, run attributes."""
    req = ExportTraceServiceRequest()
    for _ in range(traces):
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        ids = [rng.getrandbits(64).to_bytes(8, "big") for _ in range(rng.randint(1, 9))]
        shape = rng.choice(["rooted", "rootless", "cycle", "two roots"])
        for k, span_id in enumerate(ids):
            rs = req.resource_spans.add()
            if rng.random() < 0.7:
                fill_attrs(rs.resource.attributes, {"service.name": rng.choice(["a", "b", "ü"])})
            sp = rs.scope_spans.add().spans.add()
            sp.trace_id, sp.span_id = trace_id, span_id
            if shape == "cycle" and k < 2 and len(ids) > 1:
                sp.parent_span_id = ids[1 - k]
            elif (k and shape != "two roots") or k > 1:
                sp.parent_span_id = ids[rng.randrange(k)] if k else ids[0]
            elif shape == "rootless":
                sp.parent_span_id = rng.getrandbits(64).to_bytes(8, "big")
            sp.name = rng.choice(["invoke_agent planner", "tool", "invoke_workflow w", "Ärger"])
            sp.start_time_unix_nano = T0 + rng.choice([0, 0, 5, 9]) * 1000
            sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randint(1, 5000)
            sp.status.code = rng.choice([0, 1, 2, 2])  # type: ignore[assignment]
            attrs: dict[str, Any] = {}
            if rng.random() < 0.5:
                attrs["gen_ai.agent.name"] = rng.choice(["planner", "critic", "Zed", "écrivain"])
            if rng.random() < 0.5:
                attrs["gen_ai.workflow.name"] = rng.choice(["flow", "", "wf ✓"])
            if rng.random() < 0.3:
                attrs["agentrace.run.pattern"] = "orchestration"
                attrs["agentrace.run.status"] = rng.choice(["ok", "failed"])
                attrs["agentrace.run.parent"] = "ab" * 16
                attrs["agentrace.run.scenario"] = "s1"
            fill_attrs(sp.attributes, attrs)
    return req


def _runs_rows(store: t.Store) -> list[tuple[Any, ...]]:
    return store.sql("SELECT * FROM runs ORDER BY run_id").fetchall()


def _both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: list[list[Any]]) -> None:
    """Ingest ``batches`` into a store through the Python rows and into another through the
    SQL statement; the runs tables are equal."""
    calls: list[bool] = []
    real = _runs.runs_table

    def counted(*args: Any) -> Any:
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr("tracer._store._store.runs_table", counted)
    with t.Store(tmp_path / "py.duckdb") as py:
        for batch in batches:
            py.ingest(batch)
        fast = _runs_rows(py)
    assert calls and all(calls), "every batch should take the Python rows"
    monkeypatch.setattr(_runs, "MAX_SPANS", 0)
    monkeypatch.setattr("tracer._store._store.runs_table", real)
    with t.Store(tmp_path / "sql.duckdb") as sql:
        for batch in batches:
            sql.ingest(batch)
        slow = _runs_rows(sql)
    assert fast == slow
    assert len(fast) >= 1


@pytest.mark.parametrize("seed", range(6))
def test_python_rows_equal_the_sql_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    _both(tmp_path, monkeypatch, [[_request(rng, rng.randint(1, 6))] for _ in range(5)])


def test_python_rows_equal_the_sql_rows_for_framework_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = [
        [t.decode_proto((FOREIGN / f"{name}.pb").read_bytes())]
        for name in ("pydantic_ai", "openai_agents")
    ]
    _both(tmp_path, monkeypatch, batches)


def test_a_run_attribute_that_is_not_text_is_left_to_the_sql(tmp_path: Path) -> None:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "root"
    sp.start_time_unix_nano, sp.end_time_unix_nano = T0, T0 + 10
    fill_attrs(sp.attributes, {"gen_ai.workflow.name": 1.5})
    batch = Batch()
    batch.add_proto(req)
    spans = batch.tables()["spans"]
    assert _runs.runs_table(spans, None, frozenset()) is not None  # no run asked for: no rows
    assert _runs.runs_table(spans, None, frozenset({"01" * 16})) is None
    with t.Store(tmp_path / "s.duckdb") as store:
        store.ingest([req])
        # DuckDB's own text of the number, from the SQL statement.
        assert _runs_rows(store)[0][1] == "1.5"


def _linked_request(trace: int, start: int, link_to: int | None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = trace.to_bytes(16, "big"), trace.to_bytes(8, "big"), "step"
    sp.start_time_unix_nano, sp.end_time_unix_nano = T0 + start, T0 + start + 10
    if link_to is not None:
        link = sp.links.add()
        link.trace_id, link.span_id = link_to.to_bytes(16, "big"), link_to.to_bytes(8, "big")
    return req


@pytest.mark.parametrize("together", [False, True])
def test_a_trace_without_links_joins_the_flow_a_stored_trace_linked_it_to(
    tmp_path: Path, together: bool
) -> None:
    # Trace 2 links to trace 1 before trace 1 arrives; trace 3 links to trace 2. Trace 1,
    # which brings no link of its own, starts first: the flow is named after it either way.
    first = [_linked_request(2, 50, 1), _linked_request(3, 90, 2)]
    later = [_linked_request(1, 10, None), _linked_request(4, 5, None)]
    with t.Store(tmp_path / "s.duckdb") as store:
        if together:
            store.ingest(first + later)
        else:
            store.ingest(first)
            store.ingest(later[:1])
            store.ingest(later[1:])
        flows = {r.run_id[-1]: r.flow_id[-1] for r in store.runs()}
    assert flows == {"1": "1", "2": "1", "3": "1", "4": "4"}
