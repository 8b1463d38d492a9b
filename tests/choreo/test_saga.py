"""The choreographed (hybrid) saga: compensation events travel back over the bus, last step first."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import engine as e
from tracer import conventions as c
from tracer.analysis import detect

from .conftest import Env, attrs, events


class Declined(Exception):
    pass


def booking(
    names: list[str],
    *,
    fail_compensation: dict[str, int] | None = None,
    saga: e.SagaPolicy | None = None,
    start: bool = False,
    undone: list[str] | None = None,
    plain: frozenset[str] = frozenset(),
) -> e.Choreography:
    """A chain of agents (each reserves something, each can undo it) ending in ``pay``, which fails.

    ``fail_compensation`` makes an agent's compensation fail its first n attempts.
    With ``start`` the first agent is an orchestrated start step (a hybrid). Agents named
    in ``plain`` have nothing to undo.
    """
    fails = dict(fail_compensation or {})
    undone = undone if undone is not None else []

    def make(name: str) -> e.Agent:
        async def undo(state: e.StateView, output: Any, ctx: e.AgentContext) -> e.Update:
            await ctx.sleep(0.1)
            if fails.get(name, 0) > 0:
                fails[name] -= 1
                raise RuntimeError(f"{name} cannot undo right now")
            undone.append(name)
            held = dict(state["held"])
            del held[name]
            return e.Update({"held": held})

        async def do(state: e.StateView, value: Any, ctx: e.AgentContext) -> e.Update:
            await ctx.sleep(0.2)
            return e.Update({"held": {**state["held"], name: value["order"]}}, output=value)

        return e.Agent(name, do, compensate=None if name in plain else undo)

    @e.agent
    async def pay(state: e.StateView, value: Any) -> None:
        raise Declined("card declined")

    agents = [make(n) for n in names]
    flow = e.Choreography(
        "booking",
        entry=None if start else "requested",
        policy=e.DeliveryPolicy(max_attempts=2, redelivery_delay=1.0),
        saga=saga or e.SagaPolicy(retry=e.RetryPolicy(max_attempts=3, initial_delay=0.5)),
    )
    topics = [f"{n}.done" for n in names]
    if start:
        flow.start(agents[0], emits=topics[0])
    else:
        flow.on("requested", agents[0], emits=topics[0])
    for i, a in enumerate(agents[1:], start=1):
        flow.on(topics[i - 1], a, emits=topics[i])
    flow.on(topics[-1], pay)
    return flow


STATE = {"held": {}}


async def test_compensations_run_in_reverse_causal_order_over_the_bus(env: Env) -> None:
    undone: list[str] = []
    result = await env.choreographer().run(
        booking(["flight", "hotel", "car"], undone=undone), {"order": "o1"}, state=STATE
    )
    assert result.status == "compensated"
    assert undone == ["car", "hotel", "flight"]
    assert result.state == {"held": {}}
    assert [(x.agent, x.outcome, x.attempts) for x in result.compensations] == [
        ("car", "ok", 1),
        ("hotel", "ok", 1),
        ("flight", "ok", 1),
    ]
    spans = env.spans()
    comp = [s for s in spans if s.name.startswith("compensate ")]
    assert [s.name for s in sorted(comp, key=lambda s: s.start_time_unix_nano)] == [
        "compensate car",
        "compensate hotel",
        "compensate flight",
    ]
    # Each compensation is a step under the process span of its compensation event.
    by_id = {s.span_id: s for s in spans}
    assert [by_id[s.parent_span_id].name for s in comp] == [
        "process car.compensate",
        "process hotel.compensate",
        "process flight.compensate",
    ]
    assert [ev[c.SAGA_OUTCOME] for s in comp for ev in events(s, c.EV_SAGA_COMPENSATE)] == [
        "ok"
    ] * 3
    store = env.store()
    kinds = store.sql(
        "SELECT version, kind, agent FROM state_versions WHERE run_id = ? AND version > 4 ORDER BY version",
        [result.run_id],
    ).fetchall()
    assert kinds == [
        (5, "compensation", "car"),
        (6, "compensation", "hotel"),
        (7, "compensation", "flight"),
    ]
    # Who published each compensation event: the failing agent first, then each compensator.
    pubs = store.sql(
        "SELECT agent, topic FROM messages WHERE run_id = ? AND event = 'publish' AND topic LIKE '%.compensate'"
        " ORDER BY time_ns",
        [result.run_id],
    ).fetchall()
    assert pubs == [
        ("pay", "car.compensate"),
        ("car", "hotel.compensate"),
        ("hotel", "flight.compensate"),
    ]
    assert store.run(result.run_id).status == "compensated"
    assert detect(store, result.run_id) == []


async def test_the_chain_travels_in_the_saga_header(env: Env) -> None:
    result = await env.choreographer().run(booking(["a", "b"]), {"order": "o1"}, state=STATE)
    assert result.status == "compensated"
    deliveries = [s for s in env.spans("process b.done")]
    assert len(deliveries) == 2  # pay: attempt 1 nacked, attempt 2 dead-lettered
    first = next(s for s in env.spans("process a.compensate"))
    assert events(first, c.EV_MESSAGE_DELIVER)[0][c.MESSAGE_ATTEMPT] == 1


async def test_a_compensation_that_fails_is_retried_by_redelivery(env: Env) -> None:
    undone: list[str] = []
    flow = booking(["flight", "hotel"], fail_compensation={"hotel": 2}, undone=undone)
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "compensated"
    assert undone == ["hotel", "flight"]
    assert [(x.agent, x.attempts) for x in result.compensations] == [("hotel", 3), ("flight", 1)]
    hotel = sorted(env.spans("compensate hotel"), key=lambda s: s.start_time_unix_nano)
    assert [ev[c.SAGA_OUTCOME] for s in hotel for ev in events(s, c.EV_SAGA_COMPENSATE)] == [
        "failed",
        "failed",
        "ok",
    ]
    assert [attrs(s)[c.AGENT_ATTEMPT] for s in hotel] == [1, 2, 3]
    assert detect(env.store(), result.run_id) == []


async def test_a_compensation_that_fails_for_good_stops_the_chain(env: Env) -> None:
    undone: list[str] = []
    flow = booking(["flight", "hotel", "car"], fail_compensation={"hotel": 9}, undone=undone)
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "compensation_failed"
    assert undone == ["car"]
    assert [(x.agent, x.outcome) for x in result.compensations] == [
        ("car", "ok"),
        ("hotel", "failed"),
        ("flight", "skipped"),
    ]
    kinds = sorted(f.kind for f in detect(env.store(), result.run_id))
    assert kinds == ["compensation_failed", "saga_incomplete"]


async def test_continue_on_error_compensates_the_rest(env: Env) -> None:
    undone: list[str] = []
    saga = e.SagaPolicy(continue_on_error=True, retry=e.RetryPolicy(max_attempts=2))
    flow = booking(
        ["flight", "hotel", "car"], fail_compensation={"hotel": 9}, saga=saga, undone=undone
    )
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "compensation_failed"
    assert undone == ["car", "flight"]
    pubs = [
        (attrs(s)[c.GEN_AI_AGENT_NAME], attrs(s)[c.MESSAGING_DESTINATION])
        for s in env.spans("send flight.compensate")
    ]
    assert pubs == [
        ("hotel", "flight.compensate")
    ]  # passed on by the agent whose compensation failed


def _skips(env: Env) -> list[tuple[str, int, str]]:
    """The skipped compensations recorded on the run's root span: (agent, step, reason)."""
    (root,) = env.spans("invoke_workflow")
    return [
        (ev[c.SAGA_AGENT], ev[c.SAGA_STEP], ev[c.SAGA_REASON])
        for ev in events(root, c.EV_SAGA_COMPENSATE)
        if ev[c.SAGA_OUTCOME] == "skipped"
    ]


