"""The CrewAI, smolagents and RabbitMQ fixtures: both encodings hold the same spans, and they
import whole."""

from __future__ import annotations

import pytest

import tracer as t

from .helpers import FOREIGN, counts, span_rows

# fixture -> (spans, traces)
SHAPES = {
    "crewai": (7, 1),
    "smolagents": (11, 1),
    "rabbitmq_duplicate": (7, 1),
    "rabbitmq_lost": (7, 1),
    "rabbitmq_control": (5, 1),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_pb_and_the_jsonl_import_to_the_same_spans(name: str) -> None:
    stores = {}
    for ext in ("pb", "jsonl"):
        store = t.Store(":memory:")
        t.import_file(store, FOREIGN / f"{name}.{ext}")
        stores[ext] = store
    n_spans, n_traces = SHAPES[name]
    assert counts(stores["pb"])["spans"] == n_spans
    assert len(stores["pb"].runs()) == n_traces
    assert span_rows(stores["pb"]) == span_rows(stores["jsonl"])


def test_the_smolagents_manager_calls_its_managed_agent_from_a_step() -> None:
    store = t.Store(":memory:")
    t.import_file(store, FOREIGN / "smolagents.jsonl")
    rows = store.sql(
        """SELECT child.name, parent.name FROM spans child JOIN spans parent
           ON child.parent_span_id = parent.span_id AND child.trace_id = parent.trace_id
           WHERE child.attributes->>'$."openinference.span.kind"' = 'AGENT'"""
    ).fetchall()
    assert rows == [("web_researcher.run", "Step 1")]


def test_the_crew_has_two_roles_and_one_tool_call() -> None:
    store = t.Store(":memory:")
    t.import_file(store, FOREIGN / "crewai.jsonl")
    kinds = store.sql(
        """SELECT attributes->>'$."openinference.span.kind"' AS k, count(*) FROM spans
           GROUP BY k ORDER BY k"""
    ).fetchall()
    assert kinds == [("AGENT", 2), ("CHAIN", 1), ("LLM", 3), ("TOOL", 1)]
    roles = store.sql(
        """SELECT attributes->>'$."graph.node.id"' FROM spans
           WHERE attributes->>'$."openinference.span.kind"' = 'AGENT' ORDER BY start_ns"""
    ).fetchall()
    assert roles == [("Market Analyst",), ("Report Writer",)]
