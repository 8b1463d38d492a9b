"""A run's span tree worked out on arrays is the tree the recursive SQL gives.

``Store.span_tree`` feeds the waterfall: every span in depth-first order (children
by start time, then id), its depth and the rows its subtree spans. Random runs with
ties in start time, missing parents, cycles flagged or not, are compared with the
SQL it replaces (kept as the answer for ids that are not lowercase hex), and a deep
chain shows why it was replaced.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer._store._derive import resolve_tree
from tracer._store._store import _SPAN_TREE_SQL
from tracer._store._tree import span_tree

from .helpers import spans_store

TID = "7" * 32


@st.composite
def _run(draw: Any) -> tuple[list[dict[str, Any]], bool]:
    n = draw(st.integers(1, 40))
    rows = []
    for i in range(n):
        j = draw(st.integers(-2, 9))  # mostly a span of the run: deep trees and cycles
        parent = "" if j == -2 else "f" * 16 if j == -1 else f"{draw(st.integers(1, n)):016x}"
        rows.append(
            {
                "trace_id": TID,
                "span_id": f"{i + 1:016x}",
                "parent_span_id": parent,
                "start_ns": draw(st.integers(0, 5)),  # ties broken by span id
                "agent": None,
                "kind": "INTERNAL",
                "service_name": None,
                "name": "step",
            }
        )
    return rows, draw(st.booleans())


def _sql(store: Any) -> Any:
    return store.arrow(_SPAN_TREE_SQL, {"run": TID})


@settings(max_examples=150, deadline=None)
@given(_run())
def test_the_arrays_give_the_sql_tree(case: tuple[list[dict[str, Any]], bool]) -> None:
    rows, flagged = case
    parents = {r["span_id"]: r["parent_span_id"] for r in rows}
    cycles = resolve_tree(parents, {})[1]
    # Cycles flagged as the derive phase flags them, or not at all (then both leave the
    # spans no root reaches out).
    store = spans_store(rows, {(TID, s): flagged and s in cycles for s in parents})
    tree = span_tree(store._cur(), TID)
    assert tree is not None
    assert tree.to_pylist() == _sql(store).to_pylist()
    if flagged:
        assert tree.num_rows == len(rows)  # every span exactly once


def test_a_deep_chain_costs_no_more_than_a_wide_run() -> None:
    # The SQL carries each span's whole path: 20,000 spans one under the other took it
    # seconds (and a hostile trace ten times deeper, minutes). The arrays take one pass per
    # level only for the subtree sizes.
    n = 20_000
    rows = [
        {
            "trace_id": TID,
            "span_id": f"{i + 1:016x}",
            "parent_span_id": f"{i:016x}" if i else "",
            "start_ns": i,
        }
        for i in range(n)
    ]
    store = spans_store(
        [{"agent": None, "kind": "INTERNAL", "service_name": None, "name": "s", **r} for r in rows],
        {(TID, r["span_id"]): False for r in rows},
    )
    tree = span_tree(store._cur(), TID)
    assert tree is not None
    assert tree.column("depth").to_pylist() == list(range(n))
    assert tree.column("descendants").to_pylist() == list(range(n - 1, -1, -1))


def test_ids_not_in_lowercase_hex_are_left_to_the_sql() -> None:
    for span, parent in (("0" * 15 + "A", ""), ("root", ""), ("0" * 16, "xyz")):
        rows = [
            {"trace_id": TID, "span_id": span, "parent_span_id": parent, "agent": None,
             "kind": "INTERNAL", "service_name": None, "name": "s"},
        ]  # fmt: skip
        store = spans_store(rows, {(TID, span): False})
        assert span_tree(store._cur(), TID) is None
        assert store.span_tree(TID).to_pylist() == _sql(store).to_pylist()