@pytest.mark.parametrize("start", [False, True], ids=["choreographed", "hybrid"])
async def test_a_step_with_nothing_to_undo_is_recorded_skipped_as_the_orchestrator_does(
    env: Env, start: bool
) -> None:
    undone: list[str] = []
    flow = booking(
        ["flight", "insure", "hotel"], start=start, undone=undone, plain=frozenset({"insure"})
    )
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "compensated"
    assert undone == ["hotel", "flight"]  # the event passes insure over
    step = next(r.step for r in result.steps if r.agent == "insure")
    assert _skips(env) == [("insure", step, "no_compensation")]
    assert detect(env.store(), result.run_id) == []  # nothing it needed was left undone


async def test_steps_left_undone_after_a_failed_compensation_are_recorded_and_named(
    env: Env,
) -> None:
    flow = booking(["flight", "hotel", "car"], fail_compensation={"car": 9})
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "compensation_failed"
    steps = {r.agent: r.step for r in result.steps if r.outcome == "ok"}
    assert _skips(env) == [
        ("hotel", steps["hotel"], "stopped"),
        ("flight", steps["flight"], "stopped"),
    ]
    found = detect(env.store(), result.run_id)
    incomplete = [f for f in found if f.kind == "saga_incomplete"]
    assert sorted(a for f in incomplete for a in f.agents) == ["flight", "hotel"]
    assert all(f.evidence["skip_recorded"] for f in incomplete)


