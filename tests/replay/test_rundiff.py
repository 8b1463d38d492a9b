"""Run diffs: two runs, version by version and span by span."""

from __future__ import annotations

from typing import Any

import engine as e
from engine.scenarios import credit
from tracer.analysis import detect

from .conftest import Recorded, Samples


def test_a_run_and_its_replay_are_the_same(samples: Samples, replayer: e.Replayer) -> None:
    run = samples.first("choreo-saga")
    replay = replayer.replay(run)
    diff = e.diff_runs(samples.store, run, replay.run_id)
    assert diff.same and diff.changed_versions == () and diff.first_changed_version is None
    assert len(diff.versions) == samples.store.run(run).version_count
    assert {s.status for s in diff.steps} == {"same"}
    assert diff.summary().endswith("are the same")


def test_the_fixed_cache_changes_the_rating_from_the_stale_read_on(
    samples: Samples, replayer: e.Replayer
) -> None:
    run = next(r for r in samples.runs["credit"] if detect(samples.store, r, kinds=["stale_read"]))
    fork = replayer.fork(run, 3, workflow=credit.fixed_workflow())
    diff = e.diff_runs(samples.store, run, fork.run_id)
    first = diff.first_changed_version
    assert first is not None and (first.version, first.agent_a) == (4, "risk_assessment")
    score_on_file = samples.store.state_at(run, 1)["credit_score"]
    fresh = samples.store.state_at(run, 3)["credit_score"]
    changes = {ch.path: (ch.old, ch.new) for ch in first.changes}
    assert changes["/risk/rating"] == (credit.rating_for(score_on_file), credit.rating_for(fresh))
    assert changes["/risk/score_used"] == (score_on_file, fresh)
    changed = {s.key: s.fields for s in diff.steps_with("changed")}
    assert changed["invoke_agent risk_assessment #1"] == ("output",)
    assert set(changed["invoke_agent decision #1"]) == {"input", "output"}
    assert "invoke_agent intake #1" not in changed  # replayed, as recorded
    # Each difference is told once, where it first appears.
    text = "\n".join(diff.describe())
    assert text.count("/risk/rating") == 1 and "carried over from version 4" in text


def test_spans_only_one_run_has_are_added_or_missing(own: Recorded) -> None:
    def build(limit: int) -> e.Workflow:
        @e.agent
        def triage(state: e.StateView, value: int) -> dict[str, int]:
            return {"size": value}

        @e.agent
        def fast(state: e.StateView, value: Any) -> e.Update:
            return e.Update({"done": "fast"})

        @e.agent
        def slow(state: e.StateView, value: Any) -> e.Update:
            return e.Update({"done": "slow"})

        def pick(state: e.StateView, out: dict[str, int]) -> str:
            return "fast" if out["size"] < limit else "slow"

        return e.WorkflowBuilder("triage").route(triage, pick, [fast, slow]).build()

    a = own.orchestrate(build(10), 5)
    b = own.orchestrate(build(3), 5)
    diff = e.diff_runs(own.store, a.run_id, b.run_id)
    assert [s.key for s in diff.steps_with("missing")] == ["invoke_agent fast #1"]
    assert [s.key for s in diff.steps_with("added")] == ["invoke_agent slow #1"]
    (v,) = diff.changed_versions
    assert (v.version, v.agent_a, v.agent_b) == (2, "fast", "slow")
    assert [(ch.path, ch.old, ch.new) for ch in v.changes] == [("/done", "fast", "slow")]
    as_json = diff.to_json()
    assert as_json["same"] is False and as_json["run_a"] == a.run_id
    assert [s["status"] for s in as_json["steps"]] == ["missing", "added"]


def test_runs_of_different_lengths(own: Recorded) -> None:
    def step(i: int) -> e.Agent:
        return e.Agent(f"a{i}", lambda state, v: e.Update({f"k{i}": i}, output=v))

    def build(n: int) -> e.Workflow:
        return e.chain("steps", *(step(i) for i in range(n)))

    short, long = own.orchestrate(build(2), 0), own.orchestrate(build(3), 0)
    diff = e.diff_runs(own.store, long.run_id, short.run_id)
    assert [(v.version, v.status) for v in diff.changed_versions] == [(4, "only_a")]
    assert [s.key for s in diff.steps_with("missing")] == ["invoke_agent a2 #1"]
    assert not diff.same
