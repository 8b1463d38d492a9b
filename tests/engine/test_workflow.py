"""Workflows: building, validation errors that say what is wrong, the declared graph."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import engine as e


def ag(name: str) -> e.Agent:
    return e.Agent(name, lambda state, value: value)


A, B, C, D = ag("a"), ag("b"), ag("c"), ag("d")


def test_chain_and_declared_graph() -> None:
    wf = e.WorkflowBuilder("w", ref="pkg.flows.w").chain(A, B, C).build()
    assert wf.start == "a"
    assert wf.successors == {"a": ("b",), "b": ("c",), "c": ()}
    assert wf.declared_graph() == {
        "agents": ["a", "b", "c"],
        "edges": [["a", "b"], ["b", "c"]],
        "subscriptions": [],
        "publishes": [],
    }
    json.loads(wf.declared)


def build(fn: Any) -> e.Workflow:
    return fn(e.WorkflowBuilder("w")).build()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: b, "no agents"),
        (lambda b: b.add(A, B).edge("a", "bb"), "edge a → bb: no agent 'bb'; did you mean 'b'"),
        (lambda b: b.chain(A, B).add(C), "several entry agents \\(a, c\\)"),
        (lambda b: b.chain(A, B).chain(C, D).edge(D, C), "unreachable from 'a': c, d"),
        (lambda b: b.chain(A, B).chain(C, D), "several entry agents \\(a, c\\)"),
        (lambda b: b.chain(A, B, C).edge(C, B), "cycle b → c → b has no router edge"),
        (lambda b: b.chain(A, B, A), "no entry agent"),
        (
            lambda b: b.fan_out(A, [B, C]).edge(B, D).edge(C, D),
            "'d' has 2 incoming edges \\(b, c\\).*merge",
        ),
        (lambda b: b.chain(A, B).merge(B, lambda d: d), "not a join"),
        (lambda b: b.add(A).edge(A, A), "loop without a router"),
        (lambda b: b.chain(A, B).start("x"), "start: no agent 'x'"),
    ],
)
def test_validation_errors(make: Any, message: str) -> None:
    with pytest.raises(e.WorkflowError, match=message) as exc:
        build(make)
    assert exc.value.workflow == "w"


def test_two_agents_with_one_name_are_refused() -> None:
    with pytest.raises(e.WorkflowError, match="two different agents are named 'a'"):
        e.WorkflowBuilder("w").add(A, ag("a"))


def test_bad_ref_and_duplicate_edge() -> None:
    # A run records a name, never an import path: replay must not be handed one to import.
    for bad in ("not a ref", "pkg.mod:factory"):
        with pytest.raises(e.WorkflowError, match=re.escape(f"not {bad!r}")):
            e.WorkflowBuilder("w", ref=bad).add(A).build()
    with pytest.raises(e.WorkflowError, match="declared twice"):
        e.WorkflowBuilder("w").chain(A, B).edge(A, B)


def test_a_cycle_through_a_router_is_allowed() -> None:
    wf = e.WorkflowBuilder("w").chain(A, B).route(B, lambda s, o: "again", {"again": A, "done": C})
    built = wf.start(A).build()  # a's one incoming edge is the loop: it is not a join
    assert set(built.successors["b"]) == {"a", "c"}
    assert built.routes["b"].labels == {"again": "a", "done": "c"}


def test_several_entries_with_an_explicit_start() -> None:
    wf = e.WorkflowBuilder("w").chain(A, B).edge(C, B).merge(B, lambda d: d).start(A)
    with pytest.raises(e.WorkflowError, match="unreachable from 'a': c"):
        wf.build()


def test_convenience_chain() -> None:
    wf = e.chain("w", A, B)
    assert list(wf.agents) == ["a", "b"]