async def test_a_hybrid_starts_with_an_orchestrated_step(env: Env) -> None:
    undone: list[str] = []
    result = await env.choreographer().run(
        booking(["checkout", "stock"], start=True, undone=undone), {"order": "o7"}, state=STATE
    )
    assert result.status == "compensated"
    assert undone == ["stock", "checkout"]
    spans = env.spans()
    root = next(s for s in spans if s.name == "invoke_workflow booking")
    first = next(s for s in spans if s.name == "invoke_agent checkout")
    assert first.parent_span_id == root.span_id  # run by the engine, not by a delivery
    assert attrs(root)[c.RUN_PATTERN] == "hybrid"
    declared = orjson.loads(attrs(root)[c.RUN_DECLARED_GRAPH])
    assert ["checkout", "checkout.done"] in declared["publishes"]
    assert ["checkout.compensate", "checkout"] in declared["subscriptions"]
    assert ["pay", "checkout.compensate"] in declared["publishes"]
    assert detect(env.store(), result.run_id) == []


async def test_a_failing_start_step_fails_the_run_with_nothing_to_undo(env: Env) -> None:
    @e.agent(retry=e.RetryPolicy(max_attempts=2, initial_delay=1.0))
    async def checkout(state: e.StateView, order: Any) -> None:
        raise Declined("no")

    flow = (
        e.Choreography("c", saga=e.SagaPolicy())
        .start(checkout, emits="placed")
        .on("placed", e.Agent("never", lambda s, v: None))
    )
    result = await env.choreographer().run(flow, {})
    assert result.status == "failed"
    # One record for the step and its two attempts, as the orchestrator records a step.
    assert [(s.agent, s.attempts, s.outcome) for s in result.steps] == [("checkout", 2, "failed")]
    assert result.published == 0


async def test_a_failure_without_a_saga_just_fails(env: Env) -> None:
    flow = booking(["a", "b"])
    flow.saga = None
    result = await env.choreographer().run(flow, {"order": "o1"}, state=STATE)
    assert result.status == "failed"
    assert result.compensations == ()
    assert isinstance(result.error, e.AgentError)


@pytest.mark.parametrize("fault", ["duplicate", "lose_ack"])
async def test_compensations_are_idempotent_under_redelivery(env: Env, fault: str) -> None:
    undone: list[str] = []
    rule = getattr(e.FaultRule, fault)(topic="hotel.compensate")
    policy = e.SagaPolicy(retry=e.RetryPolicy(max_attempts=3))
    flow = booking(["flight", "hotel"], undone=undone, saga=policy)
    flow.policy = e.DeliveryPolicy(max_attempts=2, ack_timeout=20.0)
    result = await env.choreographer(faults=e.Faults([rule])).run(
        flow, {"order": "o1"}, state=STATE
    )
    assert result.status == "compensated"
    assert undone == ["hotel", "flight"]


async def test_a_choreographed_agent_has_its_breaker_as_an_orchestrated_one_does(env: Env) -> None:
    calls: list[int] = []

    @e.agent(breaker=e.BreakerConfig(failure_threshold=2, cooldown=60.0))
    async def quote(state: e.StateView, order: Any) -> None:
        calls.append(1)
        raise Declined("feed down")

    flow = e.Choreography(
        "quotes", entry="asked", policy=e.DeliveryPolicy(max_attempts=4, redelivery_delay=1.0)
    ).on("asked", quote)
    choreographer = env.choreographer()
    result = await choreographer.run(flow, {})
    # Two failures open the breaker: the third delivery is refused without calling the agent,
    # and (an open breaker is not worth redelivering) the message is dead-lettered.
    assert len(calls) == 2
    assert [s.outcome for s in result.steps] == ["failed", "failed", "breaker_open"]
    assert result.status == "failed"
    assert choreographer.breakers.of(quote) is not None
    assert choreographer.breakers.of(quote).state == "open"
