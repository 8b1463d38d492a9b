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
        b = run.step("b", from_=["a"])
        b.end()
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
    # c was reached, but from a: the declared b → c went unused.
    assert [f.message for f in found(store, run.run_id, "unused_edge")] == [
        "declared handoff b → c was never used"
    ]


def test_declarations_never_used_in_a_completed_run(store) -> None:
    with RunBuilder(store, pattern="hybrid", declared=DECL) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
    unused = found(store, run.run_id, "unused_edge")
    assert {(f.evidence["edge"], f.evidence["from"], f.evidence["to"]) for f in unused} == {
        ("handoff", "b", "c"), ("publish", "c", "done"), ("deliver", "done", "a"),
    }  # fmt: skip
    assert all(f.severity == "info" for f in unused)
    assert any(f.message == "declared subscription done → a was never used" for f in unused)


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
