"""Re-deriving stored traces on arrays gives the rows re-deriving them span by span gives.

A trace cut across a file's chunks is re-derived once after its last chunk
(``rederive_stored(..., bulk=True)``): agents passed down from the nearest ancestor
that has one, and the spans that are their own ancestor. Here random traces, with
cycles, missing parents and agents stored or not, are written to two stores alike;
one is re-derived by the reference (Python, per trace), the other on arrays, and
every span's agent and cycle flag and every message's agent must agree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import tracer as t
from tracer._store._derive import _rederive_arrays, rederive_stored, resolve_tree

from .helpers import spans_store

AGENTS = ("planner", "coder", "critic")


@st.composite
def _traces(draw: Any) -> list[dict[str, Any]]:
    """Span rows of 1 to 3 traces: parents among the trace's spans (cycles included), a
    root, or a span that never arrived; a stored agent or none; now and then a
    producer span and a stored cycle flag that is wrong."""
    rows = []
    for trace in range(draw(st.integers(1, 3))):
        tid = f"{trace + 1:032x}"
        n = draw(st.integers(1, 24))
        for i in range(n):
            # Mostly a span of the trace, so cycles of several spans and spans under
            # them are common; else a root, or a parent that never arrived.
            j = draw(st.integers(-2, 7))
            parent = "" if j == -2 else "f" * 16 if j == -1 else f"{draw(st.integers(1, n)):016x}"
            rows.append(
                {
                    "trace_id": tid,
                    "span_id": f"{i + 1:016x}",
                    "parent_span_id": parent,
                    "agent": draw(st.sampled_from((None, None, *AGENTS))),
                    "kind": draw(st.sampled_from(("INTERNAL",) * 12 + ("PRODUCER",))),
                    "service_name": draw(st.sampled_from(("billing", None))),
                    "name": draw(st.sampled_from(("tool call", "invoke_agent coder"))),
                }
            )
    return rows


def _rows(store: t.Store) -> list[Any]:
    return [
        store.sql("SELECT trace_id, span_id, agent, cycle FROM spans ORDER BY ALL").fetchall(),
        store.sql("SELECT run_id, span_id, agent FROM messages ORDER BY ALL").fetchall(),
    ]


def _true_cycles(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for tid in {r["trace_id"] for r in rows}:
        parents = {r["span_id"]: r["parent_span_id"] for r in rows if r["trace_id"] == tid}
        out |= {(tid, s) for s in resolve_tree(parents, {})[1]}
    return out


@settings(max_examples=60, deadline=None)
@given(_traces(), st.booleans())
def test_arrays_give_the_rows_of_the_reference(rows: list[dict[str, Any]], wrong: bool) -> None:
    cycles = _true_cycles(rows)
    keys = [(r["trace_id"], r["span_id"]) for r in rows]
    # Flags as the chunks left them: right, or (a cycle closed across chunks) all unset.
    flags = {k: (k in cycles and not wrong) for k in keys}
    ids = sorted({r["trace_id"] for r in rows})
    reference, arrays = spans_store(rows, flags), spans_store(rows, flags)
    rederive_stored(reference._cur(), ids)
    settled = _rederive_arrays(arrays._cur(), ids)
    # The arrays settle every trace whose cycles its flags record and that has no producer
    # or consumer span that may hold its service as its agent; the rest is left to the
    # reference, untouched.
    service_held = any(
        r["kind"] == "PRODUCER" and (r["agent"] is None or r["service_name"] is None) for r in rows
    )
    simple = not service_held and not (wrong and cycles)
    assert settled == simple
    if not settled:
        rederive_stored(arrays._cur(), ids)
    assert _rows(arrays) == _rows(reference)
    # And through the switch the import uses.
    both = spans_store(rows, flags)
    rederive_stored(both._cur(), ids, bulk=True)
    assert _rows(both) == _rows(reference)


def test_a_long_chain_takes_its_agent_from_the_top() -> None:
    # 5,000 spans one under the other: the doubling passes must reach the top (a pass too
    # few leaves the deepest spans without the agent).
    n = 5_000
    rows = [
        {
            "trace_id": "a" * 32,
            "span_id": f"{i + 1:016x}",
            "parent_span_id": f"{i:016x}" if i else "",
            "agent": "planner" if i == 0 else None,
            "kind": "INTERNAL",
            "service_name": None,
            "name": "step",
        }
        for i in range(n)
    ]
    store = spans_store(rows, {("a" * 32, r["span_id"]): False for r in rows})
    assert _rederive_arrays(store._cur(), ["a" * 32])
    assert store.sql("SELECT DISTINCT agent FROM spans").fetchall() == [("planner",)]


def test_a_span_on_a_cycle_keeps_only_its_own_agent() -> None:
    # a and b are each other's parent; c hangs under b. The planner of a does not pass
    # around the cycle to b, nor through b to c.
    tid = "1" * 32
    spans = {"a": ("b", "planner"), "b": ("a", None), "c": ("b", None), "d": ("", "coder")}
    rows = [
        {
            "trace_id": tid,
            "span_id": s * 16,
            "parent_span_id": p * 16,
            "agent": agent,
            "kind": "INTERNAL",
            "service_name": None,
            "name": "step",
        }
        for s, (p, agent) in spans.items()
    ]
    store = spans_store(rows, {(tid, s * 16): s in "ab" for s in spans})
    assert _rederive_arrays(store._cur(), [tid])
    assert _rows(store)[0] == [
        (tid, "a" * 16, "planner", True),
        (tid, "b" * 16, None, True),
        (tid, "c" * 16, None, False),
        (tid, "d" * 16, "coder", False),
    ]


def test_ids_not_in_lowercase_hex_are_left_to_the_reference() -> None:
    # Uppercase hex reads as the same number as lowercase, and other ids as none: either
    # could join a span to the wrong parent, so the arrays leave such traces alone.
    for tid, parent, child in (
        ("A" * 32, "0" * 15 + "A", "0" * 15 + "a"),
        ("run-7", "root", "step"),
    ):
        rows = [
            {
                "trace_id": tid,
                "span_id": sid,
                "parent_span_id": pid,
                "agent": agent,
                "kind": "INTERNAL",
                "service_name": None,
                "name": "step",
            }
            for sid, pid, agent in ((parent, "", "planner"), (child, parent, None))
        ]
        flags = {(tid, r["span_id"]): False for r in rows}
        arrays, reference = spans_store(rows, flags), spans_store(rows, flags)
        assert not _rederive_arrays(arrays._cur(), [tid])
        rederive_stored(arrays._cur(), [tid], bulk=True)
        rederive_stored(reference._cur(), [tid])
        assert _rows(arrays) == _rows(reference)
        assert _rows(arrays)[0][1][2] == "planner"  # the child, under its parent
