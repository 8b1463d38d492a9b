"""`agentrace replay --graph`: the claims run replayed with the user's graph, no model called;
forked with the fixed node; the fork diffed against the original."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tracer as t
from engine import ReplayError, replay_graph
from tui.cli import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"
GRAPH = "langgraph_claims:graph"
FIXED = "fraud_check=langgraph_claims:fraud_check_fixed"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.duckdb"
    with t.Store(path) as store:
        t.import_file(store, FIXTURES / "langgraph_claims.sqlite")
        t.import_file(store, FIXTURES / "langgraph_claims_openinference.jsonl")
    return path


def _runs(db: Path) -> dict[str, str]:
    with t.Store(db) as store:
        return {
            r.attributes.get("session.id"): r.run_id
            for r in store.runs()
            if r.parent_run_id is None
        }


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("thread", ["claim-1", "claim-2"])
def test_a_replay_with_no_override_does_not_diverge(db: Path, thread: str, claims: Any) -> None:
    run = _runs(db)[thread]
    claims._attempts.clear()
    res = _cli("replay", run, "--graph", GRAPH, "--db", str(db))
    assert res.exit_code == 0, res.output
    assert "no divergence" in res.output
    new = re.search(r"new run ([0-9a-f]{32})", res.output)
    assert new is not None
    with t.Store(db) as store:
        replayed = store.run(new.group(1))
        assert replayed.parent_run_id == run
        # Every checkpoint again, equal to the recorded ones.
        assert [
            store.state_at(new.group(1), v.version) for v in store.state_versions(new.group(1))
        ] == [store.state_at(run, v.version) for v in store.state_versions(run)]
    # No node function ran (fraud_check would have counted its attempts again).
    assert claims._attempts == {}


def test_a_checkpointer_alone_replays_too(tmp_path: Path) -> None:
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, FIXTURES / "langgraph_claims.sqlite")
        result = replay_graph(store, t.run_id_for_thread("claim-1"), GRAPH)
        assert result.status == "ok" and not result.diverged, [
            d.summary() for d in result.divergences
        ]
        assert result.steps == (
            (1, "intake"),
            (2, "damage_assessor"),
            (2, "fraud_check"),
            (3, "settle"),
        )


def test_an_override_that_writes_otherwise_diverges_where_it_does(db: Path) -> None:
    run = _runs(db)["claim-1"]
    res = _cli("replay", run, "--graph", GRAPH, "--override", FIXED, "--db", str(db), "--no-record")
    assert res.exit_code == 3, res.output
    assert "DIVERGED at step 2, version 4" in res.output
    assert "/fraud_hold added 500" in res.output


def test_a_fork_with_the_fixed_node_and_its_diff(db: Path) -> None:
    run = _runs(db)["claim-1"]
    res = _cli(
        "replay", run, "--graph", GRAPH, "--from-version", "3", "--override", FIXED, "--db", str(db)
    )
    assert res.exit_code == 0, res.output
    assert (
        "forked run" in res.output
        and "at version 3" in res.output
        and "no divergence" in res.output
    )
    fork = re.search(r"new run ([0-9a-f]{32})", res.output)
    assert fork is not None
    with t.Store(db) as store:
        assert store.run(fork.group(1)).parent_run_id == run
        final = store.state_at(fork.group(1), len(store.state_versions(fork.group(1))))
        assert final["reserve"] == 4000 and final["decision"] == "pay 4000"
    res = _cli("diff", run, fork.group(1), "--db", str(db))
    assert res.exit_code == 0, res.output
    assert "first: version 4" in res.output
    assert "/reserve: 1500 → 3500" in res.output
    assert "/decision: pay 1500 → pay 4000" in res.output


def test_what_cannot_be_replayed_is_one_line(tmp_path: Path, db: Path) -> None:
    only_trace = tmp_path / "trace.duckdb"
    with t.Store(only_trace) as store:
        t.import_file(store, FIXTURES / "langgraph_claims_openinference.jsonl")
        run = store.runs()[0].run_id
    res = _cli("replay", run, "--graph", GRAPH, "--db", str(only_trace))
    assert res.exit_code == 1
    assert "has no LangGraph checkpoints to replay against" in res.stderr
    run = _runs(db)["claim-1"]
    for args, message in (
        (["--graph", "langgraph_claims:THREADS"], "not a compiled LangGraph graph"),
        (["--graph", "no_such_module_zz:graph"], "cannot import 'no_such_module_zz'"),
        (["--graph", GRAPH, "--override", "nobody=langgraph_claims:settle"], "has no node nobody"),
        (["--graph", GRAPH, "--from-version", "9"], "has no checkpoint version 9"),
    ):
        res = _cli("replay", run, *args, "--db", str(db))
        assert res.exit_code == 1, (args, res.output)
        lines = [x for x in res.stderr.splitlines() if x]
        assert len(lines) == 1 and message in lines[0], (args, res.stderr)


def test_a_graph_that_runs_a_node_the_recording_lacks(db: Path, claims: Any) -> None:
    # The user's graph changed: settle is now reached through an extra node.
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(claims.ClaimState)
    for name in ("intake", "fraud_check", "damage_assessor", "settle"):
        g.add_node(name, getattr(claims, name))
    g.add_node("audit", lambda s: {"notes": ["audited"]})
    g.add_edge(START, "intake")
    g.add_edge("intake", "fraud_check")
    g.add_edge("intake", "damage_assessor")
    g.add_edge(["fraud_check", "damage_assessor"], "audit")
    g.add_edge("audit", "settle")
    g.add_edge("settle", END)
    claims.audited = g.compile()
    with t.Store(db) as store:
        result = replay_graph(store, _runs(db)["claim-1"], "langgraph_claims:audited", record=False)
    assert result.diverged and result.status == "error"
    first = result.first_divergence
    assert first is not None and first.kind == "step" and first.agent == "audit" and first.step == 3
    with pytest.raises(ReplayError):
        result.raise_on_divergence()


def test_the_pytest_fixture_replays_a_checkpointer_run(agentrace: Any) -> None:
    (first, second) = agentrace.load(FIXTURES / "langgraph_claims.sqlite")
    assert {first, second} == {t.run_id_for_thread("claim-1"), t.run_id_for_thread("claim-2")}
    assert not agentrace.replay_graph(first, GRAPH).raise_on_divergence().diverged
    fork = agentrace.replay_graph(
        first, GRAPH, from_version=3, overrides={"fraud_check": FIXED.split("=")[1]}
    )
    assert fork.state["reserve"] == 4000
    assert agentrace.state(fork.run_id)["decision"] == "pay 4000"
