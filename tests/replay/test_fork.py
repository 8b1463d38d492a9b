"""Forks: replay up to version k, run live from there; recorded and linked."""

from __future__ import annotations

import pytest

import engine as e
from engine.scenarios import credit
from tracer import conventions as c

from .conftest import Recorded, Samples


def _counting_chain(calls: list[str], bump: int = 1) -> e.Workflow:
    """a → b → c → d, each adding ``bump`` to the running total and writing its own key."""

    def make(name: str) -> e.Agent:
        def execute(state: e.StateView, total: int) -> e.Update:
            calls.append(name)
            return e.Update({name: total + bump}, output=total + bump)

        return e.Agent(name, execute)

    return e.chain("count", *(make(n) for n in "abcd"))


def test_a_fork_is_recorded_linked_and_equal_up_to_its_version(
    samples: Samples, replayer: e.Replayer
) -> None:
    run = samples.first("credit")
    fork = replayer.fork(run, 3, workflow=credit.fixed_workflow())
    assert fork.mode == "fork" and fork.fork_version == 3 and fork.parent_run_id == run
    new = samples.store.run(fork.run_id)
    assert new.parent_run_id == run
    assert new.attributes[c.RUN_FORK_VERSION] == 3 and new.attributes[c.RUN_PARENT] == run
    hashes = {v.version: v.hash for v in samples.store.state_versions(run)}
    forked = {v.version: v.hash for v in samples.store.state_versions(fork.run_id)}
    # The chain is the original's up to the fork, to the byte.
    assert [forked[v] for v in (1, 2, 3)] == [hashes[v] for v in (1, 2, 3)]
    assert fork.divergences == ()


def test_a_fork_runs_every_later_step_live(own: Recorded) -> None:
    calls: list[str] = []
    original = own.orchestrate(_counting_chain(calls), 0)
    assert original.state == {"a": 1, "b": 2, "c": 3, "d": 4}
    calls.clear()
    # Versions: 1 initial, 2 by a, 3 by b. From 3 on, c and d run live, adding 10 each.
    fork = own.replayer().fork(original.run_id, 3, workflow=_counting_chain(calls, bump=10))
    assert calls == ["c", "d"]
    assert fork.state == {"a": 1, "b": 2, "c": 12, "d": 22}
    assert fork.divergences == ()  # the replayed part (a, b) went as recorded


def test_a_fork_with_an_override_uses_it_after_the_version(own: Recorded) -> None:
    calls: list[str] = []
    original = own.orchestrate(_counting_chain(calls), 0)

    def doubled(state: e.StateView, total: int) -> e.Update:
        return e.Update({"c": total * 100}, output=total * 100)

    replayer = own.replayer()
    before = replayer.fork(
        original.run_id, 2, workflow=_counting_chain([]), overrides={"c": doubled}
    )
    assert before.state == {"a": 1, "b": 2, "c": 200, "d": 201}
    # A fork after c's version replays c as recorded: the override is never called there.
    after = replayer.fork(
        original.run_id, 4, workflow=_counting_chain([]), overrides={"c": doubled}
    )
    assert after.state == original.state and after.overrides == ("c",)


def test_a_fork_from_version_1_is_a_fresh_run(own: Recorded) -> None:
    calls: list[str] = []
    original = own.orchestrate(_counting_chain(calls), 0)
    calls.clear()
    fork = own.replayer().fork(original.run_id, 1, workflow=_counting_chain(calls, bump=2))
    fresh = e.Orchestrator().run_sync(_counting_chain([], bump=2), 0)
    assert calls == ["a", "b", "c", "d"] and fork.state == fresh.state


def test_fork_versions_outside_the_run_are_refused(samples: Samples, replayer: e.Replayer) -> None:
    run = samples.first("credit")
    with pytest.raises(e.ReplayError, match=r"no state version 7 \(it has 1\.\.6\)"):
        replayer.fork(run, 7)
    with pytest.raises(e.ReplayError, match="no state version 0"):
        replayer.fork(run, 0)
    with pytest.raises(e.ReplayError, match="must be an int"):
        replayer.fork(run, "3")  # type: ignore[arg-type]


def test_the_replayed_part_of_a_fork_is_still_compared(own: Recorded) -> None:
    calls: list[str] = []
    original = own.orchestrate(_counting_chain(calls), 0)

    def other_b(state: e.StateView, total: int) -> e.Update:
        return e.Update({"b": -1}, output=-1)

    # b is overridden, but b's step lies before version 4: it is replayed, not live; c runs
    # live from 4 on. A changed input of a replayed step would be reported; here none is.
    fork = own.replayer().fork(
        original.run_id, 4, workflow=_counting_chain([]), overrides={"b": other_b}
    )
    assert fork.divergences == () and fork.state["b"] == 2

    # A fork whose replayed part cannot go as recorded says where: c now follows a, so it
    # gets a's total (1) where the recording gave it b's (2).
    agents = _counting_chain([]).agents
    reordered = e.chain("count", *(agents[n] for n in "acbd"))
    broken = own.replayer().fork(original.run_id, 4, workflow=reordered)
    first = broken.first_divergence
    assert first is not None
    assert (first.kind, first.step, first.agent, first.expected, first.actual) == (
        "input", 3, "c", 2, 1,
    )  # fmt: skip
