"""The coordination graph: nodes, edges, outcomes and span ids per pattern; the declared overlay; metrics."""

from collections import Counter
from pathlib import Path

import pytest

import tracer as t
from tracer.analysis import CoordinationMetrics, coordination_graph, coordination_metrics
from tracer.testing import RunBuilder

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


def test_orchestrated_handoffs_with_retries_and_a_contract_rejection(store) -> None:
    decl = {"agents": ["intake", "scorer", "rater", "notifier"],
            "edges": [["intake", "scorer"], ["scorer", "rater"], ["rater", "notifier"]],
            "subscriptions": [], "publishes": []}  # fmt: skip
    with RunBuilder(store, declared=decl) as run:
        intake = run.step("intake")
        intake.end()
        s1 = run.step("scorer", from_=["intake"], outcome="failed")
        s1.end()
        s2 = run.step("scorer", from_=["intake"], attempt=2)
        s2.end()
        rater = run.step("rater", from_=["scorer"], outcome="rejected")
        rater.contract("Rating", target="notifier", outcome="rejected", payload={}, errors=["low"])
        rater.end()
    g = coordination_graph(store, run.run_id)
    assert g.graph["run_id"] == run.run_id and g.graph["has_declared"] and not g.graph["inferred"]
    e = g.edges["intake", "scorer", "handoff"]
    assert e["kind"] == "handoff" and e["count"] == 2 and e["outcomes"] == Counter(failed=1, ok=1)
    assert e["span_ids"] == [s1.span_id, s2.span_id] and e["declared"] and e["observed"]
    assert e["first_ns"] < e["last_ns"]
    # The rater ran fine on what it got; its output is what the contract stopped.
    assert g.edges["scorer", "rater", "handoff"]["outcomes"] == Counter(ok=1)
    stopped = g.edges["rater", "notifier", "handoff"]
    assert stopped["outcomes"] == Counter(rejected=1) and stopped["span_ids"] == [rater.span_id]
    assert g.nodes["scorer"]["kind"] == "agent" and g.nodes["scorer"]["steps"] == 2
    assert g.nodes["scorer"]["outcomes"] == Counter(failed=1, ok=1)
    assert g.nodes["notifier"]["declared"] and not g.nodes["notifier"]["observed"]


def test_choreographed_publish_deliver_duplicate_and_lost(store) -> None:
    decl = {"agents": ["shop", "billing", "audit"], "edges": [],
            "publishes": [["shop", "orders"]], "subscriptions": [["orders", "billing"], ["orders", "audit"]]}  # fmt: skip
    with RunBuilder(store, pattern="choreography", declared=decl) as run:
        m1 = run.publish("shop", "orders")
        d1 = run.process(m1, agent="billing")
        d1.end()
        d2 = run.process(m1, agent="billing", attempt=2)
        d2.end()
        a1 = run.process(m1, agent="audit", ack="nacked")
        a1.end()
        m2 = run.publish("shop", "orders")
        run.process(m2, agent="billing").end()
    g = coordination_graph(store, run.run_id)
    assert g.nodes["orders"]["kind"] == "topic" and g.nodes["orders"]["span_ids"] == [
        m1.span_id,
        m2.span_id,
    ]
    pub = g.edges["shop", "orders", "publish"]
    assert pub["count"] == 2 and pub["outcomes"] == Counter(ok=2) and pub["declared"]
    billing = g.edges["orders", "billing", "deliver"]
    assert billing["outcomes"] == Counter(ok=2, duplicate=1) and billing["groups"] == ("billing",)
    assert billing["span_ids"][:2] == [d1.span_id, d2.span_id]
    audit = g.edges["orders", "audit", "deliver"]
    # m1 reached audit, was nacked and never again: lost there; m2 never got there.
    assert audit["outcomes"] == Counter(lost=2) and audit["count"] == 2
    assert audit["span_ids"] == [a1.span_id, m2.span_id]


def test_compensate_edges_run_from_the_failure_to_the_undone(store) -> None:
    with RunBuilder(store, initial={"f": 0}) as run:
        with run.step("reserve") as s:
            s.commit({"f": 1})
        run.step("confirm", from_=["reserve"], outcome="failed").end()
        c = run.compensate("reserve")
        c.end()
    g = coordination_graph(store, run.run_id)
    e = g.edges["confirm", "reserve", "compensate"]
    assert e["outcomes"] == Counter(ok=1) and e["span_ids"] == [c.span_id] and not e["declared"]
    assert g.nodes["reserve"]["compensations"] == Counter(ok=1)


def test_hybrid_runs_have_both_kinds_of_traffic(store) -> None:
    with RunBuilder(store, pattern="hybrid") as run:
        run.step("planner").end()
        with run.step("writer", from_=["planner"]) as w:
            m = run.publish("writer", "drafts", parent=w)
        run.process(m, agent="editor").end()
    g = coordination_graph(store, run.run_id)
    assert {(u, v, k) for u, v, k in g.edges(keys=True)} == {
        ("planner", "writer", "handoff"), ("writer", "drafts", "publish"), ("drafts", "editor", "deliver"),
    }  # fmt: skip
    m = coordination_metrics(g)
    assert m == CoordinationMetrics(agents=3, topics=1, edges_used=3, edges_declared=0,
                                    agent_pairs_used=2, potential_pairs=3)  # fmt: skip
    assert m.pair_density == pytest.approx(2 / 3)
    assert g.graph["metrics"]["agent_pairs_used"] == 2


def test_declared_edges_never_used_are_in_the_graph_unobserved(store) -> None:
    decl = {
        "agents": ["a", "b", "c"],
        "edges": [["a", "b"], ["a", "c"]],
        "subscriptions": [],
        "publishes": [],
    }
    with RunBuilder(store, declared=decl) as run:
        run.step("a").end()
        run.step("b", from_=["a"]).end()
    g = coordination_graph(store, run.run_id)
    unused = g.edges["a", "c", "handoff"]
    assert unused["declared"] and not unused["observed"] and unused["count"] == 0
    assert unused["span_ids"] == [] and unused["first_ns"] is None
    m = coordination_metrics(g)
    assert (m.agents, m.edges_used, m.edges_declared, m.potential_pairs) == (2, 1, 2, 1)


def test_metrics_of_an_empty_run(store) -> None:
    with RunBuilder(store) as run:
        pass
    m = coordination_metrics(coordination_graph(store, run.run_id))
    assert m == CoordinationMetrics(0, 0, 0, 0, 0, 0) and m.pair_density == 0.0


@pytest.mark.parametrize(
    ("fixture", "edges"),
    [
        ("pydantic_ai", {("coordinator", "researcher")}),  # a delegation: nested agent spans
        ("openai_agents", {("Triage agent", "Billing agent")}),  # a recorded handoff span
        ("langgraph_openinference", {  # graph nodes one after another
            ("supervisor", "researcher"), ("researcher", "tools"), ("tools", "researcher"),
            ("researcher", "supervisor"), ("supervisor", "writer"), ("writer", "supervisor"),
        }),
    ],
)  # fmt: skip
def test_foreign_traces_get_handoffs_inferred_from_their_spans(
    store, fixture: str, edges: set
) -> None:
    t.import_file(store, FOREIGN / f"{fixture}.jsonl")
    for run in store.runs():
        g = coordination_graph(store, run.run_id)
        assert g.graph["inferred"] and not g.graph["has_declared"]
        assert {(u, v) for u, v, k in g.edges(keys=True)} == edges
        assert all(d["inferred"] and d["kind"] == "handoff" for _, _, d in g.edges(data=True))
