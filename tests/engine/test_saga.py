"""Sagas: compensations in reverse order, with a failure injected at every position."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import engine as e
from tracer.analysis import analyze

from .conftest import Env, attrs, events

N = 5


def chain_with_compensations(
    fail_at: int, log: list[str], *, broken: frozenset[str] = frozenset(), flaky: dict[str, int] | None = None,
    saga: e.SagaPolicy | None = None,
) -> e.Workflow:  # fmt: skip
    """Agents s1..sN, each writing its key and undoing it; step ``fail_at`` raises."""

    def make(i: int) -> e.Agent:
        name = f"s{i}"

        async def execute(state: e.StateView, value: Any) -> e.Update:
            if i == fail_at:
                raise RuntimeError(f"{name} failed")
            return e.Update({name: i})

        async def compensate(state: e.StateView, output: Any) -> e.Update:
            log.append(name)
            if name in broken:
                raise RuntimeError(f"cannot undo {name}")
            if flaky and flaky.get(name, 0) > 0:
                flaky[name] -= 1
                raise ConnectionError(f"undo {name} timed out")
            assert output == {name: i}  # what the step handed on
            return e.Update(delete=[name])

        return e.Agent(name, execute, compensate=compensate)

    return e.WorkflowBuilder("saga", saga=saga).chain(*(make(i) for i in range(1, N + 1))).build()


@pytest.mark.parametrize("fail_at", range(1, N + 1))
async def test_a_failure_at_every_position_undoes_what_completed_in_reverse(
    env: Env, fail_at: int
) -> None:
    log: list[str] = []
    result = await env.orch().run(chain_with_compensations(fail_at, log), None, state={"keep": 1})
    done = [f"s{i}" for i in range(1, fail_at)]
    assert log == list(reversed(done))
    assert result.status == ("compensated" if done else "failed")
    assert [(c.agent, c.outcome, c.attempts) for c in result.compensations] == [
        (n, "ok", 1) for n in reversed(done)
    ]
    assert result.state == {"keep": 1}  # everything the completed steps wrote is undone
    kinds = [v.kind for v in result.ledger.versions()]
    assert kinds == ["initial"] + ["commit"] * len(done) + ["compensation"] * len(done)
    comp_spans = env.spans("compensate")
    assert [attrs(s)["gen_ai.agent.name"] for s in comp_spans] == list(reversed(done))
    for span in comp_spans:
        (ev,) = events(span, "agentrace.saga.compensate")
        assert (ev["agentrace.saga.outcome"], ev["agentrace.saga.attempt"]) == ("ok", 1)
        assert attrs(span)["gen_ai.operation.name"] == "compensate"


async def test_a_failed_compensation_stops_the_rest_by_default(env: Env) -> None:
    log: list[str] = []
    result = await env.orch().run(chain_with_compensations(5, log, broken=frozenset({"s3"})), None)
    assert result.status == "compensation_failed"
    assert log == ["s4", "s3"]
    assert [(c.agent, c.outcome) for c in result.compensations] == [
        ("s4", "ok"), ("s3", "failed"), ("s2", "skipped"), ("s1", "skipped"),
    ]  # fmt: skip
    assert "cannot undo s3" in (result.compensations[1].error or "")
    failed_span = env.spans("compensate")[-1]
    assert failed_span.status.code == 2
    assert (
        events(failed_span, "agentrace.saga.compensate")[0]["agentrace.saga.error"]
        == "RuntimeError: cannot undo s3"
    )


async def test_continue_on_error_runs_the_rest(env: Env) -> None:
    log: list[str] = []
    wf = chain_with_compensations(
        5, log, broken=frozenset({"s3"}), saga=e.SagaPolicy(continue_on_error=True)
    )
    result = await env.orch().run(wf, None)
    assert result.status == "compensation_failed"
    assert log == ["s4", "s3", "s2", "s1"]
    assert [c.outcome for c in result.compensations] == ["ok", "failed", "ok", "ok"]
    assert result.state == {"s3": 3}  # only the one that could not be undone is left


async def test_compensations_are_retried(env: Env) -> None:
    log: list[str] = []
    saga = e.SagaPolicy(retry=e.RetryPolicy(max_attempts=3, initial_delay=0.1))
    wf = chain_with_compensations(3, log, flaky={"s2": 2}, saga=saga)
    result = await env.orch().run(wf, None)
    assert result.status == "compensated"
    assert [(c.agent, c.attempts) for c in result.compensations] == [("s2", 3), ("s1", 1)]
    attempts = [events(s, "agentrace.saga.compensate")[0] for s in env.spans("compensate")]
    assert [(a["agentrace.saga.agent"], a["agentrace.saga.attempt"], a["agentrace.saga.outcome"]) for a in attempts] == [
        ("s2", 1, "failed"), ("s2", 2, "failed"), ("s2", 3, "ok"), ("s1", 1, "ok"),
    ]  # fmt: skip


async def test_a_compensation_that_fails_every_retry(env: Env) -> None:
    log: list[str] = []
    saga = e.SagaPolicy(retry=e.RetryPolicy(max_attempts=2), continue_on_error=True)
    result = await env.orch().run(
        chain_with_compensations(3, log, flaky={"s2": 5}, saga=saga), None
    )
    assert [(c.agent, c.outcome, c.attempts) for c in result.compensations] == [
        ("s2", "failed", 2),
        ("s1", "ok", 1),
    ]


async def test_parallel_compensation_runs_them_at_once(env: Env) -> None:
    barrier = asyncio.Barrier(3)

    def make(i: int) -> e.Agent:
        async def execute(state: e.StateView, value: Any) -> e.Update:
            if i == 4:
                raise RuntimeError("fail")
            return e.Update({f"s{i}": i})

        async def compensate(state: e.StateView, output: Any) -> e.Update:
            async with asyncio.timeout(5):  # all three must be waiting together
                await barrier.wait()
            return e.Update(delete=[f"s{i}"])

        return e.Agent(f"s{i}", execute, compensate=compensate)

    wf = (
        e.WorkflowBuilder("w", saga=e.SagaPolicy(parallel=True))
        .chain(*(make(i) for i in range(1, 5)))
        .build()
    )
    result = await env.orch().run(wf, None)
    assert result.status == "compensated" and result.state == {}
    assert sorted(c.agent for c in result.compensations) == ["s1", "s2", "s3"]


async def test_steps_without_compensate_are_passed_over(env: Env) -> None:
    log: list[str] = []

    async def undo(state: e.StateView, output: Any) -> None:
        log.append("a")

    async def fail(state: e.StateView, value: Any) -> None:
        raise RuntimeError("x")

    wf = (
        e.WorkflowBuilder("w")
        .chain(
            e.Agent("a", lambda s, v: v, compensate=undo),
            e.Agent("b", lambda s, v: v),
            e.Agent("c", fail),
        )
        .build()
    )
    result = await env.orch().run(wf, None)
    assert (result.status, log, len(result.ledger)) == (
        "compensated",
        ["a"],
        1,
    )  # undo returned no update


async def test_cancelling_the_run_during_compensation_still_ends_it(env: Env) -> None:
    started = asyncio.Event()

    async def undo(state: e.StateView, output: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async def fail(state: e.StateView, value: Any) -> None:
        raise RuntimeError("x")

    wf = (
        e.WorkflowBuilder("w")
        .chain(e.Agent("a", lambda s, v: v, compensate=undo), e.Agent("b", fail))
        .build()
    )
    task = asyncio.create_task(env.orch().run(wf, None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (root,) = env.spans("invoke_workflow")
    assert attrs(root)["agentrace.run.status"] == "failed"
    (comp,) = env.spans("compensate")
    assert events(comp, "agentrace.saga.compensate")[0]["agentrace.saga.outcome"] == "failed"
    assert comp.status.message == "cancelled"


def _saga_events(env: Env) -> list[dict[str, Any]]:
    (root,) = env.spans("invoke_workflow")
    return events(root, "agentrace.saga.compensate")


async def test_a_step_without_compensate_is_recorded_skipped_and_is_no_finding(env: Env) -> None:
    """``plain`` commits and has nothing to undo; ``undo``'s compensation fails for good."""

    async def write(state: e.StateView, value: Any) -> e.Update:
        return e.Update({"plain": 1})

    async def broken(state: e.StateView, output: Any) -> None:
        raise RuntimeError("ledger locked")

    async def fail(state: e.StateView, value: Any) -> None:
        raise RuntimeError("x")

    wf = (
        e.WorkflowBuilder("w")
        .chain(
            e.Agent("plain", write),
            e.Agent("undo", lambda s, v: v, compensate=broken),
            e.Agent("last", fail),
        )
        .build()
    )
    result = await env.orch().run(wf, None)
    assert result.status == "compensation_failed"
    (skip,) = _saga_events(env)
    assert skip == {
        "agentrace.saga.agent": "plain", "agentrace.saga.outcome": "skipped",
        "agentrace.saga.attempt": 0, "agentrace.saga.step": 1,
        "agentrace.saga.reason": "no_compensation",
    }  # fmt: skip
    store = env.store()
    kinds = [f.kind for f in analyze(store, result.run_id, save=False)]
    assert kinds == ["compensation_failed"]  # plain needed no undoing


async def test_compensations_left_undone_are_recorded_skipped_and_named(env: Env) -> None:
    log: list[str] = []
    result = await env.orch().run(chain_with_compensations(5, log, broken=frozenset({"s3"})), None)
    skips = [(ev["agentrace.saga.agent"], ev["agentrace.saga.reason"]) for ev in _saga_events(env)]
    assert skips == [("s2", "stopped"), ("s1", "stopped")]
    found = analyze(env.store(), result.run_id, kinds=["saga_incomplete"], save=False)
    assert sorted(a for f in found for a in f.agents) == ["s1", "s2"]
    assert all(f.evidence["skip_recorded"] for f in found)
