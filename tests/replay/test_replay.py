"""Re-execution: every bundled scenario replays as recorded; changed code diverges exactly where."""

from __future__ import annotations

from typing import Any

import pytest

import engine as e
import tracer as t
from engine import scenarios
from engine.replay._recording import load_recording
from engine.replay._replayer import build_target
from engine.scenarios import credit
from engine.scenarios.choreography import research_pipeline
from tracer import conventions as c
from tracer.analysis import detect

from .conftest import Recorded, Samples


@pytest.mark.parametrize("name", scenarios.names())
def test_every_bundled_scenario_replays_from_its_recorded_ref_without_divergence(
    samples: Samples, replayer: e.Replayer, name: str
) -> None:
    # No workflow given: each run's agentrace.run.workflow_ref alone rebuilds what it ran.
    replayer.preload(samples.runs[name])
    with replayer.batch():
        results = [replayer.replay(run) for run in samples.runs[name]]
    for run, result in zip(samples.runs[name], results, strict=True):
        assert result.divergences == (), result.report()
        original = samples.store.run(run)
        assert result.status == original.status
        assert len(result.ledger) == original.version_count
        # The new run, as recorded, is the original again: every version, every span.
        same = e.diff_runs(samples.store, run, result.run_id)
        assert same.same, "\n".join(same.describe())


def _qualname(fn: Any) -> str | None:
    return None if fn is None else getattr(fn, "__qualname__", type(fn).__qualname__)


def _contract_shape(contract: e.Contract | None) -> Any:
    if contract is None:
        return None
    return (contract.name, _qualname(contract.model), [r.text for r in contract.rules])


def _agent_shape(a: e.Agent) -> Any:
    return (
        a.name, _qualname(a.execute), _qualname(a.compensate), a.retry, a.timeout, a.breaker,
        _contract_shape(a.contract), a.thread,
    )  # fmt: skip


def _shape(target: e.Workflow | e.Choreography) -> Any:
    """Everything that decides how a workflow runs, comparable across two builds of it."""
    if isinstance(target, e.Workflow):
        return (
            "workflow", target.name, target.ref, target.start, target.declared, target.saga,
            target.max_steps, target.caches,
            {n: _agent_shape(a) for n, a in target.agents.items()},
            {s: (_qualname(r.fn), dict(r.labels)) for s, r in target.routes.items()},
            {n: _qualname(m) for n, m in target.merges.items()},
            {edge: _contract_shape(k) for edge, k in target.edge_contracts.items()},
        )  # fmt: skip
    start = target.start_step
    return (
        "choreography", target.name, target.ref, target.entry, target.source, target.policy,
        target.saga, _qualname(target.done_when), dict(target.caches),
        None if start is None else (_agent_shape(start.agent), start.emits, start.publishes),
        [
            (s.topic, _agent_shape(s.agent), s.group, s.emits, s.publishes, s.idempotent,
             s.policy, s.compensation)
            for s in target.subscriptions
        ],
        {topic: _contract_shape(k) for topic, k in target.contracts.items()},
    )  # fmt: skip


