"""undeclared_edge and unused_edge."""

import tracer as t
from tracer.analysis import detect
from tracer.testing import RunBuilder

DECL = {"agents": ["a", "b", "c"], "edges": [["a", "b"], ["b", "c"]],
        "publishes": [["c", "done"]], "subscriptions": [["done", "a"]]}  # fmt: skip


def found(store: t.Store, run_id: str, kind: str) -> list[t.Finding]:
    return detect(store, run_id, kinds=[kind])


def test_traffic_the_declared_graph_does_not_allow(store) -> None:
    with RunBuilder(store, pattern="hybrid", declared=DECL) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
        skip = run.step("c", from_=["a"])  # a → c is not declared
        skip.end()
        m = run.publish("c", "done")
        run.process(m, agent="a").end()
        leak = run.publish("c", "audit-log")  # nor is the topic
    undeclared = found(store, run.run_id, "undeclared_edge")
    assert [(f.evidence["edge"], f.evidence["from"], f.evidence["to"]) for f in undeclared] == [
        ("handoff", "a", "c"), ("publish", "c", "audit-log"),
    ]  # fmt: skip
    handoff, publish = undeclared
    assert (
        handoff.severity == "warning"
        and handoff.agents == ("a", "c")
        and handoff.span_ids == (skip.span_id,)
    )
    assert publish.agents == ("c",) and publish.span_ids == (leak.span_id,)
    assert handoff.evidence["count"] == 1 and handoff.evidence["outcomes"] == {"ok": 1}
    # b and c both ran, yet c got its input from a: the declared b → c was gone around.
    (unused,) = found(store, run.run_id, "unused_edge")
    assert unused.severity == "info" and unused.agents == ("b", "c")
    assert unused.message == "declared handoff b → c was never used, though both ends were active"


def test_declarations_a_run_never_reached_are_not_unused(store) -> None:
    # A router's branch not taken (c never ran), a topic that stayed silent.
    with RunBuilder(store, pattern="hybrid", declared=DECL) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
    assert found(store, run.run_id, "unused_edge") == []


def test_a_subscription_gone_around_is_a_lost_event_not_an_unused_edge(store) -> None:
    with RunBuilder(store, pattern="hybrid", declared=DECL) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
        run.step("c", from_=["b"]).end()
        m = run.publish("c", "done")
        run.process(m, agent="b").end()  # "done" reached b, not a, its declared subscriber
    assert found(store, run.run_id, "unused_edge") == []
    assert [f.evidence["missing_subscribers"] for f in found(store, run.run_id, "lost_event")] == [
        ["a"]
    ]
    assert [f.evidence["to"] for f in found(store, run.run_id, "undeclared_edge")] == ["b"]


def test_a_run_that_stopped_early_says_nothing_about_unused_edges(store) -> None:
    with RunBuilder(store, declared=DECL) as run:
        run.step("a", outcome="failed").end()
        run.status = "failed"
    assert found(store, run.run_id, "unused_edge") == []


def test_no_declared_graph_no_edge_findings(store) -> None:
    with RunBuilder(store) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
    assert found(store, run.run_id, "undeclared_edge") == []
    assert found(store, run.run_id, "unused_edge") == []


def test_compensations_are_never_undeclared(store) -> None:
    with RunBuilder(store, declared={"agents": ["a", "b"], "edges": [["a", "b"]]}) as run:
        with run.step("a") as s:
            s.commit({"x": 1})
        run.step("b", from_=["a"], outcome="failed").end()
        run.compensate("a").end()
        run.status = "compensated"
    assert found(store, run.run_id, "undeclared_edge") == []
