"""analyze and detect: the public surface, stable ids, storing, kinds, severities, foreign traces."""

from pathlib import Path

import pytest

import tracer as t
import tracer.analysis as analysis
from tracer.analysis import DETECTORS, Severity, analyze, detect
from tracer.testing import RunBuilder

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


def buggy_run(store: t.Store, seed: int = 1) -> str:
    """A stale read and a rejected handoff."""
    with RunBuilder(store, initial={"score": 600}, seed=seed) as run:
        with run.step("scorer") as s:
            s.commit({"score": 710})
        with run.step("rater", from_=["scorer"], outcome="rejected") as r:
            r.read(["score"], version=1, via="cache", cache="c")
            r.contract("Rating", target="notifier", outcome="rejected", payload={}, errors=["low"])
    return run.run_id


def test_the_public_surface_is_pinned() -> None:
    assert sorted(analysis.__all__) == sorted([
        "DETECTORS", "CoordinationMetrics", "Detector", "Severity", "analyze", "coordination_graph",
        "coordination_metrics", "detect",
    ])  # fmt: skip
    assert list(DETECTORS) == [
        "stale_read", "lost_update", "duplicate_delivery", "lost_event", "unfinished_consumer",
        "contract_violation",
        "breaker_open", "saga_incomplete", "compensation_failed", "undeclared_edge", "unused_edge",
    ]  # fmt: skip
    for kind, d in DETECTORS.items():
        assert d.kind == kind and isinstance(d.severity, Severity) and d.summary and d.needs


def test_severities_are_ordered_and_parse() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert (
        Severity.parse("Error") is Severity.ERROR and Severity.parse(Severity.INFO) is Severity.INFO
    )
    assert Severity.CRITICAL.label == "critical"
    with pytest.raises(ValueError, match="one of info, warning, error, critical"):
        Severity.parse("fatal")


def test_analyze_stores_and_analysing_again_replaces(store) -> None:
    run_id = buggy_run(store)
    first = analyze(store, run_id)
    assert [f.kind for f in first] == ["stale_read", "contract_violation"]
    assert store.findings(run_id) == sorted(first, key=lambda f: f.finding_id)
    again = analyze(store, run_id)
    assert [f.finding_id for f in again] == [f.finding_id for f in first]
    assert len(store.findings(run_id)) == 2
    assert store.run(run_id).finding_count == 2


def test_ids_are_stable_across_stores_and_differ_across_runs(tmp_path) -> None:
    with t.Store(":memory:") as a, t.Store(tmp_path / "b.duckdb") as b:
        ids_a = [f.finding_id for f in detect(a, buggy_run(a))]
        ids_b = [f.finding_id for f in detect(b, buggy_run(b))]
        assert ids_a == ids_b
        other = [f.finding_id for f in detect(b, buggy_run(b, seed=2))]
        assert not set(other) & set(ids_b)


def test_detect_does_not_store(store) -> None:
    run_id = buggy_run(store)
    assert len(detect(store, run_id)) == 2
    assert store.findings(run_id) == []


def test_analysing_some_kinds_keeps_the_others(store) -> None:
    run_id = buggy_run(store)
    analyze(store, run_id)
    only = analyze(store, run_id, kinds=["stale_read"])
    assert [f.kind for f in only] == ["stale_read"]
    assert sorted(f.kind for f in store.findings(run_id)) == ["contract_violation", "stale_read"]


def test_unknown_kinds_and_runs_are_refused(store) -> None:
    run_id = buggy_run(store)
    with pytest.raises(ValueError, match="unknown finding kind"):
        detect(store, run_id, kinds=["stale_reads"])
    with pytest.raises(t.NotFoundError):
        detect(store, "0" * 32)


def test_a_read_only_store_can_be_analysed_but_not_written(tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    with t.Store(path) as s:
        run_id = buggy_run(s)
    with t.Store(path, read_only=True) as ro:
        assert len(analyze(ro, run_id, save=False)) == 2
        with pytest.raises(t.StoreError, match="read-only"):
            analyze(ro, run_id)


def test_a_clean_run_has_no_findings(store) -> None:
    decl = {
        "agents": ["a", "b"],
        "edges": [["a", "b"]],
        "publishes": [["b", "t"]],
        "subscriptions": [["t", "c"]],
    }
    with RunBuilder(store, initial={"x": 0}, pattern="hybrid", declared=decl) as run:
        with run.step("a") as s:
            s.read(["x"])
            s.commit({"x": 1})
        with run.step("b", from_=["a"]) as s:
            s.read(["x"])
            s.contract("X", target="t", payload={"x": 1})
            m = run.publish("b", "t", parent=s)
        with run.process(m, agent="c") as d:
            d.read(["x"])
            d.commit({"y": 1})
    assert detect(store, run.run_id) == []


@pytest.mark.parametrize("fixture", ["langgraph_openinference", "pydantic_ai", "openai_agents"])
def test_foreign_traces_get_no_invented_findings(store, fixture: str) -> None:
    t.import_file(store, FOREIGN / f"{fixture}.jsonl")
    for run in store.runs():
        assert analyze(store, run.run_id) == []


def test_foreign_state_history_gets_the_state_detectors_only(store) -> None:
    path = FOREIGN / "langgraph_state_history.json"
    try:
        t.import_file(store, path, fmt="langgraph")
    except (TypeError, t.DecodeError) as exc:  # an importer without the LangGraph format
        pytest.skip(f"LangGraph import not available: {exc}")
    (run,) = store.runs()
    assert run.version_count > 0
    found = analyze(store, run.run_id)
    # A linear history with one writer at a time: nothing to find, and nothing invented.
    assert found == []
