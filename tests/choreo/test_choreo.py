"""Choreographed runs: what they record, how handlers use the ledger, faults at the consumer, the saga."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import engine as e
import tracer as t
from tracer import conventions as c
from tracer.analysis import detect

from .conftest import Env, attrs, events


def pipeline(
    *,
    idempotent: bool = False,
    policy: e.DeliveryPolicy | None = None,
    log: list[str] | None = None,
) -> e.Choreography:
    """a → b → c over topics t1, t2, t3; b adds to a counter (a visible, non-idempotent effect)."""

    @e.agent
    async def a(state: e.StateView, value: Any, ctx: e.AgentContext) -> e.Update:
        await ctx.sleep(0.1)
        return e.Update({"a": value["n"]}, output={"n": value["n"] + 1})

    @e.agent
    async def b(state: e.StateView, value: Any, ctx: e.AgentContext) -> e.Update:
        if log is not None:
            log.append(f"b:{ctx.attempt}")
        return e.Update({"count": state.get("count", 0) + 1}, output={"n": value["n"] * 10})

    @e.agent
    async def c_(state: e.StateView, value: Any) -> e.Update:
        return e.Update({"c": value["n"]})

    return (
        e.Choreography("pipe", entry="t1", policy=policy, done_when=lambda s: "c" in s)
        .on("t1", a, emits="t2")
        .on("t2", b, emits="t3", idempotent=idempotent)
        .on("t3", c_.replace(name="c"))
    )


def message_rows(store: t.Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.sql(
        """SELECT event, topic, agent, consumer_group, attempt, outcome, fault FROM messages
           WHERE run_id = ? ORDER BY time_ns, seq""",
        [run_id],
    ).fetchall()


async def test_a_clean_run_records_every_publish_delivery_and_ack(env: Env) -> None:
    result = await env.choreographer().run(pipeline(), {"n": 1}, key="k1")
    assert result.status == "completed", result.error
    assert result.state == {"a": 1, "count": 1, "c": 20}
    assert result.published == 3
    store = env.store()
    assert message_rows(store, result.run_id) == [
        ("publish", "t1", "user", None, None, None, None),
        ("deliver", "t1", "a", "a", 1, None, None),
        ("publish", "t2", "a", None, None, None, None),
        ("ack", "t1", "a", "a", 1, "acked", None),
        ("deliver", "t2", "b", "b", 1, None, None),
        ("publish", "t3", "b", None, None, None, None),
        ("ack", "t2", "b", "b", 1, "acked", None),
        ("deliver", "t3", "c", "c", 1, None, None),
        ("ack", "t3", "c", "c", 1, "acked", None),
    ]
    keys = store.sql(
        "SELECT DISTINCT msg_key FROM messages WHERE run_id = ?", [result.run_id]
    ).fetchall()
    assert keys == [("k1",)]  # the key travels with every message the run caused
    run = store.run(result.run_id)
    assert (run.pattern, run.status) == ("choreography", "completed")
    assert detect(store, result.run_id) == []


async def test_trace_context_crosses_the_bus(env: Env) -> None:
    result = await env.choreographer().run(pipeline(), {"n": 1})
    spans = env.spans()
    root = next(s for s in spans if s.name == "invoke_workflow pipe")
    sends = {attrs(s)[c.MESSAGING_MESSAGE_ID]: s for s in spans if s.name.startswith("send ")}
    processes = [s for s in spans if s.name.startswith("process ")]
    assert len(sends) == 3 and len(processes) == 3
    assert {s.trace_id for s in spans} == {bytes.fromhex(result.run_id)}
    for p in processes:
        send = sends[attrs(p)[c.MESSAGING_MESSAGE_ID]]
        assert p.kind == 5 and send.kind == 4  # CONSUMER, PRODUCER
        assert p.parent_span_id == root.span_id
        assert [(ln.trace_id, ln.span_id) for ln in p.links] == [(send.trace_id, send.span_id)]
    # A step's sends are children of the process span of the delivery that caused them.
    by_id = {s.span_id: s for s in spans}
    assert by_id[sends[next(iter(sends))].parent_span_id] is root
    for send in list(sends.values())[1:]:
        assert by_id[send.parent_span_id].name.startswith("process ")
    # And the step itself runs under its process span, as one invoke_agent span.
    steps = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert [by_id[s.parent_span_id].name for s in steps] == [
        "process t1",
        "process t2",
        "process t3",
    ]
    assert [attrs(s)[c.AGENT_INPUT] for s in steps] == ['{"n":1}', '{"n":2}', '{"n":20}']


async def test_the_traceparent_header_is_the_send_span(env: Env) -> None:
    seen: list[e.Message] = []

    @e.agent
    async def probe(state: e.StateView, value: Any, ctx: e.EventContext) -> None:
        assert ctx.message is not None
        seen.append(ctx.message)

    flow = e.Choreography("probe", entry="t").on("t", probe)
    result = await env.choreographer().run(flow, {"x": 1})
    send = next(s for s in env.spans("send "))
    root = next(s for s in env.spans("invoke_workflow"))
    ctx = t.SpanContext.from_traceparent(seen[0].headers["traceparent"])
    assert (ctx.trace_id, ctx.span_id) == (send.trace_id, send.span_id)
    run_ctx = t.SpanContext.from_traceparent(seen[0].headers["agentrace-run"])
    assert run_ctx.span_id == root.span_id
    assert ctx.trace_id_hex == result.run_id


async def test_a_worker_without_the_root_parents_process_spans_from_the_run_header() -> None:
    sink = t.InMemorySink()
    rec = t.Recorder(sink, clock=t.FakeClock(tick_ns=1), ids=t.SeededIds(1))
    root = rec.start_span("invoke_workflow w")
    producer = e.BusTracer(rec, root=root.context)
    bus = e.InProcessBus(e.VirtualTime(t.FakeClock()))
    worker = e.BusTracer(rec)  # another process: knows only the message
    got: list[e.Delivery] = []

    async def handler(d: e.Delivery) -> None:
        got.append(d)
        span = worker.start_process(d, "w")
        worker.settle(span, d, "acked")
        span.end()
        await bus.ack(d)

    await bus.subscribe("t", "g", handler)
    sent = await producer.publish(
        bus, e.Message.create(producer.message_id(), "t", 1, publisher="p")
    )
    await bus.run_until_idle()
    root.end()
    rec.flush()
    process = next(s for s in sink.spans() if s.name == "process t")
    assert process.parent_span_id == root.context.span_id
    assert (
        process.links[0].span_id
        == t.SpanContext.from_traceparent(sent.headers["traceparent"]).span_id
    )


async def test_handlers_read_and_commit_through_the_ledger_and_caches(env: Env) -> None:
    @e.agent
    async def pricer(state: e.StateView, order: Any) -> e.Update:
        rate = state.cache("rates")["eur"]
        return e.Update({"price": order["qty"] * rate, "seen": state["base"]})

    flow = e.Choreography("prices", entry="orders").cache("rates", "none").on("orders", pricer)
    result = await env.choreographer().run(flow, {"qty": 3}, state={"base": 1, "eur": 2})
    assert result.state == {"base": 1, "eur": 2, "price": 6, "seen": 1}
    store = env.store()
    reads = store.sql(
        "SELECT agent, version, head_version, keys, via, cache FROM state_reads WHERE run_id = ? ORDER BY seq",
        [result.run_id],
    ).fetchall()
    assert reads == [
        ("pricer", 1, 1, ["eur"], "cache", "rates"),
        ("pricer", 1, 1, ["base"], "store", None),
    ]
    versions = store.sql(
        "SELECT version, base_version, kind, agent FROM state_versions WHERE run_id = ? ORDER BY version",
        [result.run_id],
    ).fetchall()
    assert versions == [(1, None, "initial", None), (2, 1, "commit", "pricer")]


async def test_a_payload_rejected_by_its_topic_contract_stops_at_the_boundary(env: Env) -> None:
    @e.agent
    async def scorer(state: e.StateView, value: Any, ctx: e.EventContext) -> e.Update:
        ctx.publish("audit", {"note": "scored"})
        return e.Update({"score": 0.2}, output={"confidence": 0.2})

    @e.agent
    async def consumer(state: e.StateView, value: Any) -> None:
        raise AssertionError("never reached")

    flow = (
        e.Choreography("gate", entry="in", policy=e.DeliveryPolicy(max_attempts=3))
        .on("in", scorer, emits="scored", publishes=["audit"])
        .on("scored", consumer)
        .topic("scored", contract=e.Contract("confident", rules=["confidence >= 0.7"]))
    )
    result = await env.choreographer().run(flow, {})
    assert result.status == "failed"
    assert isinstance(result.error, e.ContractViolation)
    assert result.state == {}  # nothing committed
    assert [(d.message.topic, d.attempts, d.reason) for d in result.dead_letters] == [
        ("in", 1, "rejected")
    ]
    store = env.store()
    assert [r for r in message_rows(store, result.run_id) if r[0] != "deliver"] == [
        ("publish", "in", "user", None, None, None, None),
        ("ack", "in", "scorer", "scorer", 1, "dead_lettered", None),
    ]
    check = store.sql(
        "SELECT attributes FROM span_events WHERE trace_id = ? AND name = ?",
        [result.run_id, c.EV_CONTRACT_CHECK],
    ).fetchall()
    assert [
        (x[c.CONTRACT_OUTCOME], x[c.CONTRACT_TARGET]) for x in (orjson.loads(r[0]) for r in check)
    ] == [("rejected", "scored")]
    assert [f.kind for f in detect(store, result.run_id)] == ["contract_violation"]


async def test_a_failing_handler_is_retried_by_redelivery_then_dead_lettered(env: Env) -> None:
    attempts: list[int] = []

    @e.agent
    async def flaky(state: e.StateView, value: Any, ctx: e.AgentContext) -> None:
        attempts.append(ctx.attempt)
        raise ConnectionError("upstream down")

    policy = e.DeliveryPolicy(max_attempts=3, redelivery_delay=1.0)
    result = await env.choreographer().run(
        e.Choreography("f", entry="t", policy=policy).on("t", flaky), 1
    )
    assert attempts == [1, 2, 3]
    assert result.status == "failed" and isinstance(result.error, e.AgentError)
    rows = [r for r in message_rows(env.store(), result.run_id) if r[0] == "ack"]
    assert [(r[4], r[5]) for r in rows] == [(1, "nacked"), (2, "nacked"), (3, "dead_lettered")]
    assert [s.outcome for s in result.steps] == ["failed", "failed", "failed"]


async def test_unsettled_messages_and_done_when_fail_the_run(env: Env) -> None:
    @e.agent
    async def quiet(state: e.StateView, value: Any) -> None:
        return None

    flow = e.Choreography("q", entry="t", done_when=lambda s: "answer" in s).on("t", quiet)
    result = await env.choreographer().run(flow, 1)
    assert result.status == "failed"
    assert "before the run was done" in str(result.error)


# -- faults at the consumer ------------------------------------------------------------------------


async def test_lost_ack_makes_a_non_idempotent_consumer_apply_twice(env: Env) -> None:
    faults = e.Faults([e.FaultRule.lose_ack(group="b", attempt=1)])
    policy = e.DeliveryPolicy(ack_timeout=30.0)
    log: list[str] = []
    result = await env.choreographer(faults=faults).run(pipeline(policy=policy, log=log), {"n": 1})
    assert log == ["b:1", "b:2"]
    assert result.state["count"] == 2
    store = env.store()
    findings = detect(store, result.run_id)
    assert [(f.kind, f.severity) for f in findings] == [("duplicate_delivery", "error")]
    assert findings[0].evidence["effect_applied_twice"] is True


async def test_lost_ack_with_an_idempotent_consumer_applies_once(env: Env) -> None:
    faults = e.Faults([e.FaultRule.lose_ack(group="b", attempt=1)])
    policy = e.DeliveryPolicy(ack_timeout=30.0)
    log: list[str] = []
    result = await env.choreographer(faults=faults).run(
        pipeline(idempotent=True, policy=policy, log=log), {"n": 1}
    )
    assert log == ["b:1"]
    assert result.state["count"] == 1
    rows = [r for r in message_rows(env.store(), result.run_id) if r[1] == "t2" and r[0] == "ack"]
    assert [(r[4], r[5]) for r in rows] == [(1, "acked"), (2, "duplicate")]
    assert detect(env.store(), result.run_id) == []


async def test_a_crash_after_processing_leaves_its_outbox_to_the_idempotent_redelivery(
    env: Env,
) -> None:
    faults = e.Faults([e.FaultRule.crash(group="b", attempt=1)])
    policy = e.DeliveryPolicy(ack_timeout=30.0)
    log: list[str] = []
    result = await env.choreographer(faults=faults).run(
        pipeline(idempotent=True, policy=policy, log=log), {"n": 1}
    )
    # b's effect stands once; its event, lost with the crash, goes out with the redelivery.
    assert log == ["b:1"]
    assert result.status == "completed"
    assert result.state == {"a": 1, "count": 1, "c": 20}
    store = env.store()
    t2 = [
        r for r in message_rows(store, result.run_id) if r[1] in ("t2", "t3") and r[0] != "deliver"
    ]
    assert t2 == [
        ("publish", "t2", "a", None, None, None, None),
        ("publish", "t3", "b", None, None, None, None),  # sent by the redelivery, after the crash
        ("ack", "t2", "b", "b", 2, "duplicate", None),
        ("ack", "t3", "c", "c", 1, "acked", None),
    ]
    crashed = [s for s in env.spans("process t2") if s.status.code == 2]
    assert len(crashed) == 1
    assert [ev["exception.type"] for ev in events(crashed[0], "exception")] == ["ConsumerCrashed"]
    assert events(crashed[0], c.EV_MESSAGE_ACK) == []


async def test_a_crash_after_processing_makes_a_plain_consumer_apply_twice(env: Env) -> None:
    faults = e.Faults([e.FaultRule.crash(group="b", attempt=1)])
    log: list[str] = []
    result = await env.choreographer(faults=faults).run(
        pipeline(policy=e.DeliveryPolicy(ack_timeout=30.0), log=log), {"n": 1}
    )
    assert log == ["b:1", "b:2"]
    assert result.state["count"] == 2
    assert result.published == 3  # the crashed attempt published nothing


async def test_a_crash_while_processing_commits_nothing_and_without_a_timeout_is_lost(
    env: Env,
) -> None:
    faults = e.Faults([e.FaultRule.crash(during=True, group="b")])
    result = await env.choreographer(faults=faults).run(pipeline(), {"n": 1})
    assert result.status == "failed"
    assert "count" not in result.state
    assert [(u.message.topic, u.group, u.state) for u in result.unsettled] == [
        ("t2", "b", "in_flight")
    ]
    assert isinstance(result.error, e.DeliveryFailed)
    assert [s.outcome for s in result.steps] == ["ok", "failed"]
    findings = detect(env.store(), result.run_id)
    assert [f.kind for f in findings] == ["lost_event"]
    assert findings[0].evidence["missing_subscribers"] == ["b"]


async def test_a_dropped_delivery_is_recorded_and_redelivered_after_the_timeout(env: Env) -> None:
    faults = e.Faults([e.FaultRule.drop(group="b", attempt=1)])
    result = await env.choreographer(faults=faults).run(
        pipeline(policy=e.DeliveryPolicy(ack_timeout=5.0)), {"n": 1}
    )
    assert result.status == "completed"
    rows = [
        r for r in message_rows(env.store(), result.run_id) if r[1] == "t2" and r[0] != "publish"
    ]
    assert rows == [
        ("deliver", "t2", "b", "b", 1, None, "drop"),
        ("ack", "t2", "b", "b", 1, "dropped", None),
        ("deliver", "t2", "b", "b", 2, None, None),
        ("ack", "t2", "b", "b", 2, "acked", None),
    ]


async def test_a_consumer_that_never_acks_is_dead_lettered_by_the_timeout(env: Env) -> None:
    faults = e.Faults([e.FaultRule.crash(during=True, group="b")])
    policy = e.DeliveryPolicy(max_attempts=2, ack_timeout=10.0)
    result = await env.choreographer(faults=faults).run(pipeline(policy=policy), {"n": 1})
    assert result.status == "failed"
    assert [(d.group, d.attempts, d.reason) for d in result.dead_letters] == [
        ("b", 2, "ack_timeout")
    ]
    rows = [r for r in message_rows(env.store(), result.run_id) if r[1] == "t2" and r[0] == "ack"]
    assert rows == [("ack", "t2", "b", "b", 2, "dead_lettered", None)]


async def test_duplicate_deliveries_reach_the_handler_twice_unless_idempotent(env: Env) -> None:
    for idempotent, expected in ((False, 2), (True, 1)):
        log: list[str] = []
        faults = e.Faults([e.FaultRule.duplicate(group="b")])
        result = await env.choreographer(faults=faults).run(
            pipeline(idempotent=idempotent, log=log), {"n": 1}
        )
        assert result.state["count"] == expected
        assert len(log) == expected


async def test_the_same_seed_records_the_same_run() -> None:
    from engine.testing import recorded

    def flow() -> e.Choreography:
        return pipeline(policy=e.DeliveryPolicy(ack_timeout=3.0, max_attempts=4))

    outs = []
    for _ in range(2):
        rec, sink, time = recorded(5)
        faults = e.Faults.chaos(9, drop=0.2, duplicate=0.2, delay=0.2, reorder=0.2, ack_lost=0.2)
        await e.Choreographer(rec, time=time, seed=5, faults=faults).run(flow(), {"n": 1})
        rec.flush()
        outs.append(b"".join(t.encode_json(r) for r in sink.requests))
    assert outs[0] == outs[1]


async def test_a_run_without_a_recorder_still_runs() -> None:
    result = await e.Choreographer(time=e.VirtualTime()).run(pipeline(), {"n": 2})
    assert result.status == "completed"
    assert result.state == {"a": 2, "count": 1, "c": 30}
    assert result.raise_for_status() is result


# -- the declared graph and validation ------------------------------------------------------------------


async def test_the_root_declares_subscriptions_and_publishes(env: Env) -> None:
    result = await env.choreographer().run(pipeline(), {"n": 1})
    root = next(s for s in env.spans("invoke_workflow"))
    declared = orjson.loads(attrs(root)[c.RUN_DECLARED_GRAPH])
    assert declared == {
        "agents": ["a", "b", "c"],
        "edges": [],
        "subscriptions": [["t1", "a"], ["t2", "b"], ["t3", "c"]],
        "publishes": [["user", "t1"], ["a", "t2"], ["b", "t3"]],
    }
    assert attrs(root)[c.RUN_PATTERN] == "choreography"
    assert attrs(root)[c.RUN_STATUS] == result.status


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: e.Choreography("x"), "entry topic"),
        (lambda: e.Choreography("x", entry="t"), "no subscriptions"),
        (
            lambda: e.Choreography("x", entry="t", saga=e.SagaPolicy(parallel=True)).on(
                "t", e.Agent("noop", lambda s, v: None)
            ),
            "parallel",
        ),
    ],
)
def test_choreographies_that_cannot_run_are_refused(build: Any, error: str) -> None:
    with pytest.raises(e.WorkflowError, match=error):
        build().validate()


def test_subscriptions_are_checked_as_they_are_declared() -> None:
    def step(state: Any, value: Any) -> None:
        return None

    flow = e.Choreography("x", entry="t").on("t", step)
    with pytest.raises(e.WorkflowError, match="twice"):
        flow.on("t", step)
    with pytest.raises(e.WorkflowError, match="compensations"):
        flow.on("a.compensate", step, group="other")
    flow.on("u", step)  # the same function again is the same agent
    with pytest.raises(e.WorkflowError, match="two different agents"):
        flow.on("v", e.Agent("step", lambda state, value: None))