@pytest.mark.parametrize("name", scenarios.names())
def test_every_scenario_records_a_ref_that_rebuilds_what_it_ran(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    ran: dict[str, e.Workflow | e.Choreography] = {}

    def capture(cls: Any) -> None:
        run = cls.run

        async def spy(self: Any, target: Any, *args: Any, **kw: Any) -> Any:
            result = await run(self, target, *args, **kw)
            ran[result.run_id] = target
            return result

        monkeypatch.setattr(cls, "run", spy)

    capture(e.Orchestrator)
    capture(e.Choreographer)
    sink = t.InMemorySink()
    run_ids = scenarios.record(name, sink)[name]
    assert run_ids and set(run_ids) <= set(ran)
    with t.Store(":memory:") as store:
        store.ingest(sink.requests)
        for run_id in run_ids:
            recording = load_recording(store, run_id)
            assert recording.run.workflow_ref == ran[run_id].ref
            rebuilt = build_target(None, recording)  # as replay rebuilds it, seed and all
            assert _shape(rebuilt) == _shape(ran[run_id]), (
                f"{name}: {recording.run.workflow_ref} does not rebuild what run {run_id} ran"
            )


def test_a_replay_is_a_new_run_linked_to_its_original(
    samples: Samples, replayer: e.Replayer
) -> None:
    run = samples.first("trading-saga")
    result = replayer.replay(run)
    assert result.run_id != run and result.parent_run_id == run and result.mode == "replay"
    new = samples.store.run(result.run_id)
    assert new.parent_run_id == run
    assert new.attributes[c.RUN_PARENT] == run and c.RUN_FORK_VERSION not in new.attributes
    assert new.workflow_ref == samples.store.run(run).workflow_ref
    assert new.scenario == "trading-saga"
    # Compensations came from the recording too: the same versions, in the same order.
    assert [v.kind for v in samples.store.state_versions(result.run_id)] == [
        v.kind for v in samples.store.state_versions(run)
    ]


def test_no_agent_is_called_in_a_replay(own: Recorded) -> None:
    calls: list[str] = []
    live = {"on": True}

    def make(name: str, key: str) -> e.Agent:
        def execute(state: e.StateView, value: Any) -> e.Update:
            if not live["on"]:
                raise AssertionError(f"{name} was called during the replay")
            calls.append(name)
            return e.Update({key: f"{name}:{value}"}, output=f"{value}+{name}")

        return e.Agent(name, execute)

    wf = e.chain("abc", make("a", "x"), make("b", "y"), make("c", "z"), ref=None)
    original = own.orchestrate(wf, "in")
    assert calls == ["a", "b", "c"]
    live["on"] = False
    result = own.replayer().replay(original.run_id, workflow=wf)
    assert result.divergences == ()
    assert result.state == original.state and calls == ["a", "b", "c"]
    assert [s.output for s in result.steps] == [s.output for s in original.steps]


def _pricing_patch(state: e.StateView, req: dict[str, Any]) -> e.Update:
    apr = credit.BASE_APR[req["rating"]] + 3.0
    return e.Update({"pricing": {"apr": apr, "monthly_payment": 0.0}}, output={**req, "apr": apr})


def test_a_patched_agent_reports_its_first_divergence_exactly(
    samples: Samples, replayer: e.Replayer
) -> None:
    run = samples.first("credit")
    rec = replayer.recording(run)
    pricing = next(s for s in rec.steps if s.agent == "pricing")
    recorded_in = pricing.attempts[0].input_value
    recorded_out = pricing.attempts[0].output_value
    result = replayer.replay(run, overrides={"pricing": _pricing_patch})
    assert result.diverged and result.overrides == ("pricing",)
    first = result.first_divergence
    assert first is not None
    assert (first.kind, first.step, first.agent) == ("output", pricing.step, "pricing")
    assert first.expected == recorded_out
    assert first.actual == {**recorded_in, "apr": credit.BASE_APR[recorded_in["rating"]] + 3.0}
    assert [ch.path for ch in first.changes] == ["/apr"]
    # What follows from it, in the order it happened: the next agent's input, then the version.
    kinds = [(d.kind, d.agent) for d in result.divergences]
    assert kinds.index(("input", "decision")) > 0
    version = next(d for d in result.divergences if d.kind == "version")
    assert version.version == rec.version_of_step(pricing.step)
    assert any(ch.path == "/pricing/apr" for ch in version.changes)
    with pytest.raises(e.ReplayDivergence, match=rf"step {pricing.step} \(pricing\): output"):
        result.raise_on_divergence()
    with pytest.raises(e.ReplayDivergence) as raised:
        replayer.replay(run, overrides={"pricing": _pricing_patch}, raise_on_divergence=True)
    assert raised.value.divergence.kind == "output" and raised.value.result is not None


def test_the_fixed_cache_diverges_exactly_at_each_stale_read(
    samples: Samples, replayer: e.Replayer
) -> None:
    runs = samples.runs["credit"]
    stale = {}
    for run in runs:
        found = detect(samples.store, run, kinds=["stale_read"])
        if found:
            stale[run] = found[0]
    assert stale, "the credit incident has stale reads"
    fixed = credit.fixed_workflow()
    replayer.preload(runs)
    with replayer.batch():
        results = {run: replayer.replay(run, workflow=fixed) for run in runs}
    for run, result in results.items():
        if run not in stale:
            assert result.divergences == (), result.report()
            continue
        first = result.first_divergence
        assert first is not None and first.kind == "read" and first.agent == "risk_assessment"
        ev = stale[run].evidence
        assert (first.expected, first.actual) == (ev["read_version"], ev["committed_version"])


def test_a_changed_router_is_reported_as_steps_run_and_missed(own: Recorded) -> None:
    @e.agent
    def triage(state: e.StateView, value: int) -> dict[str, int]:
        return {"size": value}

    @e.agent
    def fast(state: e.StateView, value: dict[str, int]) -> e.Update:
        return e.Update({"done": "fast"})

    @e.agent
    def slow(state: e.StateView, value: dict[str, int]) -> e.Update:
        return e.Update({"done": "slow"})

    def build(limit: int) -> e.Workflow:
        def pick(state: e.StateView, out: dict[str, int]) -> str:
            return "fast" if out["size"] < limit else "slow"

        return e.WorkflowBuilder("triage").route(triage, pick, [fast, slow]).build()

    original = own.orchestrate(build(10), 5)
    assert original.state["done"] == "fast"
    result = own.replayer().replay(original.run_id, workflow=build(3))
    kinds = [(d.kind, d.agent, d.detail) for d in result.divergences]
    assert kinds[0] == ("step", "slow", "the replay ran a step the recording does not have")
    assert ("step", "fast", "the replay never ran this recorded step") in kinds
    # The step the recording has no answer for fails: the replay ends failed.
    assert result.status == "failed" and original.status == "completed"


def test_a_branch_cancelled_in_the_recording_is_again(own: Recorded) -> None:
    async def undo(state: e.StateView, out: Any) -> e.Update:
        return e.Update({"undone": True})

    @e.agent(compensate=undo)
    def start(state: e.StateView, value: int) -> int:
        return value

    @e.agent
    async def boom(state: e.StateView, value: int, ctx: e.AgentContext) -> None:
        await ctx.sleep(1.0)
        raise RuntimeError("boom")

    @e.agent
    async def slow(state: e.StateView, value: int, ctx: e.AgentContext) -> e.Update:
        for _ in range(10):
            await ctx.sleep(1.0)
        return e.Update({"slow": True})

    wf = e.WorkflowBuilder("parallel").fan_out(start, [boom, slow]).build()
    original = own.orchestrate(wf, 1)
    assert original.status == "compensated"
    spans = {s.name: s for s in own.store.spans(original.run_id)}
    assert spans["invoke_agent slow"].attributes[c.STEP_OUTCOME] == "cancelled"
    result = own.replayer().replay(original.run_id, workflow=wf)
    assert result.divergences == (), result.report()
    assert result.status == "compensated" and result.state["undone"] is True
    assert e.diff_runs(own.store, original.run_id, result.run_id).same


class QuoteFeedDown(Exception):
    """Raised by the feed; the retry policy retries only this."""


def test_retries_timeouts_and_errors_replay_attempt_by_attempt(own: Recorded) -> None:
    seen = {"fetch": 0, "slow": 0}

    @e.agent(retry=e.RetryPolicy(max_attempts=4, initial_delay=1.0, retry_on=(QuoteFeedDown,)))
    def fetch(state: e.StateView, value: Any) -> e.Update:
        seen["fetch"] += 1
        if seen["fetch"] <= 2:
            raise QuoteFeedDown(f"down ({seen['fetch']})")
        return e.Update({"quotes": [1, 2]})

    @e.agent(timeout=2.0, retry=e.RetryPolicy(max_attempts=2))
    async def slow(state: e.StateView, value: Any, ctx: e.AgentContext) -> e.Update:
        seen["slow"] += 1
        await ctx.sleep(5.0 if seen["slow"] == 1 else 0.5)
        return e.Update({"slow": seen["slow"]})

    wf = e.chain("retries", fetch, slow)
    original = own.orchestrate(wf)
    assert [(s.agent, s.outcome, s.attempts) for s in original.steps] == [
        ("fetch", "ok", 3),
        ("slow", "ok", 2),
    ]
    replayer = own.replayer()
    result = replayer.replay(original.run_id, workflow=wf)
    # The recorded QuoteFeedDown is raised again as itself: only it is retried.
    assert result.divergences == (), result.report()
    assert seen == {"fetch": 3, "slow": 2}
    assert [(s.outcome, s.attempts) for s in result.steps] == [("ok", 3), ("ok", 2)]
    assert e.diff_runs(own.store, original.run_id, result.run_id).same

    # The same recording against a policy that gives up sooner: the step ends otherwise.
    stingy = e.chain("retries", fetch.replace(retry=e.RetryPolicy(max_attempts=2)), slow)
    again = replayer.replay(original.run_id, workflow=stingy)
    first = again.first_divergence
    assert first is not None and (first.kind, first.agent) == ("outcome", "fetch")
    assert (first.expected, first.actual) == ("ok", "failed")


def test_a_run_without_a_workflow_needs_one_given(own: Recorded) -> None:
    wf = e.chain("anon", e.agent(lambda state, v: e.Update({"v": v}), name="only"))
    original = own.orchestrate(wf, 1)
    replayer = own.replayer()
    with pytest.raises(e.ReplayError, match="records no workflow "):
        replayer.replay(original.run_id)
    assert replayer.replay(original.run_id, workflow=wf).divergences == ()
    with pytest.raises(e.ReplayError, match="no such agent"):
        replayer.replay(original.run_id, workflow=wf, overrides={"nobody": lambda s, v: v})
    with pytest.raises(e.ReplayError, match="cannot import"):
        replayer.replay(original.run_id, workflow="no_such_module_here:flow")


def test_a_replay_need_not_be_recorded(samples: Samples) -> None:
    before = len(samples.store.runs())
    result = e.Replayer(samples.store, record=False).replay(samples.first("flaky"))
    assert result.divergences == () and not result.recorded
    assert len(samples.store.runs()) == before


def test_a_run_prefix_is_enough(samples: Samples, replayer: e.Replayer) -> None:
    run = samples.first("low-confidence")
    result = replayer.replay(run[:10])
    assert result.parent_run_id == run and result.status == "failed" and not result.diverged


def test_an_orchestrated_run_is_not_replayed_with_a_choreography(
    samples: Samples, replayer: e.Replayer
) -> None:
    with pytest.raises(e.ReplayError, match="orchestration run"):
        replayer.replay(samples.first("credit"), workflow=research_pipeline())


def test_replays_inside_an_event_loop(samples: Samples, replayer: e.Replayer) -> None:
    import asyncio

    async def inside() -> tuple[e.ReplayResult, e.ReplayResult]:
        awaited = await replayer.areplay(samples.first("flaky"))
        blocking = replayer.replay(samples.first("flaky"))  # from a worker thread
        return awaited, blocking

    a, b = asyncio.run(inside())
    assert not a.diverged and not b.diverged and a.run_id != b.run_id


def test_the_recording_holds_what_replay_feeds_back(samples: Samples) -> None:
    rec = e.Replayer(samples.store).recording(samples.first("credit"))
    assert [s.agent for s in rec.steps] == [
        "intake", "credit_score", "risk_assessment", "pricing", "decision",
    ]  # fmt: skip
    # Every version's writes, folded, give the document the store rebuilds.
    for v in range(1, len(rec.versions) + 1):
        assert rec.document(v) == samples.store.state_at(rec.run_id, v)
    assert rec.initial_state == samples.store.state_at(rec.run_id, 1)
    with pytest.raises(e.ReplayError, match=r"has no state version 99 \(it has 1\.\.6\)"):
        rec.version(99)
    assert isinstance(rec.run, t.Run)
