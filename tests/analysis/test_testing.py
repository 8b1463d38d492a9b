"""tracer.testing.RunBuilder records what the conventions say, so tests built on it mean something."""

import tracer as t
from tracer import conventions as c
from tracer.testing import RunBuilder


def test_runs_are_repeatable_and_their_chain_verifies() -> None:
    ids = []
    for _ in range(2):
        with t.Store(":memory:") as s:
            with RunBuilder(s, initial={"a": 1}, seed=5) as run, run.step("w") as st:
                st.read(["a"])
                st.commit({"a": 2, "b": [1]})
                st.commit({"b": [1, 2]}, remove=["a"])
            ids.append((run.run_id, [v.hash for v in s.state_versions(run.run_id)]))
            (result,) = s.verify(run.run_id)
            assert result.ok and result.versions == 3
            assert s.state_at(run.run_id, 3) == {"b": [1, 2]}
            assert [v.keys for v in s.state_versions(run.run_id)] == [
                ("a",),
                ("a", "b"),
                ("a", "b"),
            ]
    assert ids[0] == ids[1]


def test_steps_carry_the_conventions(store) -> None:
    decl = {"agents": ["a"], "edges": []}
    with RunBuilder(store, declared=decl, scenario="x") as run:
        run.step("a", from_=["b"], attempt=2, outcome="breaker_open").end()
        run.status = "failed"
    r = store.run(run.run_id)
    assert (r.pattern, r.status, r.scenario) == ("orchestration", "failed", "x")
    (step,) = [s for s in store.spans(run.run_id) if s.operation == c.OP_INVOKE_AGENT]
    a = step.attributes
    assert (
        a[c.AGENT_FROM] == ["b"] and a[c.AGENT_ATTEMPT] == 2 and a[c.STEP_OUTCOME] == "breaker_open"
    )
    assert a[c.BREAKER_REJECTED] is True and step.status_code == "ERROR"
    assert t.canonical_json(decl) == r.attributes[c.RUN_DECLARED_GRAPH]


def test_the_bus_records_sends_deliveries_and_acks(store) -> None:
    with RunBuilder(store, pattern="choreography") as run:
        m = run.publish("p", "orders", key="k1")
        d = run.process(m, agent="c", group="g", consumer="c-1", attempt=3, fault="slow")
        d.end()
        run.process(m, agent="c", ack=None).end()
    rows = [
        (x.event, x.message_id, x.consumer_group, x.consumer, x.attempt, x.outcome, x.fault)
        for x in store.messages(run.run_id)
    ]
    assert rows == [
        ("publish", "m1", None, None, None, None, None),
        ("deliver", "m1", "g", "c-1", 3, None, "slow"),
        ("ack", "m1", "g", "c-1", 3, "acked", None),
        ("deliver", "m1", "c", "c", 1, None, None),
    ]  # fmt: skip
    (link,) = store.links(run.run_id, d.span_id)
    assert link.linked_span_id == m.span_id


def test_an_imported_run_looks_foreign(store) -> None:
    with RunBuilder(store, imported=True) as run:
        run.step("a").end()
    r = store.run(run.run_id)
    # Its root leaves the status unset, and a run shows what its root says, as viewers do.
    assert r.pattern == "imported" and r.status == "unset"
    assert not any(
        k.startswith("agentrace.") for s in store.spans(run.run_id) for k in s.attributes
    )
