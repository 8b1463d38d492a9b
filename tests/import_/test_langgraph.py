"""LangGraph state becomes stepable state versions: from checkpoint dumps and from traces."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import orjson
import pytest

import tracer as t
from tracer import conventions as c

from .helpers import FOREIGN, counts

HISTORY = FOREIGN / "langgraph_state_history.json"


def _chronological(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(doc["snapshots"], key=lambda s: s["created_at"])


def _version_spans(store: t.Store, run_id: str) -> dict[int, t.Span]:
    spans = {sp.span_id: sp for sp in store.spans(run_id)}
    return {v.version: spans[v.span_id] for v in store.state_versions(run_id)}


def test_a_checkpoint_dump_becomes_versions_in_chronological_order() -> None:
    doc = json.loads(HISTORY.read_text())
    store = t.Store(":memory:")
    result = t.import_file(store, HISTORY)
    run_id = t.run_id_for_thread(doc["thread_id"])
    snaps = _chronological(doc)
    assert result.versions == len(snaps) == len(store.state_versions(run_id))
    run = store.run(run_id)
    assert run.workflow == doc["graph"]
    for k, snap in enumerate(snaps, start=1):
        assert store.state_at(run_id, k) == snap["values"], f"version {k}"
    versions = store.state_versions(run_id)
    assert [v.committed_ns for v in versions] == sorted(v.committed_ns for v in versions)
    assert [v.source for v in versions] == [f"langgraph:{s['metadata']['source']}" for s in snaps]
    spans = _version_spans(store, run_id)
    assert [spans[v.version].attributes[c.AGENT_STEP] for v in versions] == [
        s["metadata"]["step"] for s in snaps
    ]
    assert [spans[v.version].attributes["langgraph.checkpoint.id"] for v in versions] == [
        s["config"]["configurable"]["checkpoint_id"] for s in snaps
    ]
    # Who wrote each version: the tasks of the checkpoint before it (bookkeeping and the
    # human update have no agent).
    expected_agents = [None] + [
        (lambda names: names[0] if len(names) == 1 and not names[0].startswith("__") else None)(
            [task["name"] for task in prev["tasks"]]
        )
        for prev in snaps[:-1]
    ]
    assert [v.agent for v in versions] == expected_agents
    assert {"plan", "research", "write", "review"} <= set(run.agents)
    assert [v.kind for v in versions] == ["initial"] + ["commit"] * (len(snaps) - 1)
    assert store.verify(run_id)[0].ok


def test_reimport_is_idempotent_and_a_grown_dump_adds_only_the_new_versions(tmp_path: Path) -> None:
    doc = json.loads(HISTORY.read_text())
    newest_first = doc["snapshots"]
    older = dict(doc, snapshots=newest_first[1:])
    (tmp_path / "older.json").write_text(json.dumps(older))
    store = t.Store(tmp_path / "s.duckdb")
    first = t.import_file(store, tmp_path / "older.json")
    assert first.versions == len(newest_first) - 1
    before = counts(store)
    assert t.import_file(store, tmp_path / "older.json").spans == 0
    assert counts(store) == before
    grown = t.import_file(store, HISTORY)
    assert grown.versions == 1
    run_id = t.run_id_for_thread(doc["thread_id"])
    assert store.state_at(run_id, len(newest_first)) == newest_first[0]["values"]
    assert store.verify(run_id)[0].ok


# -- a real LangGraph run, dumped here ---------------------------------------------------------


class _State(TypedDict, total=False):
    topic: str
    notes: Annotated[list[str], operator.add]
    score: float


def _graph() -> Any:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    def draft(state: _State) -> dict[str, Any]:
        return {"notes": [f"draft about {state['topic']}"], "score": 0.4}

    def review(state: _State) -> dict[str, Any]:
        return {"notes": ["reviewed"], "score": state["score"] + 0.5}

    g = StateGraph(_State)
    g.add_node("draft", draft)
    g.add_node("review", review)
    g.add_edge(START, "draft")
    g.add_edge("draft", "review")
    g.add_edge("review", END)
    return g.compile(checkpointer=InMemorySaver(), name="tiny")


def _snapshot_dict(snap: Any) -> dict[str, Any]:
    return {
        "values": dict(snap.values),
        "next": list(snap.next),
        "config": snap.config,
        "metadata": dict(snap.metadata or {}),
        "created_at": snap.created_at,
        "parent_config": snap.parent_config,
        "tasks": [
            {"id": tk.id, "name": tk.name, "result": tk.result, "error": None} for tk in snap.tasks
        ],
    }


def test_a_live_langgraph_history_with_time_travel(tmp_path: Path) -> None:
    graph = _graph()
    config = {"configurable": {"thread_id": "t-live"}}
    graph.invoke({"topic": "otel", "notes": []}, config)
    history = list(graph.get_state_history(config))
    after_draft = next(s for s in history if s.next == ("review",))
    # Time travel: change the state as it was after "draft"; LangGraph forks from there.
    graph.update_state(after_draft.config, {"score": 0.9})
    history = list(graph.get_state_history(config))
    dump = [_snapshot_dict(s) for s in history]
    path = tmp_path / "history.json"
    path.write_text(json.dumps(dump, default=str))
    store = t.Store(":memory:")
    assert t.detect_format(path) == "langgraph"
    t.import_file(store, path)
    run_id = t.run_id_for_thread("t-live")
    versions = store.state_versions(run_id)
    ordered = sorted(history, key=lambda s: s.created_at)
    assert len(versions) == len(ordered)
    for v, snap in zip(versions, ordered, strict=True):
        assert store.state_at(run_id, v.version) == dict(snap.values)
    (fork,) = [v for v in versions if v.kind == "fork"]
    number = {s.config["configurable"]["checkpoint_id"]: i for i, s in enumerate(ordered, start=1)}
    assert fork.base_version == number[after_draft.config["configurable"]["checkpoint_id"]]
    assert fork.parent_version == fork.version - 1 and fork.base_version != fork.parent_version
    assert store.state_at(run_id, fork.version)["score"] == 0.9
    assert store.verify(run_id)[0].ok
    # The StateSnapshot tuples as json.dumps writes them (lists in field order) import alike.
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps([list(s) for s in history], default=str))
    other = t.Store(":memory:")
    t.import_file(other, raw)
    assert [v.hash for v in other.state_versions(run_id)] == [v.hash for v in versions]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"snapshots": []}, "holds no snapshot"),
        (
            {"snapshots": [{"values": {}, "config": {"configurable": {"thread_id": "x"}}}]},
            "snapshot 1 has no config.configurable.checkpoint_id",
        ),
        (
            {"snapshots": [{"values": {}, "config": {"configurable": {"checkpoint_id": "c"}}}]},
            "snapshot 1 has no config.configurable.thread_id",
        ),
        ([{"values": {}}], "snapshot 1 is not a LangGraph StateSnapshot"),
    ],
)
def test_bad_dumps_are_refused_whole(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    store = t.Store(":memory:")
    with pytest.raises(t.DecodeError, match=message) as err:
        t.import_file(store, path, fmt="langgraph")
    assert str(path) in str(err.value)
    assert counts(store)["spans"] == 0


# -- state rebuilt from an OpenInference trace -------------------------------------------------


@pytest.mark.parametrize("suffix", ["pb", "jsonl"])
def test_a_langgraph_trace_gets_its_state_rebuilt_from_node_outputs(suffix: str) -> None:
    store = t.Store(":memory:")
    t.import_file(store, FOREIGN / f"langgraph_openinference.{suffix}")
    runs = store.runs()
    assert len(runs) == 2
    for run in runs:
        spans = store.spans(run.run_id)
        root = next(
            sp
            for sp in spans
            if not sp.parent_span_id and sp.scope_name.startswith("openinference")
        )
        nodes = [
            sp
            for sp in spans
            if sp.operation == c.OP_INVOKE_AGENT and sp.parent_span_id == root.span_id
        ]
        versions = store.state_versions(run.run_id)
        assert len(versions) == 1 + len(nodes)
        assert store.state_at(run.run_id, 1) == orjson.loads(root.attributes["input.value"])
        assert store.state_at(run.run_id, len(versions)) == orjson.loads(
            root.attributes["output.value"]
        )
        assert [v.agent for v in versions[1:]] == [
            sp.agent for sp in sorted(nodes, key=lambda s: s.start_ns)
        ]
        assert {v.source for v in versions} == {"langgraph-trace"}
        assert {v.derived for v in versions} == {"langgraph-trace"}
        # Each version points at the real span of the node that wrote it (the input at the
        # root), and no span is invented for it.
        by_id = {sp.span_id: sp for sp in spans}
        assert versions[0].span_id == root.span_id
        assert [by_id[v.span_id].name for v in versions[1:]] == [v.agent for v in versions[1:]]
        steps = [v.step for v in versions[1:]]
        assert None not in steps and steps == sorted(s or 0 for s in steps)
        assert not [sp for sp in spans if sp.name.startswith("commit_state")]
        assert store.verify(run.run_id)[0].ok


def test_trace_state_is_the_same_whichever_encoding_and_is_not_rebuilt_twice() -> None:
    a, b = t.Store(":memory:"), t.Store(":memory:")
    t.import_file(a, FOREIGN / "langgraph_openinference.pb")
    t.import_file(b, FOREIGN / "langgraph_openinference.jsonl")
    for run in a.runs():
        assert [v.hash for v in a.state_versions(run.run_id)] == [
            v.hash for v in b.state_versions(run.run_id)
        ]
    before = counts(a)
    again = t.import_file(a, FOREIGN / "langgraph_openinference.jsonl")
    assert again.versions == 0 and counts(a) == before
    assert t.derive_trace_state(a).versions == 0
