"""Replay is deterministic under concurrency: parallel branches read and commit in the order
recorded, so an unchanged replay of a fan-out never diverges and ends in the same state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import engine as e
import tracer as t
from engine.testing import recorded

KEYS = ("x", "y", "z")


def branch(name: str, delay: float, reads: tuple[str, ...], writes: tuple[str, ...]) -> e.Agent:
    """An agent that reads ``reads``, waits ``delay`` (virtual) seconds, and writes each of
    ``writes`` from what it read: the later writer of a key wins, as in any lost update."""

    async def run(state: e.StateView, value: Any, ctx: e.AgentContext) -> e.Update:
        seen = [state.get(k, 0) for k in reads]
        if delay:
            await ctx.sleep(delay)
        total = sum(v for v in seen if isinstance(v, int))
        return e.Update({k: total + len(name) * 10 + i for i, k in enumerate(writes)}, output=name)

    return e.Agent(name, run)


def fan_out(spec: list[tuple[float, tuple[str, ...], tuple[str, ...]]]) -> e.Workflow:
    start = e.Agent("start", lambda state, value: e.Update({"x": 1, "y": 2, "z": 3}))
    branches = [branch(f"b{i}", *s) for i, s in enumerate(spec)]
    return (
        e.WorkflowBuilder("fan-out")
        .fan_out(start, branches)
        .fan_in(branches, e.Agent("join", lambda state, value: e.Update({"done": sorted(value)})),
                merge=lambda inputs: list(inputs.values()))
        .build()
    )  # fmt: skip


def record(wf: e.Workflow, store: t.Store, seed: int) -> e.RunResult:
    rec, sink, time = recorded(seed=seed)
    result = e.Orchestrator(rec, time=time, seed=seed).run_sync(wf, None)
    rec.flush()
    store.ingest(sink.requests)
    return result


def documents(ledger: e.StateLedger) -> list[str]:
    return [t.canonical_json(ledger.document(v.version)) for v in ledger.versions()]


keys = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True).map(tuple)
specs = st.lists(
    st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), keys, keys), min_size=2, max_size=4
)


@settings(max_examples=25, deadline=None)
@given(spec=specs, seed=st.integers(0, 2**16))
def test_an_unchanged_replay_of_parallel_writers_ends_byte_for_byte_as_recorded(
    spec: list[tuple[float, tuple[str, ...], tuple[str, ...]]], seed: int
) -> None:
    wf = fan_out(spec)
    with t.Store(":memory:") as store:
        original = record(wf, store, seed)
        result = e.Replayer(store, record=False).replay(original.run_id, workflow=wf)
        assert not result.diverged, result.first_divergence
        assert documents(result.ledger) == documents(original.ledger)
        hashes = [result.ledger.hash(v.version) for v in result.ledger.versions()]
        assert hashes == [original.ledger.hash(v.version) for v in original.ledger.versions()]
        assert [(v.base_version, v.agent) for v in result.ledger.versions()] == [
            (v.base_version, v.agent) for v in original.ledger.versions()
        ]


def test_a_lost_update_between_branches_replays_as_recorded() -> None:
    # Both branches read x=1 (version 2); the slower one commits last and wins: a lost update.
    wf = fan_out([(1.0, ("x",), ("x",)), (2.0, ("x",), ("x",))])
    with t.Store(":memory:") as store:
        original = record(wf, store, 3)
        bases = [(v.base_version, v.agent) for v in original.ledger.versions()][2:4]
        assert bases == [(2, "b0"), (2, "b1")]
        result = e.Replayer(store, record=False).replay(original.run_id, workflow=wf)
        assert not result.diverged, result.first_divergence
        assert result.state == original.state


def test_the_lost_update_demo_keeps_its_finding_through_replay(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tui.cli import cli

    db = str(tmp_path / "claims.duckdb")
    invoke = CliRunner().invoke
    assert invoke(cli, ["demo", "--scenario", "lost-update", "--no-tui", "--db", db]).exit_code == 0
    with t.Store(db, read_only=True) as store:
        (run,) = store.runs()
    replayed = invoke(cli, ["replay", run.run_id, "--db", db], catch_exceptions=False)
    assert replayed.exit_code == 0 and "no divergence" in replayed.output
    new = replayed.output.splitlines()[0].rsplit(" ", 1)[1]
    found = invoke(cli, ["findings", new, "--db", db, "--json"], catch_exceptions=False)
    (finding,) = json.loads(found.output)
    assert (finding["kind"], finding["versions"]) == ("lost_update", [3, 4])
    assert finding["agents"] == ["medical_review", "vehicle_review"]


def test_the_fixed_claim_loses_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tui.cli import cli

    db = str(tmp_path / "fixed.duckdb")
    r = CliRunner().invoke(cli, ["demo", "--scenario", "lost-update-fixed", "--no-tui", "--db", db])
    assert r.exit_code == 0
    found = CliRunner().invoke(cli, ["findings", "--db", db, "--json"], catch_exceptions=False)
    assert json.loads(found.output) == []
    with t.Store(db, read_only=True) as store:
        (run,) = store.runs()
        assert store.state_at(run.run_id, run.version_count)["reserve"] == 12_500


def reserve_covers_both_reviews(result: e.RunResult) -> None:
    assert result.state["reserve"] == 12_500, f"reserve is {result.state['reserve']}"


def test_exploring_interleavings_finds_the_lost_update_and_reproduces_it() -> None:
    from engine.scenarios import claims

    found = asyncio.run(
        e.explore_schedules(
            claims.workflow(), claims.CLAIM, invariants=[reserve_covers_both_reviews], schedules=30
        )
    )
    assert found.failure is not None
    assert "reserve is" in found.failure.message
    again = found.reproduce()
    assert again.failure is not None and again.failure.seed == found.failure.seed
    fixed = asyncio.run(
        e.explore_schedules(
            claims.fixed_workflow(), claims.CLAIM, invariants=[reserve_covers_both_reviews],
            schedules=30,
        )
    )  # fmt: skip
    assert fixed.failure is None and len(fixed.runs) == 30
    # Several different interleavings of the buggy claim lose the update, each checked once.
    every = asyncio.run(
        e.explore_schedules(
            claims.workflow(), claims.CLAIM, invariants=[reserve_covers_both_reviews],
            schedules=30, stop_at_first=False,
        )
    )  # fmt: skip
    broken = [r.seed for r in every.runs if r.broken]
    assert 2 <= len(broken) < 30
