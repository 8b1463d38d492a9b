"""Running workflows: retries, timeouts, breakers, parallel branches, joins, routers, contracts."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from typing import Any

import pytest

import engine as e

from .conftest import Env, attrs, events

S = 1_000_000_000


def ag(name: str, fn: Any = None, **kw: Any) -> e.Agent:
    return e.Agent(name, fn or (lambda state, value: value), **kw)


def writer(name: str, **kw: Any) -> e.Agent:
    async def write(state: e.StateView, value: Any) -> e.Update:
        return e.Update({name: value})

    return e.Agent(name, write, **kw)


# -- plain runs -------------------------------------------------------------------------------


async def test_a_chain_hands_outputs_along_and_commits_versions(env: Env) -> None:
    async def double(state: e.StateView, value: int) -> e.Update:
        return e.Update({"doubled": value * 2}, output=value * 2)

    async def add_one(state: e.StateView, value: int) -> int:
        return value + state["doubled"]

    wf = e.WorkflowBuilder("w").chain(e.Agent("double", double), e.Agent("add", add_one)).build()
    result = await env.orch().run(wf, 5, state={"seed": True})
    assert (result.status, result.output, result.error) == ("completed", 20, None)
    assert result.state == {"seed": True, "doubled": 10}
    assert [
        (s.step, s.agent, s.outcome, s.attempts, s.input, s.output, s.sources, s.version)
        for s in result.steps
    ] == [
        (1, "double", "ok", 1, 5, 10, (), 2),
        (2, "add", "ok", 1, 10, 20, ("double",), None),
    ]
    assert len(result.run_id) == 32 and result.raise_for_status() is result


async def test_runs_without_a_recorder() -> None:
    wf = e.WorkflowBuilder("w").chain(writer("a"), writer("b")).build()
    result = await e.Orchestrator().run(wf, 1)
    assert result.ok and result.state == {"a": 1, "b": {"a": 1}}  # b got a's changes as its input
    assert len(result.ledger) == 3 and len(result.run_id) == 32


def test_run_sync_and_its_refusal_inside_a_loop() -> None:
    wf = e.WorkflowBuilder("w").add(writer("a")).build()
    orch = e.Orchestrator()
    assert orch.run_sync(wf, 3).state == {"a": 3}

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=re.escape("await orchestrator.run")):
            orch.run_sync(wf, 3)

    asyncio.run(inside())


async def test_input_and_state_must_be_json() -> None:
    wf = e.WorkflowBuilder("w").add(writer("a")).build()
    with pytest.raises(e.EngineError, match="the run's input: a set is not JSON"):
        await e.Orchestrator().run(wf, {1, 2})
    with pytest.raises(e.EngineError, match=re.escape("state.when: a object is not JSON")):
        await e.Orchestrator().run(wf, 1, state={"when": object()})


async def test_output_that_is_not_json_fails_the_step(env: Env) -> None:
    wf = e.WorkflowBuilder("w").add(ag("bad", lambda s, v: {"x": {1, 2}}, thread=False)).build()
    result = await env.orch().run(wf, 1)
    assert result.status == "failed"
    assert isinstance(result.error, e.OutputError)
    assert "returned a value that is not JSON: output.x: a set is not JSON" in str(result.error)
    with pytest.raises(e.WorkflowFailed, match="ended failed"):
        result.raise_for_status()


# -- retries and timeouts ---------------------------------------------------------------------


async def test_retries_back_off_exponentially_on_the_clock(exact_env: Env) -> None:
    starts: list[int] = []

    async def flaky(state: e.StateView, value: Any, ctx: e.AgentContext) -> str:
        starts.append(ctx.now_ns())
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return "ok"

    retry = e.RetryPolicy(max_attempts=3, initial_delay=0.5, multiplier=4)
    wf = e.WorkflowBuilder("w").add(e.Agent("flaky", flaky, retry=retry)).build()
    result = await exact_env.orch().run(wf, None)
    assert result.ok and result.steps[0].attempts == 3
    assert [b - a for a, b in itertools.pairwise(starts)] == [int(0.5 * S), int(2.0 * S)]
    spans = exact_env.spans("invoke_agent")
    assert [(attrs(s)["agentrace.agent.step"], attrs(s)["agentrace.agent.attempt"], attrs(s)["agentrace.step.outcome"]) for s in spans] == [
        (1, 1, "failed"), (1, 2, "failed"), (1, 3, "ok"),
    ]  # fmt: skip
    assert [events(s, "exception")[0]["exception.message"] for s in spans[:2]] == [
        "attempt 1",
        "attempt 2",
    ]


async def test_jitter_is_the_same_under_the_same_seed(exact_env: Env) -> None:
    async def one_run(seed: int) -> list[int]:
        starts: list[int] = []

        async def flaky(state: e.StateView, value: Any, ctx: e.AgentContext) -> str:
            starts.append(ctx.now_ns())
            if ctx.attempt < 4:
                raise ConnectionError()
            return "ok"

        retry = e.RetryPolicy(max_attempts=4, initial_delay=1, jitter=0.5)
        wf = e.WorkflowBuilder("w").add(e.Agent("flaky", flaky, retry=retry)).build()
        await e.Orchestrator(time=e.VirtualTime(e.testing.FakeClock(0)), seed=seed).run(
            wf, None, run_id="ab" * 16
        )
        return [b - a for a, b in itertools.pairwise(starts)]

    first, again, other = await one_run(1), await one_run(1), await one_run(2)
    assert first == again != other
    assert all(0.5 * S * 2**i <= d <= S * 2**i for i, d in enumerate(first))


async def test_what_is_not_retried(env: Env) -> None:
    calls: list[int] = []

    async def picky(state: e.StateView, value: Any) -> str:
        calls.append(1)
        raise KeyError("missing")

    retry = e.RetryPolicy(max_attempts=5, retry_on=(ConnectionError,))
    wf = e.WorkflowBuilder("w").add(e.Agent("picky", picky, retry=retry)).build()
    result = await env.orch().run(wf, None)
    assert (result.status, len(calls), result.steps[0].attempts) == ("failed", 1, 1)


async def test_a_timeout_stops_the_step_at_its_deadline(exact_env: Env) -> None:
    async def slow(state: e.StateView, value: Any, ctx: e.AgentContext) -> str:
        await ctx.sleep(10)
        return "late"

    wf = e.WorkflowBuilder("w").add(e.Agent("slow", slow, timeout=2.0)).build()
    t0 = exact_env.time.now_ns()
    result = await exact_env.orch().run(wf, None)
    assert isinstance(result.error, e.StepTimeoutError) and result.error.outcome == "timeout"
    (span,) = exact_env.spans("invoke_agent")
    assert attrs(span)["agentrace.step.outcome"] == "timeout"
    assert span.end_time_unix_nano - span.start_time_unix_nano == 2 * S
    assert exact_env.time.now_ns() - t0 == 2 * S


async def test_a_timed_out_attempt_is_retried(exact_env: Env) -> None:
    async def slow_then_quick(state: e.StateView, value: Any, ctx: e.AgentContext) -> str:
        await ctx.sleep(5 if ctx.attempt == 1 else 0.5)
        return f"attempt {ctx.attempt}"

    retry = e.RetryPolicy(max_attempts=2, initial_delay=1)
    wf = e.WorkflowBuilder("w").add(e.Agent("s", slow_then_quick, timeout=1.0, retry=retry)).build()
    result = await exact_env.orch().run(wf, None)
    assert result.output == "attempt 2"
    assert [attrs(s)["agentrace.step.outcome"] for s in exact_env.spans("invoke_agent")] == [
        "timeout",
        "ok",
    ]


async def test_real_time_timeout(env: Env) -> None:
    never = asyncio.Event()

    async def hangs(state: e.StateView, value: Any) -> None:
        await never.wait()

    wf = e.WorkflowBuilder("w").add(e.Agent("hangs", hangs, timeout=0.01)).build()
    result = await e.Orchestrator().run(wf, None)
    assert isinstance(result.error, e.StepTimeoutError)


# -- breakers ---------------------------------------------------------------------------------


async def test_an_open_breaker_refuses_without_calling_the_agent(env: Env) -> None:
    calls: list[int] = []

    async def down(state: e.StateView, value: Any) -> None:
        calls.append(1)
        raise ConnectionError("down")

    breaker = e.BreakerConfig(failure_threshold=2, cooldown=30)
    wf = e.WorkflowBuilder("w").add(e.Agent("feed", down, breaker=breaker)).build()
    orch = env.orch()
    results = [await orch.run(wf, None) for _ in range(3)]
    assert [r.steps[0].outcome for r in results] == ["failed", "failed", "breaker_open"]
    assert len(calls) == 2
    assert (
        isinstance(results[2].error, e.BreakerOpenError) and orch.breakers["feed"].rejections == 1
    )
    spans = env.spans("invoke_agent")
    assert events(spans[1], "agentrace.breaker.transition") == [
        {"agentrace.breaker.name": "feed", "agentrace.breaker.from": "closed", "agentrace.breaker.to": "open",
         "agentrace.breaker.reason": "2 consecutive failures"},
    ]  # fmt: skip
    refused = attrs(spans[2])
    assert (refused["agentrace.step.outcome"], refused["agentrace.breaker.rejected"]) == (
        "breaker_open",
        True,
    )
    assert spans[2].status.code == 2  # ERROR


async def test_a_half_open_probe_closes_the_breaker_after_the_cooldown(env: Env) -> None:
    state = {"up": False}

    async def feed(s: e.StateView, value: Any) -> str:
        if not state["up"]:
            raise ConnectionError("down")
        return "quotes"

    wf = (
        e.WorkflowBuilder("w")
        .add(e.Agent("feed", feed, breaker=e.BreakerConfig(failure_threshold=1, cooldown=10)))
        .build()
    )
    orch = env.orch()
    assert (await orch.run(wf, None)).status == "failed"
    assert (await orch.run(wf, None)).steps[0].outcome == "breaker_open"
    state["up"] = True
    await env.time.sleep(10)
    assert (await orch.run(wf, None)).ok
    last = env.spans("invoke_agent")[-1]
    assert [(ev["agentrace.breaker.from"], ev["agentrace.breaker.to"]) for ev in events(last, "agentrace.breaker.transition")] == [
        ("open", "half_open"), ("half_open", "closed"),
    ]  # fmt: skip


# -- parallel branches and joins ----------------------------------------------------------------


async def test_parallel_async_branches_really_run_concurrently(env: Env) -> None:
    barrier = asyncio.Barrier(3)

    def branch(name: str) -> e.Agent:
        async def wait_for_the_others(state: e.StateView, value: Any) -> e.Update:
            async with asyncio.timeout(5):  # fails (does not hang) if the branches ran one by one
                await barrier.wait()
            return e.Update({name: value})

        return e.Agent(name, wait_for_the_others)

    bs = [branch(f"b{i}") for i in range(3)]
    wf = e.WorkflowBuilder("w").fan_out(ag("split"), bs).fan_in(bs, ag("join"), merge=dict).build()
    result = await env.orch().run(wf, 7)
    assert result.ok, result.error
    assert result.output == {"b0": {"b0": 7}, "b1": {"b1": 7}, "b2": {"b2": 7}}


async def test_parallel_sync_branches_run_in_threads_concurrently(env: Env) -> None:
    barrier = threading.Barrier(3, timeout=5)  # broken (an error, not a hang) if run one by one

    def branch(name: str) -> e.Agent:
        def wait_for_the_others(state: e.StateView, value: Any) -> e.Update:
            barrier.wait()
            return e.Update({name: True})

        return e.Agent(name, wait_for_the_others)

    bs = [branch(f"b{i}") for i in range(3)]
    wf = (
        e.WorkflowBuilder("w").fan_out(ag("split"), bs).fan_in(bs, ag("join"), merge=sorted).build()
    )
    result = await e.Orchestrator().run(wf, None)
    assert result.ok, result.error
    assert result.output == ["b0", "b1", "b2"] and result.state == {
        "b0": True,
        "b1": True,
        "b2": True,
    }


async def test_a_join_runs_once_after_all_its_branches(env: Env) -> None:
    gate = asyncio.Event()
    order: list[str] = []

    def branch(name: str, wait: bool) -> e.Agent:
        async def run(state: e.StateView, value: Any) -> str:
            if wait:
                await gate.wait()
            order.append(name)
            if not wait:
                gate.set()
            return name

        return e.Agent(name, run)

    async def join(state: e.StateView, value: Any) -> Any:
        order.append("join")
        return value

    bs = [branch("slow", True), branch("fast", False)]
    wf = (
        e.WorkflowBuilder("w")
        .fan_out(ag("split"), bs)
        .fan_in(bs, e.Agent("join", join), merge=dict)
        .build()
    )
    result = await env.orch().run(wf, None)
    assert order == ["fast", "slow", "join"]
    assert result.output == {"slow": "slow", "fast": "fast"}  # in declaration order
    join_step = next(s for s in result.steps if s.agent == "join")
    assert join_step.sources == ("slow", "fast")


async def test_a_router_picks_branches_and_the_join_does_not_wait_for_the_others(env: Env) -> None:
    def pick(state: e.StateView, output: Any) -> list[str]:
        return ["equities"] if output["kind"] == "stock" else ["bonds", "fx"]

    desks = [ag(n) for n in ("equities", "bonds", "fx")]
    wf = (
        e.WorkflowBuilder("w")
        .route(ag("triage"), pick, {"equities": desks[0], "bonds": desks[1], "fx": desks[2]})
        .fan_in(desks, ag("book"), merge=lambda d: sorted(d))
        .build()
    )
    stock = await env.orch().run(wf, {"kind": "stock"})
    bond = await env.orch().run(wf, {"kind": "bond"})
    assert stock.output == ["equities"] and [s.agent for s in stock.steps] == [
        "triage",
        "equities",
        "book",
    ]
    assert bond.output == ["bonds", "fx"]


async def test_a_router_that_returns_an_unknown_label(env: Env) -> None:
    wf = e.WorkflowBuilder("w").route(ag("triage"), lambda s, o: "nowhere", [ag("a")]).build()
    result = await env.orch().run(wf, None)
    assert isinstance(result.error, e.OutputError)
    assert "router returned 'nowhere'; its labels are 'a'" in str(result.error)


async def test_a_router_sees_the_step_changes_before_they_commit(env: Env) -> None:
    async def count(state: e.StateView, value: Any) -> e.Update:
        return e.Update({"n": state.get("n", 0) + 1})

    def again(state: e.StateView, output: Any) -> str:
        return "again" if state["n"] < 3 else "done"

    wf = (
        e.WorkflowBuilder("loop", max_steps=10)
        .route(e.Agent("count", count), again, {"again": "count", "done": ag("finish")})
        .start("count")
        .build()
    )
    result = await env.orch().run(wf, None)
    assert result.ok and result.state == {"n": 3}
    assert [s.agent for s in result.steps] == ["count", "count", "count", "finish"]


async def test_max_steps_stops_a_runaway_loop(env: Env) -> None:
    wf = (
        e.WorkflowBuilder("loop", max_steps=4)
        .route(ag("spin"), lambda s, o: "again", {"again": "spin", "never": ag("out")})
        .start("spin")
        .build()
    )
    result = await env.orch().run(wf, None)
    assert result.status == "failed" and "max_steps=4" in str(result.error)


@pytest.mark.parametrize("failer_first", [False, True], ids=["task fails", "inline branch fails"])
async def test_a_failing_branch_cancels_the_others(env: Env, failer_first: bool) -> None:
    cancelled: list[str] = []

    async def waits_forever(state: e.StateView, value: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("waiter")
            raise

    async def fails(state: e.StateView, value: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    bs = [e.Agent("waiter", waits_forever), e.Agent("failer", fails)]
    if failer_first:  # the first successor runs in the caller's task, the others in tasks
        bs.reverse()
    wf = e.WorkflowBuilder("w").fan_out(ag("split"), bs).fan_in(bs, ag("join"), merge=dict).build()
    result = await env.orch().run(wf, None)
    assert result.status == "failed" and cancelled == ["waiter"]
    outcomes = {
        attrs(s)["gen_ai.agent.name"]: attrs(s)["agentrace.step.outcome"]
        for s in env.spans("invoke_agent")
    }
    assert outcomes == {"split": "ok", "waiter": "cancelled", "failer": "failed"}
    assert {s.agent: s.outcome for s in result.steps} == {"split": "ok", "failer": "failed"}


@pytest.mark.parametrize(
    "failer_inline", [True, False], ids=["failer runs inline", "failer is spawned"]
)
async def test_a_step_failing_without_waiting_ends_the_run_with_a_sibling_just_spawned(
    env: Env, failer_inline: bool
) -> None:
    # "slow" is spawned and waits, so it is handed to a task; "boom" then fails before it ever
    # waits, which cancels that task before its first turn. The run must still end: with the
    # failure, the completed step compensated, and every span (the cancelled one's too) ended.
    cancelled: list[str] = []

    async def begin(state: e.StateView, value: Any) -> int:
        return 1

    async def undo(state: e.StateView, output: Any) -> e.Update:
        return e.Update({"undone": output})

    async def boom(state: e.StateView, value: Any) -> None:
        raise RuntimeError("boom")

    async def slow(state: e.StateView, value: Any) -> e.Update:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise
        return e.Update({"slow": True})

    failer, waiter = e.Agent("boom", boom), e.Agent("slow", slow)
    # The first successor runs in the caller's task, the others are spawned in order.
    bs = [failer, waiter] if failer_inline else [ag("quick", thread=False), waiter, failer]
    wf = e.WorkflowBuilder("w").fan_out(e.Agent("start", begin, compensate=undo), bs).build()
    result = await asyncio.wait_for(env.orch().run(wf, None), timeout=5)
    assert result.status == "compensated"
    assert isinstance(result.error, e.AgentError) and "RuntimeError: boom" in str(result.error)
    assert [(c.agent, c.outcome) for c in result.compensations] == [("start", "ok")]
    assert result.state == {"undone": 1}
    assert cancelled == ["slow"]
    assert {s.agent: s.outcome for s in result.steps} == {"start": "ok", "boom": "failed"}
    spans = env.spans()
    outcomes = {
        s.name: attrs(s).get("agentrace.step.outcome")
        for s in spans
        if s.name.startswith("invoke_agent")
    }
    assert outcomes == {
        "invoke_agent start": "ok", "invoke_agent boom": "failed", "invoke_agent slow": "cancelled",
    }  # fmt: skip
    assert sorted(s.name for s in spans if not s.name.startswith("invoke_agent")) == [
        "compensate start", "invoke_workflow w",
    ]  # fmt: skip


async def test_cancelling_the_run_from_outside_cancels_it(env: Env) -> None:
    started = asyncio.Event()

    async def waits(state: e.StateView, value: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    wf = e.WorkflowBuilder("w").add(e.Agent("waits", waits)).build()
    task = asyncio.create_task(env.orch().run(wf, None))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    root = env.spans("invoke_workflow")[0]
    assert attrs(root)["agentrace.run.status"] == "failed"


async def test_parallel_writes_from_one_base_lose_an_update(env: Env) -> None:
    def deposit(name: str, amount: int) -> e.Agent:
        async def run(state: e.StateView, value: Any) -> e.Update:
            balance = state["balance"]  # both read the same version...
            await asyncio.sleep(0)  # ...and the other branch commits meanwhile
            return e.Update({"balance": balance + amount, name: amount})

        return e.Agent(name, run)

    bs = [deposit("salary", 100), deposit("refund", 20)]
    wf = e.WorkflowBuilder("w").fan_out(ag("open"), bs).fan_in(bs, ag("close"), merge=dict).build()
    result = await env.orch().run(wf, None, state={"balance": 10})
    assert result.state["balance"] in (110, 30)  # not 130: one deposit is lost
    v2, v3 = result.ledger.version(2), result.ledger.version(3)
    assert (v2.base_version, v3.base_version, v3.parent_version) == (1, 1, 2)
    assert v2.keys[0] == v3.keys[0] == "balance"
    store = env.store()
    reads = store.state_reads(result.run_id)
    assert sorted((r.agent, r.version, r.keys) for r in reads) == [
        ("refund", 1, ("balance",)), ("salary", 1, ("balance",)),
    ]  # fmt: skip


# -- contracts --------------------------------------------------------------------------------


async def test_an_edge_contract_stops_the_handoff(env: Env) -> None:
    contract = e.Contract("confident", rules=["confidence >= 0.7"])
    reached: list[str] = []

    async def research(state: e.StateView, value: Any) -> e.Update:
        return e.Update({"notes": "n"}, output={"confidence": 0.4})

    async def analysis(state: e.StateView, value: Any) -> None:
        reached.append("analysis")

    wf = (
        e.WorkflowBuilder("w")
        .edge(e.Agent("research", research), e.Agent("analysis", analysis), contract=contract)
        .build()
    )
    result = await env.orch().run(wf, None)
    err = result.error
    assert isinstance(err, e.ContractViolation) and err.outcome == "rejected"
    assert (err.contract, err.target, err.payload) == ("confident", "analysis", {"confidence": 0.4})
    assert reached == [] and len(result.ledger) == 1  # nothing committed, nothing handed on
    (span,) = env.spans("invoke_agent")
    (check,) = events(span, "agentrace.contract.check")
    assert check["agentrace.contract.outcome"] == "rejected"
    assert (check["agentrace.contract.source"], check["agentrace.contract.target"]) == (
        "research",
        "analysis",
    )
    assert check["agentrace.contract.payload"] == '{"confidence":0.4}'
    assert "does not hold: confidence is 0.4" in check["agentrace.contract.errors"]
    assert attrs(span)["agentrace.step.outcome"] == "rejected"
    assert attrs(span)["agentrace.agent.output"] == '{"confidence":0.4}'


async def test_an_agent_contract_checks_its_output_and_passes_are_recorded(env: Env) -> None:
    contract = e.Contract("positive", rules=["n > 0"])
    wf = (
        e.WorkflowBuilder("w")
        .add(ag("count", lambda s, v: {"n": v}, contract=contract, thread=False))
        .build()
    )
    ok = await env.orch().run(wf, 3)
    bad = await env.orch().run(wf, -1)
    assert ok.ok and bad.status == "failed"
    good_span, bad_span = env.spans("invoke_agent")
    (passed,) = events(good_span, "agentrace.contract.check")
    assert (
        passed["agentrace.contract.outcome"] == "passed"
        and "agentrace.contract.target" not in passed
    )
    assert (
        events(bad_span, "agentrace.contract.check")[0]["agentrace.contract.outcome"] == "rejected"
    )


async def test_a_branch_task_that_fans_out_is_waited_for_to_the_end(env: Env) -> None:
    # The start hands to "quick" (runs inline, ends at once) and "slow" (waits, so it becomes a
    # task); "slow" then fans out to "instant" (finishes while being started) and "late" (waits
    # again). The run must not end before "late" has.
    gate = asyncio.Event()

    async def slow(state: e.StateView, value: Any) -> str:
        await asyncio.sleep(0)
        return "slow"

    async def late(state: e.StateView, value: Any) -> e.Update:
        gate.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return e.Update({"late": True})

    def now(name: str) -> e.Agent:
        return ag(name, thread=False)  # on the loop: no thread to change the timing

    wf = (
        e.WorkflowBuilder("w")
        .fan_out(now("start"), [now("quick"), e.Agent("slow", slow)])
        .fan_out("slow", [e.Agent("late", late), now("instant")])
        .build()
    )
    result = await env.orch().run(wf, None)
    assert gate.is_set()
    assert result.state == {"late": True}
    assert sorted(s.agent for s in result.steps) == ["instant", "late", "quick", "slow", "start"]


async def test_siblings_do_not_see_what_one_does_to_its_input(env: Env) -> None:
    async def grab(state: e.StateView, value: dict[str, Any]) -> list[int]:
        value["items"].append(99)  # changes its own copy only
        return value["items"]

    bs = [e.Agent("b1", grab), e.Agent("b2", grab)]
    wf = (
        e.WorkflowBuilder("w")
        .fan_out(ag("split", thread=False), bs)
        .fan_in(bs, ag("join"), merge=dict)
        .build()
    )
    result = await env.orch().run(wf, {"items": [1]})
    assert result.output == {"b1": [1, 99], "b2": [1, 99]}
    inputs = [attrs(s)["agentrace.agent.input"] for s in env.spans("invoke_agent b")]
    assert inputs == ['{"items":[1]}', '{"items":[1]}']
